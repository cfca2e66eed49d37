"""A search tracked in a real ``mlflow server`` over HTTP: the run layout, the artifacts, a server that dies
mid-search, and ``wsnas track sync`` making MLflow hold every evaluation exactly once."""

from __future__ import annotations

import warnings

import pytest
from click.testing import CliRunner

import wsnas
from wsnas._search._tracker import TrackingWarning
from wsnas.cli import main
from wsnas.search_spaces import get_space

SPACE = get_space("nb201")


def children(client, exp_id: str, parent: str) -> list:
    return client.search_runs([exp_id], f"tags.`mlflow.parentRunId` = '{parent}'")


def test_a_search_over_http_logs_parent_children_and_artifacts(mlflow_server, table, pred, tmp_path) -> None:
    from mlflow.tracking import MlflowClient

    res = wsnas.search(
        "nb201", evaluator=wsnas.TableEvaluator(table, "arch", "acc"), eval_budget=6, predictor=pred, batch_size=8,
        objectives=("accuracy", "params"), study_name="tracked", output_dir=tmp_path, progress=False,
        tracking=mlflow_server.uri,
    )  # fmt: skip
    assert res.tracking_uri == mlflow_server.uri and len(res.history) == 6
    client = MlflowClient(mlflow_server.uri)
    exp = client.get_experiment_by_name("tracked")
    parents = client.search_runs([exp.experiment_id], "tags.`wsnas.role` = 'search'")
    assert len(parents) == 1
    parent = parents[0]
    assert parent.info.status == "FINISHED"
    for key in ("space", "sampler", "objectives", "eval_budget", "predictor_card_id", "wsnas_version",
                "torch_version", "optuna_version", "seed"):  # fmt: skip
        assert key in parent.data.params, key
    assert parent.data.params["space"] == "nb201"
    steps = client.get_metric_history(parent.info.run_id, "best_accuracy")
    assert [m.step for m in steps] == list(range(1, 7))
    assert [m.value for m in steps] == sorted(m.value for m in steps)  # best so far never drops
    assert client.get_metric_history(parent.info.run_id, "predictor_spearman")

    runs = children(client, exp.experiment_id, parent.info.run_id)
    assert len(runs) == 6
    by_arch = {r.data.params["arch"]: r for r in runs}
    for rec in res.history:
        run = by_arch[rec.arch]
        assert run.data.tags["wsnas.arch_hash"] == rec.arch_hash and run.data.tags["wsnas.trial"] == str(rec.trial)
        assert "wsnas.worker" in run.data.tags
        assert run.data.metrics["accuracy"] == pytest.approx(rec.values["accuracy"])
        assert run.data.metrics["predicted"] == pytest.approx(rec.predicted)
        assert {"uncertainty", "params", "flops"} <= set(run.data.metrics)
        assert sum(k.startswith("choice.") for k in run.data.params) == 6  # the six NB201 edges
    artifacts = {f.path: f.file_size for f in client.list_artifacts(parent.info.run_id, "search")}
    for name in ("progress.png", "predicted_vs_measured.png", "pareto.png", "best_architecture.png", "top_k.csv",
                 "predictor_card.json", "tracked-screening.csv"):  # fmt: skip
        assert artifacts.get(f"search/{name}", 0) > 0, (name, artifacts)


def test_server_down_mid_search_then_track_sync_fills_in_exactly_once(mlflow_server, table, pred, tmp_path) -> None:
    from mlflow.tracking import MlflowClient

    calls = []

    def evaluator(arch) -> float:  # the tracking server dies after the third evaluation
        calls.append(arch)
        if len(calls) == 4:
            mlflow_server.stop()
        return SPACE.ops(arch).count("nor_conv_3x3") / 6 + int(arch.hash[:6], 16) / 16**6 / 10

    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            res = wsnas.search(
                "nb201", evaluator=evaluator, eval_budget=8, predictor=pred, batch_size=8, study_name="outage",
                output_dir=tmp_path, progress=False, tracking=mlflow_server.uri,
            )  # fmt: skip
    finally:
        if mlflow_server.proc is None:
            mlflow_server.start()
    assert len(res.history) == 8 and all(r.state == "COMPLETE" for r in res.history)  # the search went on
    assert sum(issubclass(w.category, TrackingWarning) for w in caught) == 1
    client = MlflowClient(mlflow_server.uri)
    exp = client.get_experiment_by_name("outage")
    parent = client.search_runs([exp.experiment_id], "tags.`wsnas.role` = 'search'")[0]
    assert 3 <= len(children(client, exp.experiment_id, parent.info.run_id)) < 8

    cmd = ["track", "sync", "--study", "outage", "--output-dir", str(tmp_path), "--tracking-uri", mlflow_server.uri]
    for _ in range(2):  # twice: the second run logs nothing new
        out = CliRunner().invoke(main, cmd)
        assert out.exit_code == 0, out.output
    assert "logged 0 evaluation(s); MLflow now holds all 8" in out.output
    runs = children(client, exp.experiment_id, parent.info.run_id)
    assert sorted(int(r.data.tags["wsnas.trial"]) for r in runs) == sorted(r.trial for r in res.history)
    assert sorted(r.data.params["arch"] for r in runs) == sorted(r.arch for r in res.history)
