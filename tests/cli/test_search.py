"""``wsnas search`` and ``wsnas worker``: the JSON document and the table, a worker joining, one-line errors."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from wsnas.testing import assert_one_line_error as _one_line_error
from wsnas.testing import run_cli as _cli


@pytest.fixture(scope="module")
def pred_file(pred, tmp_path_factory) -> Path:
    return Path(pred.save(tmp_path_factory.mktemp("pred") / "tiny.safetensors"))


def test_cli_search_json_and_table(table, pred_file, tmp_path) -> None:
    args = ["search", "--evaluator", f"table:{table}:arch:acc", "--eval-budget", "4", "--predictor", str(pred_file),
            "--batch-size", "8", "--output-dir", str(tmp_path), "--quiet"]  # fmt: skip
    result = _cli(*args, "--json")
    assert result.exit_code == 0, result.output
    doc = json.loads(result.stdout)
    assert {"best", "pareto", "history", "study_name", "storage", "objectives"} <= set(doc)
    assert len(doc["history"]) == 4
    assert all({"arch", "accuracy", "trial", "predicted"} <= set(h) for h in doc["history"])
    assert doc["best"]["arch"] in [h["arch"] for h in doc["history"]] and doc["best"]["params"] > 0
    text = _cli(*args)  # the same command again: resumes (nothing left) and prints the table
    assert text.exit_code == 0, text.output
    assert "measured" in text.stdout and doc["best"]["arch"] in text.stdout and "wsnas worker --study" in text.stdout
    worker = _cli("worker", "--study", doc["study_name"], "--storage", doc["storage"], "--output-dir", str(tmp_path),
                  "--quiet", "--json")  # fmt: skip
    assert worker.exit_code == 0, worker.output
    assert [h["arch"] for h in json.loads(worker.stdout)["history"]] == [h["arch"] for h in doc["history"]]


def test_cli_bad_input_is_one_line(table, pred_file, tmp_path) -> None:
    base = ["search", "--output-dir", str(tmp_path), "--quiet", "--predictor", str(pred_file)]
    ev = f"table:{table}:arch:acc"
    _one_line_error(_cli(*base, "--space", "nb999"), "unknown search space 'nb999'")
    _one_line_error(_cli(*base, "--evaluator", ev, "--objectives", "accuracy,joules"), "unknown objective 'joules'")
    _one_line_error(_cli(*base, "--evaluator", ev, "--sampler", "cmaes"), "unknown sampler 'cmaes'")
    _one_line_error(_cli(*base, "--evaluator", "table:nope.csv:arch:acc"), "table file 'nope.csv' does not exist")
    _one_line_error(_cli(*base, "--evaluator", f"table:{table}:name:acc"), "has no column 'name'")
    _one_line_error(_cli(*base, "--evaluator", "bogus"), "an evaluator is 'train:TASK' or 'table:")
    _one_line_error(_cli(*base, "--evaluator", "train:imagenet"), "unknown task 'imagenet'")
    _one_line_error(_cli(*base, "--evaluator", ev, "--storage", "postgresql://127.0.0.1:1/x"), "cannot open storage")
    missing = ["worker", "--study", "nope", "--storage", f"sqlite:///{tmp_path / 'w.db'}", "--quiet"]
    _one_line_error(_cli(*missing), "no study named 'nope'")
