"""The MLflow tracker against a real ``mlflow server``: layout, idempotency, and surviving a dead server."""

from __future__ import annotations

import warnings

import pytest

from wsnas._search._tracker import SearchTracker, TrackedEvaluation, TrackingWarning, default_tracking_uri


def evaluation(i: int) -> TrackedEvaluation:
    return TrackedEvaluation(
        trial=i, arch=f"arch-{i}", arch_hash=f"{i:016x}", choices={"edge": "conv", "depth": i},
        metrics={"accuracy": 0.5 + i / 100, "params": 1000.0 * i, "latency_ms": float("nan")},
        predicted=0.4 + i / 100, uncertainty=0.01, worker="host:1",
    )  # fmt: skip


def children(client, tracker) -> list:
    return client.search_runs([tracker.experiment_id], f"tags.`mlflow.parentRunId` = '{tracker.parent_id}'")


def test_layout_and_idempotent_children(mlflow_server) -> None:
    from mlflow.tracking import MlflowClient

    tracker = SearchTracker(mlflow_server.uri, "study-layout")
    assert tracker.start({"space": "nb201", "seed": 0, "objectives": "accuracy"})
    for i in range(3):
        assert tracker.log_evaluation(evaluation(i))
    assert tracker.log_evaluation(evaluation(1))  # again: no second run
    assert tracker.log_step(1, {"best_accuracy": 0.52, "spearman": float("nan")})
    assert tracker.finish()
    client = MlflowClient(mlflow_server.uri)
    parent = client.get_run(tracker.parent_id)
    assert parent.data.params["space"] == "nb201" and parent.data.tags["wsnas.role"] == "search"
    assert parent.data.metrics == {"best_accuracy": 0.52} and parent.info.status == "FINISHED"
    runs = children(client, tracker)
    assert sorted(r.data.tags["wsnas.key"] for r in runs) == ["study-layout/0", "study-layout/1", "study-layout/2"]
    run = next(r for r in runs if r.data.tags["wsnas.trial"] == "2")
    assert run.data.params == {"arch": "arch-2", "choice.edge": "conv", "choice.depth": "2"}
    expected = {"accuracy": 0.52, "params": 2000.0, "predicted": 0.42, "uncertainty": 0.01}
    assert run.data.metrics == pytest.approx(expected)
    assert run.data.tags["wsnas.arch_hash"] == f"{2:016x}" and run.data.tags["wsnas.worker"] == "host:1"
    # a second tracker of the same study finds the same parent (a resumed search)
    again = SearchTracker(mlflow_server.uri, "study-layout")
    assert again.start({"seed": 0}) and again.parent_id == tracker.parent_id
    assert again.logged_keys() == {"study-layout/0", "study-layout/1", "study-layout/2"}


def test_a_dead_server_warns_once_and_sync_fills_the_gap_exactly_once(mlflow_server) -> None:
    from mlflow.tracking import MlflowClient

    tracker = SearchTracker(mlflow_server.uri, "study-outage", retries=1, timeout=2, cooldown=0)
    assert tracker.start({"space": "nb201"})
    assert tracker.log_evaluation(evaluation(0))
    mlflow_server.stop()
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            assert not tracker.log_evaluation(evaluation(1))
            assert not tracker.log_evaluation(evaluation(2))
            assert not tracker.log_step(2, {"best_accuracy": 0.6})
        assert [w.category for w in caught] == [TrackingWarning]
        assert "wsnas track sync" in str(caught[0].message)
    finally:
        mlflow_server.start()
    for i in range(3):  # what a sync does: log every evaluation; those already there are skipped
        assert tracker.log_evaluation(evaluation(i))
    for i in range(3):
        assert tracker.log_evaluation(evaluation(i))
    keys = sorted(r.data.tags["wsnas.key"] for r in children(MlflowClient(mlflow_server.uri), tracker))
    assert keys == ["study-outage/0", "study-outage/1", "study-outage/2"]


def test_default_tracking_uri(tmp_path, monkeypatch) -> None:
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    assert default_tracking_uri(tmp_path) == f"sqlite:///{tmp_path.resolve()}/mlflow.db"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://example:5000")
    assert default_tracking_uri(tmp_path) == "http://example:5000"


