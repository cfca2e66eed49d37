"""What ``wsnas search`` prints for a newcomer: where the study is and how to join it (before the first
evaluation), what the table's predicted column is, and the ways out when a space has no shipped predictor."""

from __future__ import annotations

import json
import shlex
from pathlib import Path

import pytest
from click.testing import CliRunner

from wsnas.testing import run_cli as _cli


@pytest.fixture(scope="module")
def pred_file(pred, tmp_path_factory) -> Path:
    return Path(pred.save(tmp_path_factory.mktemp("pred") / "tiny.safetensors"))


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


def test_a_space_without_a_shipped_predictor_names_both_ways_out(tmp_path, only_nb201_shipped) -> None:
    res = _cli("search", "--space", "nb101", "--eval-budget", "0", "--output-dir", str(tmp_path), "--quiet")
    assert res.exit_code == 2, res.output
    lines = [line for line in res.output.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: no shipped predictor for space 'nb101'"), res.output
    assert "--predictor none" in lines[0] and 'load("nb201").transfer("nb101")' in lines[0]
    assert "wsnas predictor finetune --predictor nb201 --space nb101" in lines[0]


def _dominates(a: dict, b: dict, directions: dict[str, str]) -> bool:
    """``a`` is at least as good as ``b`` on every objective and better on one."""
    better = [(a[o] - b[o]) * (1 if d == "maximize" else -1) for o, d in directions.items()]
    return all(x >= 0 for x in better) and any(x > 0 for x in better)


def _table(stdout: str) -> tuple[str, list[str], list[list[str]]]:
    """The Pareto line, the table's header cells and its rows' cells (``rank arch values...``)."""
    lines = stdout.splitlines()
    at = next(i for i, line in enumerate(lines) if line.startswith("Pareto front:"))
    rows = []
    for line in lines[at + 2 :]:
        if not line[:4].strip().isdigit():
            break
        rows.append(line.split())
    return lines[at], lines[at + 1].split("  "), rows


def test_multi_objective_table_lists_the_pareto_front_with_every_objective(table, tmp_path) -> None:
    from wsnas import NetMeasures
    from wsnas.search_spaces import get_space

    args = _search_args(table, tmp_path, "--objectives", "accuracy,params", "--predictor", "none", "--seed", "1")
    args[args.index("--eval-budget") + 1] = "10"
    res = _cli(*args, "--quiet")
    assert res.exit_code == 0, res.output
    doc = json.loads(_cli(*args, "--quiet", "--json").stdout)  # the same command again: the same study, as JSON
    space, measures = get_space("nb201"), NetMeasures(get_space("nb201"))
    points = {h["arch"]: {"accuracy": h["accuracy"], "params": measures.params(space.from_string(h["arch"]))}
              for h in doc["history"] if h["state"] == "COMPLETE"}  # fmt: skip
    directions = {"accuracy": "maximize", "params": "minimize"}
    front = [a for a, p in points.items() if not any(_dominates(q, p, directions) for q in points.values())]
    assert 0 < len(front) < len(points) == 10  # some points are dominated: the table must leave them out
    line, head, rows = _table(res.stdout)
    assert line.startswith(f"Pareto front: {len(front)} of 10 evaluated architectures are non-dominated")
    assert [h.strip() for h in head if h.strip()] == ["rank", "architecture", "accuracy", "params", "FLOPs"]
    assert sorted(r[1] for r in rows) == sorted(front)  # exactly the non-dominated points
    accuracy = [float(r[2]) for r in rows]
    assert accuracy == sorted(accuracy, reverse=True)  # best first objective first
    for r in rows:  # each objective's column holds its value
        assert float(r[2]) == pytest.approx(points[r[1]]["accuracy"], abs=5e-5)
        assert int(r[3].replace(",", "")) == points[r[1]]["params"]
    assert doc["evaluated"] == 10 and sorted(p["arch"] for p in doc["pareto"]) == sorted(front)
    for p in doc["pareto"]:  # the JSON front carries every objective's value
        assert p["values"]["accuracy"] == pytest.approx(points[p["arch"]]["accuracy"])
        assert p["values"]["params"] == points[p["arch"]]["params"] == p["params"]
    assert len(front) > 1  # --top lists the first of the front, and says so
    short = _cli(*args, "--quiet", "--top", "1")
    line1, _, rows1 = _table(short.stdout)
    assert line1 == f"{line}; the first 1 listed (--top)" and rows1 == rows[:1]


def test_pareto_table_has_a_column_per_objective_latency_included(tmp_path) -> None:
    from wsnas._search._result import SearchRecord, SearchResult
    from wsnas.cli._search import _report

    def rec(arch: str, trial: int, acc: float, ms: float, flops: int, state: str = "COMPLETE") -> SearchRecord:
        values = {"accuracy": acc, "latency": ms, "flops": float(flops)} if state == "COMPLETE" else {}
        return SearchRecord(arch, arch, trial, state, values, {"accuracy": acc}, predicted=acc / 2,
                            params=flops // 10, flops=flops)  # fmt: skip

    front = [rec("fast", 1, 0.80, 1.5, 900), rec("accurate", 0, 0.90, 9.25, 2000), rec("cheap", 3, 0.70, 4.0, 100)]
    history = [*front, rec("slow", 2, 0.75, 2.0, 950), rec("failed", 4, 0.0, 0.0, 0, state="FAIL")]
    result = SearchResult(best=front[1], pareto=sorted(front, key=lambda r: -r.values["accuracy"]), history=history,
                          study=None, objectives=("accuracy", "latency", "flops"), storage="sqlite:///x.db",
                          study_name="s", output_dir=tmp_path, training_free=False)  # fmt: skip
    runner = CliRunner()
    with runner.isolation() as (out, _, _):
        _report(result, 5, False, [])
    text = out.getvalue().decode()
    line, head, rows = _table(text)
    assert line == ("Pareto front: 3 of 4 evaluated architectures are non-dominated "
                    "(accuracy maximized, latency minimized, flops minimized); sorted by accuracy")  # fmt: skip
    assert [h.strip() for h in head if h.strip()] == ["rank", "architecture", "predicted (score)", "accuracy",
                                                      "latency (ms)", "FLOPs", "params"]  # fmt: skip
    assert rows == [["1", "accurate", "0.4500", "0.9000", "9.250", "2,000", "200"],
                    ["2", "fast", "0.4000", "0.8000", "1.500", "900", "90"],
                    ["3", "cheap", "0.3500", "0.7000", "4.000", "100", "10"]]  # fmt: skip
    assert "slow" not in text and "1 evaluation(s) failed" in text  # dominated by fast: not listed
