"""Issue 14: MLflow tracking of a GraphSpace with optional edges (the README's own example) logs every
evaluation, its parameter names made acceptable to MLflow, and a refusal by MLflow is reported as such;
``wsnas track sync`` of a finished search leaves its parent run FINISHED."""

from __future__ import annotations

import warnings
from pathlib import Path

import networkx as nx
import pytest
from click.testing import CliRunner

import wsnas
from wsnas._search._tracker import SearchTracker, TrackingWarning, mlflow_param_names
from wsnas.cli import main
from wsnas.search_spaces import GraphSpace


def readme_space() -> GraphSpace:
    g = nx.DiGraph()
    g.add_node("in", op="input")
    g.add_node("a", choices=["conv3x3", "conv5x5", "maxpool3x3"])
    g.add_node("b", choices=["conv1x1", "identity"])
    g.add_node("out", op="output")
    g.add_edges_from([("in", "a"), ("a", "b"), ("b", "out")])
    g.add_edge("in", "b", optional=True)
    g.add_edge("a", "out", optional=True, choices=["identity", "avgpool3x3"])
    return GraphSpace(g, name="mine")


def _accuracy(arch) -> float:  # noqa: ANN001
    return 0.5 + (int(arch.hash[:4], 16) % 100) / 1000


def test_param_names_are_sanitised_unique_and_kept() -> None:
    names = mlflow_param_names(["edge(in,b)", "edge(in_b)", "a", "edge(a,out)", "ok-name/1.x y"])
    assert names["a"] == "a" and names["ok-name/1.x y"] == "ok-name/1.x y"
    assert names["edge(in,b)"] == "edge_in_b_"
    assert len(set(names.values())) == len(names)
    assert all(c.isalnum() or c in "_-. /" for v in names.values() for c in v)


def test_graph_space_search_is_tracked_and_sync_keeps_the_parent_finished(tmp_path: Path) -> None:
    from mlflow.tracking import MlflowClient

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    with warnings.catch_warnings():
        warnings.simplefilter("error", TrackingWarning)
        res = wsnas.search(readme_space(), evaluator=_accuracy, eval_budget=3, predictor=None, study_name="mine",
                           output_dir=tmp_path, progress=False, tracking=uri)  # fmt: skip
    client = MlflowClient(uri)
    exp = client.get_experiment_by_name("mine")
    parent = client.search_runs([exp.experiment_id], "tags.`wsnas.role` = 'search'")[0]
    assert parent.info.status == "FINISHED"
    end = parent.info.end_time
    runs = client.search_runs([exp.experiment_id], f"tags.`mlflow.parentRunId` = '{parent.info.run_id}'")
    assert len(runs) == len(res.history) == 3
    for run in runs:
        params = run.data.params
        assert any(k.startswith("choice.edge_") for k in params), params
        assert "edge(in,b)" in run.data.tags["wsnas.choice_names"]

    result = CliRunner().invoke(main, ["track", "sync", "--study", "mine", "--output-dir", str(tmp_path),
                                       "--tracking-uri", uri])  # fmt: skip
    assert result.exit_code == 0, result.output
    after = client.get_run(parent.info.run_id).info
    assert after.status == "FINISHED" and after.end_time == end


def test_a_refusal_by_mlflow_is_reported_as_one(tmp_path: Path) -> None:
    tracker = SearchTracker(f"sqlite:///{tmp_path / 'mlflow.db'}", "s", retries=0)
    assert tracker.start({"x": 1})
    from mlflow.exceptions import MlflowException
    from mlflow.protos.databricks_pb2 import INVALID_PARAMETER_VALUE

    def refuse() -> None:
        raise MlflowException("Invalid value for parameter 'params[0].key'", error_code=INVALID_PARAMETER_VALUE)

    with pytest.warns(TrackingWarning):
        assert tracker._call("log_evaluation", refuse) is None
    assert tracker.last_rejected and "Invalid value" in tracker.last_error
    assert tracker.available  # a refusal is no outage: no cooldown


_STARTER = """
import sys, time
from wsnas._search._tracker import SearchTracker
uri, at = sys.argv[1], float(sys.argv[2])
tracker = SearchTracker(uri, study="together", retries=0)
time.sleep(max(0.0, at - time.time()))
ok = tracker.start({"space": "nb201", "objectives": "accuracy"})
print("started" if ok else f"failed: {tracker.last_error}")
"""


def test_processes_starting_at_once_on_a_new_sqlite_store_share_one_experiment_and_parent(tmp_path) -> None:
    """A search and its workers started together on a fresh SQLite store: the store's tables, the experiment
    and the parent run are created once (a lock beside the store), and every process's tracking works."""
    import subprocess
    import sys
    import time

    from mlflow.tracking import MlflowClient

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    at = time.time() + 6.0  # after every interpreter has imported MLflow
    procs = [
        subprocess.Popen([sys.executable, "-c", _STARTER, uri, str(at)], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                         text=True)  # fmt: skip
        for _ in range(3)
    ]
    outs = [p.communicate(timeout=120) for p in procs]
    assert all(p.returncode == 0 for p in procs), [o[1][-2000:] for o in outs]
    assert [o[0].strip() for o in outs] == ["started"] * 3, outs
    client = MlflowClient(tracking_uri=uri)
    exp = client.get_experiment_by_name("together")
    assert exp is not None
    assert len(client.search_runs([exp.experiment_id])) == 1