def test_a_local_sqlite_store_works_without_a_server(tmp_path, monkeypatch) -> None:
    elsewhere = tmp_path / "cwd"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)  # MLflow's default artifact root would be ./mlruns here
    tracker = SearchTracker(f"sqlite:///{tmp_path}/runs/mlflow.db", "local")
    assert tracker.start({"space": "nb201"}) and tracker.log_evaluation(evaluation(5))
    assert tracker.logged_keys() == {"local/5"}
    (tmp_path / "top.csv").write_text("arch,accuracy\n")
    assert tracker.log_artifact(tmp_path / "top.csv", "search") and tracker.finish()
    assert list(elsewhere.iterdir()) == []  # nothing in the current folder
    assert len(list((tmp_path / "runs" / "mlartifacts").rglob("top.csv"))) == 1  # beside the database


@pytest.mark.parametrize("bad", ["http://127.0.0.1:9"])
def test_an_unreachable_uri_never_raises(bad) -> None:
    tracker = SearchTracker(bad, "nowhere", retries=0, timeout=1)
    with pytest.warns(TrackingWarning):
        assert not tracker.start({"a": 1})
    assert not tracker.log_evaluation(evaluation(0)) and not tracker.available


def test_a_lazy_tracker_opens_the_store_with_the_first_thing_logged(tmp_path) -> None:
    db = tmp_path / "mlflow.db"
    tracker = SearchTracker(f"sqlite:///{db}", "lazy", lazy=True)
    assert tracker.start({"space": "nb201", "objectives": '["accuracy", "flops"]', "eval_budget": 4})
    assert not db.exists() and not tracker.started and not tracker.finish()  # nothing logged: nothing touched
    assert tracker.log_evaluation(evaluation(0)) and tracker.started and db.exists()
    assert tracker.finish()


def test_the_experiment_opens_as_model_training_with_a_runs_view_and_a_described_parent(tmp_path) -> None:
    import json

    from mlflow.tracking import MlflowClient

    from wsnas._search._tracker import KIND, MODEL_TRAINING, VIEW_TAG

    uri = f"sqlite:///{tmp_path}/mlflow.db"
    config = {"space": "nb201", "evaluator": "table:/data/t.csv:arch:acc", "objectives": '["accuracy", "latency"]',
              "eval_budget": 12, "predictor": "default", "n_candidates": 96, "sampler": "nsga2", "seed": 3}  # fmt: skip
    tracker = SearchTracker(uri, "described")
    assert tracker.start(config) and tracker.log_evaluation(evaluation(1))
    client = MlflowClient(uri)
    exp = client.get_experiment(tracker.experiment_id)
    assert exp.tags[KIND] == MODEL_TRAINING
    envelope = json.loads(exp.tags[VIEW_TAG])
    state = json.loads(envelope["state"])
    columns = ["metrics.`accuracy`", "metrics.`predicted`", "metrics.`params`", "metrics.`flops`",
               "metrics.`latency`", "params.`arch`"]  # fmt: skip
    assert state["selectedColumns"] == columns and state["orderByKey"] == "metrics.`accuracy`"
    assert not state["orderByAsc"]
    shown = client.search_runs([exp.experiment_id], state["searchFilter"])  # what the UI asks the server
    assert len(shown) == 1 and shown[0].data.tags["mlflow.parentRunId"] == tracker.parent_id  # no parent
    note = client.get_run(tracker.parent_id).data.tags["mlflow.note.content"]
    for words in ("**nb201**", "12 real evaluations", "table:/data/t.csv:arch:acc", "accuracy, latency",
                  "`default`", "96 candidates", "nsga2", "seed 3"):  # fmt: skip
        assert words in note, (words, note)
    # an experiment made before these tags existed gets them when its search resumes
    for key in (KIND, VIEW_TAG):
        client.delete_experiment_tag(exp.experiment_id, key)
    assert SearchTracker(uri, "described").start(config)
    assert set(client.get_experiment(exp.experiment_id).tags) >= {KIND, VIEW_TAG}
