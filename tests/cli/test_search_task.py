"""``wsnas search`` on a user's own data, network size and recipe (stored in the study, rebuilt by ``wsnas
worker``), ``--pruner``, and plug-in spaces and evaluators from the command line."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import optuna

import wsnas
from wsnas.search_spaces import get_space
from wsnas.testing import assert_one_line_error as _one_line_error
from wsnas.testing import run_cli as _cli

SPACE = get_space("nb201")
TASK = ("--evaluator", "train:cifar10", "-s", "C=2", "-s", "N=1", "--epochs", "2", "--resolution", "8",
        "--subset", "200", "--val-size", "100")  # fmt: skip


def _more_budget(doc: dict, budget: int) -> optuna.Study:
    """The study of a finished search with a larger budget, so that a worker has evaluations left to do."""
    study = optuna.load_study(study_name=doc["study_name"], storage=doc["storage"])
    study.set_user_attr("wsnas:config", {**study.user_attrs["wsnas:config"], "eval_budget": budget})
    return study


def test_search_trains_on_the_users_data_and_a_worker_rebuilds_the_task(cifar_dir, tmp_path) -> None:
    args = ["search", *TASK, "--data-dir", str(cifar_dir), "--eval-budget", "2", "--predictor", "none",
            "--pruner", "median", "--output-dir", str(tmp_path), "--quiet", "--json"]  # fmt: skip
    result = _cli(*args)
    assert result.exit_code == 0, result.output
    doc = json.loads(result.stdout)
    study = _more_budget(doc, 3)
    stored = study.user_attrs["wsnas:config"]
    ev = stored["evaluator"]
    assert ev["task"] == "cifar10" and Path(ev["data"]["data_dir"]).is_absolute() and stored["pruner"] == "median"
    assert {k: ev["recipe"][k] for k in ("epochs", "resolution", "subset", "val_size", "size")} == {
        "epochs": 2, "resolution": 8, "subset": 200, "val_size": 100, "size": {"C": 2, "N": 1}}  # fmt: skip
    worker = _cli("worker", "--study", doc["study_name"], "--storage", doc["storage"], "--data-dir", str(cifar_dir),
                  "--output-dir", str(tmp_path), "--quiet", "--json")  # fmt: skip
    assert worker.exit_code == 0, worker.output
    history = json.loads(worker.stdout)["history"]
    assert len(history) == 3 and [h["arch"] for h in history[:2]] == [h["arch"] for h in doc["history"]]
    tokens = [t for t in study.get_trials() if t.state == optuna.trial.TrialState.COMPLETE]
    assert len({t.user_attrs["worker"] for t in tokens}) == 2  # the third was the worker's
    for h, t in zip(history, sorted(tokens, key=lambda t: t.datetime_complete)):
        net = SPACE.build(SPACE.from_string(h["arch"]), C=2, N=1, num_classes=10, in_channels=3)
        assert h["params"] == wsnas.count_params(net)  # trained at -s C=2 -s N=1, by the search and the worker
        assert sorted(t.intermediate_values) == [1, 2] and t.intermediate_values[2] == t.value  # --epochs 2
    _one_line_error(
        _cli("worker", "--study", doc["study_name"], "--storage", doc["storage"], "--data-dir", str(tmp_path),
             "--output-dir", str(tmp_path), "--quiet"),
        "no CIFAR-10 'data_batch_1' in",
    )  # fmt: skip


def test_task_options_errors_are_one_line(cifar_dir, table, tmp_path) -> None:
    base = ["search", "--predictor", "none", "--output-dir", str(tmp_path), "--quiet"]
    _one_line_error(_cli(*base, "--evaluator", "train:cifar10"), "task 'cifar10' needs --data-dir DIR")
    _one_line_error(_cli(*base, "--evaluator", f"table:{table}:arch:acc", "--epochs", "2", "-s", "C=4"),
                    "--size, --epochs set up a train:TASK evaluator; --evaluator 'table:")  # fmt: skip
    _one_line_error(_cli(*base, *TASK, "--data-dir", str(cifar_dir), "--subset", "0"), "invalid recipe for task")
    _one_line_error(_cli(*base, *TASK, "--data-dir", str(cifar_dir), "--objectives", "accuracy,params",
                         "--pruner", "median"), "pruning needs one objective")  # fmt: skip
    _one_line_error(_cli(*base, "--evaluator", f"table:{table}:arch:acc", "--pruner", "halving"),
                    "TableEvaluator reports none")  # fmt: skip
    _one_line_error(_cli(*base, "--space", "no_such_module_q:Mine"), "no module named 'no_such_module_q'")
    _one_line_error(_cli(*base, "--space", "os.path:sep"), "is a str, not a SearchSpace")
    _one_line_error(_cli(*base, "--evaluator", "os.path:nope"), "module 'os.path' has no attribute 'nope'")
    assert not any(tmp_path.iterdir())


PLUGIN = """
from wsnas.search_spaces import NB201

