"""Issue 14: the search's storage, tables and API, probed as a careful user would. Damaged storage files are
recovered (a torn journal tail) or refused with a clear error (an empty or damaged SQLite file); NaN/inf
table rows stay out of the search; wrong argument types raise wsnas's own errors; a failed look-up creates
no file."""

from __future__ import annotations

import csv
import json
import os
from pathlib import Path

import pytest
from click.testing import CliRunner

import wsnas
from wsnas import EvaluatorError, PredictorFileError, SearchConfigError, StorageError, TableEvaluator
from wsnas.cli import main


def _small_table(path: Path, values: list[float]) -> Path:
    from wsnas.search_spaces import get_space
    from wsnas.training import sample_distinct

    nb201 = get_space("nb201")
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["arch", "acc"])
        for arch, v in zip(sample_distinct(nb201, len(values), 0), values):
            w.writerow([nb201.to_string(arch), v])
    return path


def _search(table: Path, out: Path, **kwargs):  # noqa: ANN003, ANN202
    options = {"evaluator": TableEvaluator(table, "arch", "acc"), "eval_budget": 2, "predictor": None,
               "output_dir": out, "tracking": False, "progress": False, **kwargs}  # fmt: skip
    return wsnas.search("nb201", **options)


# -- item 4: storage damage -------------------------------------------------------------------------------
def test_torn_journal_tail_is_dropped_with_a_warning(tmp_path: Path) -> None:
    table = _small_table(tmp_path / "t.csv", [0.1, 0.2, 0.3, 0.4, 0.5, 0.6])
    journal = tmp_path / "j.log"
    first = _search(table, tmp_path / "out", storage=f"journal:{journal}", study_name="s")
    assert len(first.history) == 2
    with open(journal, "ab") as f:
        f.write(b'{"op_code": 5, "worker_id": "ab')  # a write cut short by a crash
    with pytest.warns(RuntimeWarning, match="torn last line"):
        again = _search(table, tmp_path / "out", storage=f"journal:{journal}", study_name="s", eval_budget=4)
    assert len(again.history) == 4
    assert journal.read_bytes().endswith(b"\n")
    third = _search(table, tmp_path / "out", storage=f"journal:{journal}", study_name="s", eval_budget=4)
    assert [h.arch for h in third.history] == [h.arch for h in again.history]


def test_empty_sqlite_file_is_refused(tmp_path: Path) -> None:
    table = _small_table(tmp_path / "t.csv", [0.1, 0.2, 0.3])
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "search.db").write_bytes(b"")
    with pytest.raises(StorageError, match="empty file, not a database"):
        _search(table, tmp_path / "out")
    assert (tmp_path / "out" / "search.db").stat().st_size == 0


