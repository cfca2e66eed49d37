"""Issue 14: what a careful user's probing found, kept fixed. Every bad input to a command is one
``error: ...`` line naming the file and the cause, exit status 2, never a traceback: unreadable files,
read-only folders, malformed records, binary journals, click's usage errors, non-finite values."""

from __future__ import annotations

import builtins
import errno
import io
import json
import os
from pathlib import Path

import pytest
from click.testing import CliRunner

from wsnas.cli import main

#: a folder no process may create files in, root included (sysfs refuses new entries)
READ_ONLY = Path("/sys")


def _run(*args: str):
    return CliRunner().invoke(main, list(args), prog_name="wsnas")


def _one_line(result, *fragments: str) -> str:
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert result.exit_code == 2, result.output
    assert len(lines) == 1 and lines[0].startswith("error: "), result.output
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exception
    for fragment in fragments:
        assert fragment in lines[0], lines[0]
    return lines[0]


@pytest.fixture
def unreadable(monkeypatch: pytest.MonkeyPatch):
    """Make a path unreadable the way ``chmod 000`` does for a user who is not root: every ``open`` of it
    (builtins.open, io.open and so pathlib) raises PermissionError. Tests run as root, where chmod does not."""
    paths: set[str] = set()
    real_open = builtins.open

    def guarded(file, *args, **kwargs):  # noqa: ANN001, ANN202
        if isinstance(file, (str, os.PathLike)) and os.path.abspath(os.fspath(file)) in paths:
            raise PermissionError(errno.EACCES, "Permission denied", os.fspath(file))
        return real_open(file, *args, **kwargs)

    monkeypatch.setattr(builtins, "open", guarded)
    monkeypatch.setattr(io, "open", guarded)

    def add(path: Path) -> Path:
        paths.add(os.path.abspath(path))
        return path

    return add


def _zoo_line(**fields) -> str:  # noqa: ANN003
    doc = {
        "space": "nb201", "arch": "|nor_conv_3x3~0|+|nor_conv_3x3~0|skip_connect~1|+|none~0|none~1|avg_pool_3x3~2|",
        "arch_hash": "h", "seed": 0, "task": "synthetic", "task_fingerprint": "0" * 16, "val_acc": 0.5,
        "val_loss": 1.0, "val_acc_curve": [0.5], "val_loss_curve": [1.0], "train_loss_curve": [1.0],
        "train_seconds": 1.0, "params": 10, "flops": 10, "diverged": False, "init": "generated",
        "wsnas_version": "0.1.0", "timestamp": "2026-01-01T00:00:00+00:00",
    }  # fmt: skip
    doc.update(fields)
    return json.dumps(doc) + "\n"


# -- item 3: tracebacks instead of one error line -------------------------------------------------------
def test_zoo_show_unreadable_file(tmp_path: Path, unreadable) -> None:
    zoo = tmp_path / "zoo.jsonl"
    zoo.write_text(_zoo_line())
    _one_line(_run("zoo", "show", str(unreadable(zoo))), "zoo.jsonl", "Permission denied")


def test_predictor_train_unreadable_zoo(tmp_path: Path, unreadable) -> None:
    zoo = tmp_path / "zoo.jsonl"
    zoo.write_text(_zoo_line())
    result = _run("predictor", "train", "--zoo", str(unreadable(zoo)), "--out", str(tmp_path / "p.st"))
    _one_line(result, "zoo.jsonl", "Permission denied")


def test_zoo_build_into_read_only_folder() -> None:
    args = ["zoo", "build", "--space", "nb201", "--task", "synthetic", "--n", "1", "--seed", "0", "--subset", "16",
            "-s", "C=2", "-s", "N=1", "--workers", "1", "--quiet",
            "--out", str(READ_ONLY / "wsnas-zoo.jsonl")]  # fmt: skip
    _one_line(_run(*args), "wsnas-zoo.jsonl", "Permission denied")


def test_search_unreadable_table(table, tmp_path: Path, unreadable) -> None:
    copy = tmp_path / "t.csv"
    copy.write_bytes(Path(table).read_bytes())
    result = _run("search", "--evaluator", f"table:{unreadable(copy)}:arch:acc", "--predictor", "none",
                  "--eval-budget", "1", "--output-dir", str(tmp_path / "out"), "--quiet")  # fmt: skip
    _one_line(result, "t.csv", "Permission denied")