class Mine(NB201):
    name = "mine3"
    description = "NB201 under another name"

def convs(arch, *, trial=None):
    return Mine().ops(arch).count("nor_conv_3x3") / 6
"""


PRUNING = """
import optuna
from wsnas.search_spaces import NB201

def halves(arch, *, trial=None):
    trial.report(0.1, 1)
    if "nor_conv_3x3" not in NB201().to_string(arch):  # a stand-in for a curve the pruner gives up on
        raise optuna.TrialPruned("no 3x3 convolution")
    return 0.5
"""


def test_the_report_says_how_many_evaluations_stopped_early(tmp_path, monkeypatch) -> None:
    (tmp_path / "mylab_p.py").write_text(textwrap.dedent(PRUNING))
    monkeypatch.syspath_prepend(str(tmp_path))
    args = ["search", "--space", "nb201", "--evaluator", "mylab_p:halves", "--eval-budget", "6", "--predictor", "none",
            "--seed", "1", "--output-dir", str(tmp_path / "out"), "--quiet"]  # fmt: skip
    result = _cli(*args)
    assert result.exit_code == 0, result.output
    doc = json.loads((tmp_path / "out").joinpath(next(p.name for p in (tmp_path / "out").glob("*.json"))).read_text())
    pruned = sum(h["state"] == "PRUNED" for h in doc["history"])
    assert 0 < pruned < 6, doc["history"]  # seed 1 draws cells of both kinds
    assert f"6 real evaluations ({pruned} stopped early)" in result.output.splitlines()[0]


def test_plugin_space_and_evaluator_from_the_command_line_and_a_worker(tmp_path, monkeypatch) -> None:
    (tmp_path / "mylab_q.py").write_text(textwrap.dedent(PLUGIN))
    monkeypatch.syspath_prepend(str(tmp_path))
    out = tmp_path / "out"
    args = ["search", "--space", "mylab_q:Mine", "--evaluator", "mylab_q:convs", "--eval-budget", "2",
            "--predictor", "none", "--pruner", "hyperband", "--output-dir", str(out), "--quiet", "--json"]  # fmt: skip
    result = _cli(*args)
    assert result.exit_code == 0, result.output
    doc = json.loads(result.stdout)
    assert doc["study_name"].startswith("mine3-") and len(doc["history"]) == 2
    stored = _more_budget(doc, 3).user_attrs["wsnas:config"]
    assert (stored["space"], stored["evaluator"], stored["pruner"]) == ("mylab_q:Mine", "mylab_q:convs", "hyperband")
    worker = [sys.executable, "-m", "wsnas.cli", "worker", "--study", doc["study_name"], "--storage", doc["storage"],
              "--output-dir", str(out), "--quiet", "--json"]  # fmt: skip
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    lost = subprocess.run(worker, capture_output=True, text=True, env=env, cwd=out, timeout=300)
    assert lost.returncode == 2 and lost.stderr.strip().splitlines() == [
        f"error: study {doc['study_name']!r}: search space plug-in 'mylab_q:Mine': no module named 'mylab_q' "
        "(install it, or put its folder on PYTHONPATH)"]  # fmt: skip
    found = subprocess.run(worker, capture_output=True, text=True, env={**env, "PYTHONPATH": str(tmp_path)}, cwd=out,
                           timeout=300)  # fmt: skip
    assert found.returncode == 0, found.stderr
    history = json.loads(found.stdout)["history"]
    assert len(history) == 3
    for h in history:  # the plug-in evaluator's values, in the worker too
        assert h["accuracy"] == SPACE.ops(SPACE.from_string(h["arch"])).count("nor_conv_3x3") / 6
