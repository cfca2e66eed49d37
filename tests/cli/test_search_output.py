"""What ``wsnas search`` prints for a newcomer: where the study is and how to join it (before the first
evaluation), what the table's predicted column is, and the ways out when a space has no shipped predictor."""

from __future__ import annotations

import json
import shlex
from pathlib import Path

import pytest
from click.testing import CliRunner

from wsnas.cli import main


@pytest.fixture(scope="module")
def pred_file(pred, tmp_path_factory) -> Path:
    return Path(pred.save(tmp_path_factory.mktemp("pred") / "tiny.safetensors"))


def _cli(*args: str):
    return CliRunner().invoke(main, list(args))


def _search_args(table: Path, out: Path, *more: str) -> list[str]:
    return ["search", "--evaluator", f"table:{table}:arch:acc", "--eval-budget", "3", "--batch-size", "8",
            "--output-dir", str(out), "--no-tracking", *more]  # fmt: skip


def test_search_says_where_its_study_is_and_how_to_join_before_evaluating(table, pred_file, tmp_path) -> None:
    out = tmp_path / "runs"
    res = _cli(*_search_args(table, out, "--predictor", str(pred_file), "--json"))
    assert res.exit_code == 0, res.output
    doc = json.loads(res.stdout)  # stdout stays one JSON document: the announcement is on stderr
    lines = res.stderr.splitlines()
    assert lines[0] == f"study {doc['study_name']} in {doc['storage']}; to add a worker, run in another terminal:"
    command = lines[1].strip()
    expected = ["wsnas", "worker", "--study", doc["study_name"], "--storage", doc["storage"],
                "--output-dir", str(out.resolve()), "--no-tracking"]  # fmt: skip
    assert shlex.split(command) == expected
    assert res.stderr.index(command) < res.stderr.index("search nb201")  # above the progress bar's first draw
    pasted = _cli(*shlex.split(command)[1:], "--json")  # the line, pasted: joins the same study
    assert pasted.exit_code == 0, pasted.output
    assert [h["arch"] for h in json.loads(pasted.stdout)["history"]] == [h["arch"] for h in doc["history"]]
    assert pasted.stderr.startswith(f"study {doc['study_name']} in {doc['storage']}")
    quiet = _cli(*_search_args(table, out, "--predictor", str(pred_file), "--quiet"))
    assert quiet.exit_code == 0 and quiet.stderr == "", quiet.output  # --quiet: nothing on stderr
    assert f"workers  {command}" in quiet.stdout  # the closing lines name the same command


def test_table_labels_the_predicted_column_and_says_what_it_is(table, pred, pred_file, tmp_path) -> None:
    res = _cli(*_search_args(table, tmp_path, "--predictor", str(pred_file), "--quiet"))
    assert res.exit_code == 0, res.output
    lines = res.stdout.splitlines()
    head = next(i for i, line in enumerate(lines) if line.startswith("rank"))
    assert lines[head].split() == ["rank", "architecture", "predicted", "(score)", "measured", "params", "FLOPs"]
    rows = lines[head + 1 : head + 4]
    assert [int(r.split()[0]) for r in rows] == [1, 2, 3]
    for label in ("predicted (score)", "measured"):  # the numbers end where their headers end
        end = lines[head].index(label) + len(label)
        assert all(r[end - 1].isdigit() and r[end] == " " for r in rows), (label, rows)
    note = lines[head + 4]
    name = pred.target["name"]
    assert note.startswith(f"predicted (score): the predictor's score, in the units of its training target ({name})")
    assert "not the evaluator's" in note and "ranks the candidates" in note
    plain = _cli(*_search_args(table, tmp_path / "plain", "--predictor", "none", "--quiet"))
    assert plain.exit_code == 0, plain.output
    assert "predicted (score):" not in plain.stdout  # no predictor, no note about its scores


def test_a_space_without_a_shipped_predictor_names_both_ways_out(tmp_path) -> None:
    res = _cli("search", "--space", "nb101", "--eval-budget", "0", "--output-dir", str(tmp_path), "--quiet")
    assert res.exit_code == 2, res.output
    lines = [line for line in res.output.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: no shipped predictor for space 'nb101'"), res.output
    assert "--predictor none" in lines[0] and 'load("nb201").transfer("nb101")' in lines[0]
    assert "wsnas predictor finetune --predictor nb201 --space nb101" in lines[0]