def test_search_read_only_output_dir(table) -> None:
    result = _run("search", "--evaluator", f"table:{table}:arch:acc", "--predictor", "none", "--eval-budget", "1",
                  "--output-dir", str(READ_ONLY / "wsnas-runs"), "--quiet")  # fmt: skip
    line = _one_line(result, "wsnas-runs")
    assert "Permission denied" in line or "Operation not permitted" in line, line


def test_zoo_show_record_with_a_string_accuracy(tmp_path: Path) -> None:
    zoo = tmp_path / "zoo.jsonl"
    zoo.write_text(_zoo_line() + _zoo_line(val_acc="high"))
    _one_line(_run("zoo", "show", str(zoo)), "zoo.jsonl", "line 2", "val_acc")


def test_search_binary_journal(table, tmp_path: Path) -> None:
    journal = tmp_path / "j.log"
    journal.write_bytes(bytes(range(256)) * 4)
    result = _run("search", "--storage", f"journal:{journal}", "--evaluator", f"table:{table}:arch:acc",
                  "--predictor", "none", "--eval-budget", "1", "--output-dir", str(tmp_path / "out"),
                  "--quiet")  # fmt: skip
    _one_line(result, "j.log", "not a readable Optuna journal")


def test_unreadable_predictor_file_says_so(saved_predictor, tmp_path: Path, unreadable) -> None:
    from wsnas.predictors import load

    copy = tmp_path / "p.safetensors"
    copy.write_bytes(Path(saved_predictor[0]).read_bytes())
    unreadable(copy)
    from wsnas import PredictorFileError

    with pytest.raises(PredictorFileError, match="Permission denied") as info:
        load(copy)
    assert "No such file" not in str(info.value)


# -- item 10: click's usage errors are one line too ------------------------------------------------------
@pytest.mark.parametrize(
    ("args", "fragments"),
    [
        (["search", "--foo"], ["--foo", "(try 'wsnas search --help')"]),
        (["--foo"], ["--foo", "(try 'wsnas --help')"]),
        (["zoo", "show"], ["FILE", "(try 'wsnas zoo show --help')"]),
        (["zoo", "build", "--space", "nb201"], ["--task", "(try 'wsnas zoo build --help')"]),
        (["zoo", "build", "--optimizer", "nope"], ["nope", "(try 'wsnas zoo build --help')"]),
        (["nosuch"], ["nosuch", "(try 'wsnas --help')"]),
        (["track", "nosuch"], ["nosuch", "(try 'wsnas track --help')"]),
        (["search", "--sampler"], ["--sampler", "(try 'wsnas search --help')"]),
    ],
)
def test_usage_errors_are_one_line(args: list[str], fragments: list[str]) -> None:
    line = _one_line(_run(*args), *fragments)
    assert "Usage:" not in line


def test_bare_group_still_prints_its_help() -> None:
    result = _run("zoo")
    assert "Usage:" in result.output and "build" in result.output


# -- item 7: non-finite values and a non-positive --top --------------------------------------------------
def test_zoo_show_flags_non_finite_records(tmp_path: Path) -> None:
    zoo = tmp_path / "zoo.jsonl"
    zoo.write_text(
        _zoo_line(val_acc=0.5)
        + _zoo_line(val_acc=float("inf"), arch_hash="i", arch="|none~0|+|none~0|none~1|+|none~0|none~1|none~2|")
        + _zoo_line(val_acc=float("nan"), arch_hash="n")
    )
    result = _run("zoo", "show", str(zoo))
    assert result.exit_code == 0, result.output
    assert "inf" not in result.output.replace("info", "") and "nan" not in result.output, result.output
    assert "2 record(s) with a non-finite val_acc" in result.output
    assert "0.5000 .. 0.5000 (mean 0.5000)" in result.output


@pytest.mark.parametrize("top", ["0", "-2"])
def test_top_must_be_positive(tmp_path: Path, top: str) -> None:
    zoo = tmp_path / "zoo.jsonl"
    zoo.write_text(_zoo_line())
    _one_line(_run("zoo", "show", str(zoo), "--top", top), "--top")
    _one_line(_run("search", "--top", top, "--output-dir", str(tmp_path)), "--top")
