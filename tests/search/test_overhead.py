"""The fixed costs of a search (issue 16, item 5): FLOPs counted without torch's per-module bookkeeping, and
MLflow left alone by a rerun of a finished search. The figures are in benchmarks/search_overhead.py."""

from __future__ import annotations

import subprocess
import sys

import torch

import wsnas
from wsnas._netstats import count_flops
from wsnas._search._tracker import SearchTracker
from wsnas.search_spaces import get_space

SPACE = get_space("nb201")
ARCHS = [
    "|nor_conv_3x3~0|+|nor_conv_3x3~0|avg_pool_3x3~1|+|skip_connect~0|nor_conv_3x3~1|skip_connect~2|",
    "|skip_connect~0|+|nor_conv_1x1~0|avg_pool_3x3~1|+|skip_connect~0|none~1|nor_conv_3x3~2|",
    "|none~0|+|none~0|none~1|+|none~0|none~1|none~2|",
]


def _reference(net: torch.nn.Module, shape: tuple[int, ...]) -> int:
    from torch.utils.flop_counter import FlopCounterMode

    net.eval()
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        net(torch.zeros(1, *shape))
    return counter.get_total_flops()


def test_count_flops_agrees_with_torchs_flop_counter() -> None:
    for text in ARCHS:
        net = SPACE.build(SPACE.from_string(text), C=8, N=1)
        assert count_flops(net, SPACE.input_shape) == _reference(net, SPACE.input_shape) > 0
    mlp = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(12, 5), torch.nn.ReLU(), torch.nn.Linear(5, 2))
    assert count_flops(mlp, (3, 4)) == _reference(mlp, (3, 4)) == 2 * (12 * 5 + 5 * 2)
    assert count_flops(mlp, (3, 4), batch_size=3) == 3 * count_flops(mlp, (3, 4))


def test_count_flops_does_not_import_torch_dynamo() -> None:  # 1.5 s of CPU the first time in a process
    code = ("import sys, torch; from wsnas import count_flops; "
            "count_flops(torch.nn.Conv2d(3, 4, 3), (3, 8, 8)); print('torch._dynamo' in sys.modules)")  # fmt: skip
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def _accuracy(arch) -> float:  # noqa: ANN001
    return SPACE.ops(arch).count("nor_conv_3x3") / 6 + int(arch.hash[:6], 16) / 16**6 / 10


def test_a_rerun_of_a_finished_search_leaves_mlflow_alone(tmp_path, monkeypatch) -> None:
    from mlflow.tracking import MlflowClient

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    args = dict(evaluator=_accuracy, predictor=None, study_name="again", output_dir=tmp_path, progress=False,
                tracking=uri)  # fmt: skip
    first = wsnas.search("nb201", eval_budget=3, **args)
    calls: list[str] = []  # who asked for the MLflow client
    client = SearchTracker.client
    monkeypatch.setattr(SearchTracker, "client", property(lambda self: calls.append(self.study) or client.fget(self)))
    rerun = wsnas.search("nb201", eval_budget=3, **args)
    assert calls == [] and [r.arch for r in rerun.history] == [r.arch for r in first.history]
    assert (tmp_path / "again-artifacts" / "progress.png").is_file()
    more = wsnas.search("nb201", eval_budget=4, **args)  # one more evaluation: MLflow gets it and new plots
    assert set(calls) == {"again"} and len(more.history) == 4
    client = MlflowClient(uri)
    exp = client.get_experiment_by_name("again")
    parent = client.search_runs([exp.experiment_id], "tags.`wsnas.role` = 'search'")[0]
    assert parent.info.status == "FINISHED"
    assert len(client.search_runs([exp.experiment_id], f"tags.`mlflow.parentRunId` = '{parent.info.run_id}'")) == 4
    assert [m.step for m in client.get_metric_history(parent.info.run_id, "evaluations")] == [1, 2, 3, 4]


def test_a_rerun_of_a_finished_search_does_not_fine_tune_its_predictor(pred, tmp_path, monkeypatch) -> None:
    tuned: list[int] = []
    fine_tune = type(pred).fine_tune

    def counted(self, archs, *args, **kwargs):  # noqa: ANN001, ANN002, ANN003, ANN202
        tuned.append(len(archs))
        return fine_tune(self, archs, *args, **kwargs)

    monkeypatch.setattr(type(pred), "fine_tune", counted)
    args = dict(evaluator=_accuracy, eval_budget=6, predictor=pred, objectives=("accuracy", "params"),
                batch_size=8, fine_tune_epochs=1, study_name="tuned", output_dir=tmp_path, progress=False,
                tracking=False)  # fmt: skip
    first = wsnas.search("nb201", **args)
    assert tuned and tuned[-1] == 6  # online: fine-tuned on every result so far, the last time on all six
    tuned.clear()
    rerun = wsnas.search("nb201", **args)
    assert tuned == [] and [r.arch for r in rerun.history] == [r.arch for r in first.history]
