"""``wsnas track sync`` and ``wsnas ui``: their one-line errors, the UI of a remote tracking server, and the
link ``wsnas ui`` prints (the latest search's runs view, once the server answers). ``track sync`` filling
what a dead server missed is in tests/search/test_tracking.py."""

from __future__ import annotations

import json
import queue
import signal
import socket
import subprocess
import sys
import threading
import urllib.parse
import urllib.request

from click.testing import CliRunner

import wsnas
from wsnas._search._tracker import KIND, MODEL_TRAINING, VIEW_TAG
from wsnas.cli import main


def test_track_sync_and_ui_errors(tmp_path) -> None:
    out = CliRunner().invoke(main, ["track", "sync", "--study", "x", "--output-dir", str(tmp_path)])
    assert out.exit_code == 2 and "error: no search storage in" in out.output
    out = CliRunner().invoke(main, ["ui", "--output-dir", str(tmp_path)])
    assert out.exit_code == 2 and "error: no tracking store at" in out.output
    out = CliRunner().invoke(main, ["ui", "--tracking-uri", "http://127.0.0.1:5999"])
    assert out.exit_code == 0 and "MLflow UI: http://127.0.0.1:5999" in out.output


def _accuracy(arch) -> float:  # noqa: ANN001
    return 0.5 + int(arch.hash[:6], 16) / 16**6 / 10


def test_ui_prints_the_latest_searchs_runs_view_once_the_server_answers(tmp_path) -> None:
    from mlflow.tracking import MlflowClient

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    for name in ("older", "latest"):
        wsnas.search("nb201", evaluator=_accuracy, eval_budget=2, predictor=None, objectives=("accuracy", "params"),
                     study_name=name, output_dir=tmp_path, progress=False, tracking=uri)  # fmt: skip
    client = MlflowClient(uri)
    exp = client.get_experiment_by_name("latest")
    parent_id = client.search_runs([exp.experiment_id], "tags.`wsnas.role` = 'search'")[0].info.run_id
    client.delete_experiment_tag(exp.experiment_id, VIEW_TAG)  # as if tracked before the view and the
    client.delete_tag(parent_id, "mlflow.note.content")  # description existed: wsnas ui puts them back
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    cmd = [sys.executable, "-m", "wsnas.cli", "ui", "--output-dir", str(tmp_path), "--port", str(port)]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    lines: queue.Queue[str] = queue.Queue()
    threading.Thread(target=lambda: [lines.put(line) for line in proc.stdout], daemon=True).start()
    try:
        first = lines.get(timeout=300)
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=5) as r:  # answering already
            assert r.status == 200
        second = lines.get(timeout=30)
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=60)
    assert first.startswith(f"MLflow UI for {uri}: http://127.0.0.1:{port}/#/experiments/{exp.experiment_id}/runs?")
    link = first.split(": ", 1)[1].strip()
    query = urllib.parse.parse_qs(link.split("?", 1)[1])
    assert query["workflowType"] == ["machine_learning"]
    tags = client.get_experiment(exp.experiment_id).tags
    assert tags[KIND] == MODEL_TRAINING and VIEW_TAG == f"mlflow.sharedViewState.{query['viewStateShareKey'][0]}"
    state = json.loads(json.loads(tags[VIEW_TAG])["state"])  # put back by wsnas ui
    assert state["selectedColumns"][:4] == [f"metrics.`{m}`" for m in ("accuracy", "predicted", "params", "flops")]
    evaluations = client.search_runs([exp.experiment_id], state["searchFilter"])
    assert len(evaluations) == 2 and all({"accuracy", "params", "flops"} <= set(r.data.metrics) for r in evaluations)
    assert parent_id in second
    note = client.get_run(parent_id).data.tags["mlflow.note.content"]
    assert "**nb201**" in note and "2 real evaluations" in note and "accuracy, params" in note and "none" in note