def test_damaged_sqlite_file_is_named(tmp_path: Path) -> None:
    table = _small_table(tmp_path / "t.csv", [0.1, 0.2, 0.3, 0.4])
    out = tmp_path / "out"
    _search(table, out)
    db = out / "search.db"
    data = bytearray(db.read_bytes())
    page = 4096
    for p in range(1, len(data) // page):  # every page but the first (the header) overwritten
        data[p * page : (p + 1) * page] = os.urandom(page)
    db.write_bytes(bytes(data))
    with pytest.raises(StorageError, match="damaged") as info:
        _search(table, out)
    assert str(db) in str(info.value)
    garbage = tmp_path / "garbage.db"
    garbage.write_bytes(os.urandom(5000))
    with pytest.raises(StorageError, match="not an SQLite database"):
        _search(table, out, storage=f"sqlite:///{garbage}")


# -- item 7: non-finite table values ----------------------------------------------------------------------
def test_non_finite_table_rows_are_reported_and_left_out(tmp_path: Path) -> None:
    table = _small_table(tmp_path / "t.csv", [0.1, float("nan"), 0.3, float("inf"), 0.5, -float("inf")])
    with pytest.warns(RuntimeWarning, match=r"3 row\(s\) with a non-finite 'acc'.*lines 3, 5, 7"):
        ev = TableEvaluator(table, "arch", "acc", space="nb201")
    assert len(ev) == 3
    with pytest.warns(RuntimeWarning):
        result = _search(table, tmp_path / "out", eval_budget=3)
    assert all(h.state == "COMPLETE" for h in result.history) and len(result.history) == 3


def test_all_non_finite_table_is_an_error(tmp_path: Path) -> None:
    table = _small_table(tmp_path / "t.csv", [float("nan"), float("nan"), float("inf")])
    with pytest.raises(EvaluatorError, match="every one of its 3 rows has a non-finite 'acc'"):
        TableEvaluator(table, "arch", "acc")
    args = ["search", "--evaluator", f"table:{table}:arch:acc", "--predictor", "none", "--eval-budget", "2",
            "--output-dir", str(tmp_path / "o"), "--quiet"]  # fmt: skip
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 2 and "non-finite" in result.output, result.output


# -- item 8: Python API type checks -----------------------------------------------------------------------
def test_api_type_errors_are_wsnas_errors(tmp_path: Path) -> None:
    from wsnas import predictors

    with pytest.raises(SearchConfigError, match="space must be a search space name.*got 5"):
        wsnas.search(5, predictor=None, eval_budget=0, output_dir=tmp_path, tracking=False)
    for bad in (None, 123):
        with pytest.raises(PredictorFileError, match=f"got {bad!r}"):
            predictors.load(bad)
    with pytest.raises(EvaluatorError, match="got None"):
        TableEvaluator(None, "arch", "acc")
    table = _small_table(tmp_path / "t.csv", [0.1, 0.2])
    for bad in (-5, 0, float("nan"), "60"):
        with pytest.raises(SearchConfigError, match="stale_after must be a positive number"):
            _search(table, tmp_path / "out", stale_after=bad)
    assert not (tmp_path / "out").exists()


# -- item 9: a failed look-up creates nothing -------------------------------------------------------------
def test_worker_on_a_missing_storage_creates_nothing(tmp_path: Path) -> None:
    missing = tmp_path / "nosuch" / "none.db"
    result = CliRunner().invoke(main, ["worker", "--study", "s", "--storage", f"sqlite:///{missing}", "--quiet",
                                       "--output-dir", str(tmp_path / "runs")])  # fmt: skip
    assert result.exit_code == 2 and "does not exist" in result.output, result.output
    assert not (tmp_path / "nosuch").exists()
    journal = tmp_path / "nosuch.log"
    with pytest.raises(StorageError, match="does not exist"):
        wsnas.join("s", f"journal:{journal}", output_dir=tmp_path / "runs", tracking=False, progress=False)
    assert not journal.exists()


def test_model_uri_without_a_tracking_uri_creates_nothing(tmp_path: Path, monkeypatch) -> None:  # noqa: ANN001
    from wsnas import predictors

    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.delenv("MLFLOW_REGISTRY_URI", raising=False)
    with pytest.raises(PredictorFileError, match="MLFLOW_TRACKING_URI"):
        predictors.load("models:/nope/1")
    assert list(tmp_path.iterdir()) == []
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'none' / 'mlflow.db'}")
    with pytest.raises(PredictorFileError, match="does not exist"):
        predictors.load("models:/nope/1")
    assert list(tmp_path.iterdir()) == []


def test_json_is_written(tmp_path: Path) -> None:  # STUDY.json stays JSON after the checks above
    table = _small_table(tmp_path / "t.csv", [0.1, 0.2, 0.3])
    _search(table, tmp_path / "out", study_name="s")
    assert json.loads((tmp_path / "out" / "s.json").read_text())["study_name"] == "s"


# -- item 5: files a user can read --------------------------------------------------------------------------
def _mode(path: Path) -> int:
    return path.stat().st_mode & 0o777


def test_study_json_and_predict_output_are_0644(tmp_path: Path, saved_predictor) -> None:
    old = os.umask(0o022)
    try:
        table = _small_table(tmp_path / "t.csv", [0.1, 0.2, 0.3])
        _search(table, tmp_path / "out", study_name="s")
        assert _mode(tmp_path / "out" / "s.json") == 0o644
        out = tmp_path / "scores.csv"
        archs = tmp_path / "in.txt"
        archs.write_text("|nor_conv_3x3~0|+|nor_conv_3x3~0|skip_connect~1|+|none~0|none~1|avg_pool_3x3~2|\n")
        args = ["predict", "--space", "nb201", "--predictor", str(saved_predictor[0]), "--output", str(out),
                "--input", str(archs)]  # fmt: skip
        result = CliRunner().invoke(main, args)
        assert result.exit_code == 0, result.output
        assert _mode(out) == 0o644
        os.chmod(out, 0o644)
        assert CliRunner().invoke(main, args).exit_code == 0  # overwriting an existing 0644 file
        assert _mode(out) == 0o644
    finally:
        os.umask(old)
