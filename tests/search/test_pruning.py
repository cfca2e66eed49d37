"""Multi-fidelity evaluation: evaluators report per-epoch values to the study, Optuna's pruners stop poor
ones, a pruned evaluation is a PRUNED trial that spends its slot and is never the best."""

from __future__ import annotations

import optuna
import pytest
import torch
from optuna.trial import TrialState

import wsnas
from wsnas._search._loop import Loop
from wsnas._search._store import Coordinator, is_token
from wsnas.search_spaces import get_space

SPACE = get_space("nb201")


class Curves:
    """An evaluator whose learning curve depends on the call order only: the first ``good`` calls start
    high and end low (0.5 then 0.1), the later ones start lower (0.3) and would end high (0.9)."""

    def __init__(self, good: int = 2) -> None:
        self.good = good
        self.calls = 0
        self.stopped: list[int] = []

    def __call__(self, arch, *, trial=None) -> float:  # noqa: ANN001
        self.calls += 1
        curve = [0.5, 0.1] if self.calls <= self.good else [0.3, 0.9]
        for step, value in enumerate(curve, start=1):
            trial.report(value, step)
            if step < len(curve) and trial.should_prune():
                self.stopped.append(self.calls)
                raise optuna.TrialPruned()
        return curve[-1]


def _tokens(result: wsnas.SearchResult) -> list[optuna.trial.FrozenTrial]:
    return [t for t in result.study.get_trials(deepcopy=False) if is_token(t)]


def test_median_pruner_prunes_poor_curves_and_a_pruned_trial_is_never_the_best(tmp_path) -> None:
    ev = Curves(good=2)
    pruner = optuna.pruners.MedianPruner(n_startup_trials=2)
    res = wsnas.search("nb201", evaluator=ev, eval_budget=4, predictor=None, pruner=pruner, output_dir=tmp_path,
                       progress=False)  # fmt: skip
    assert ev.calls == 4 and ev.stopped == [3, 4]  # 0.3 < the median 0.5 of the finished curves at step 1
    tokens = sorted(_tokens(res), key=lambda t: t.number)
    assert [t.state for t in tokens] == [TrialState.COMPLETE] * 2 + [TrialState.PRUNED] * 2
    for t in tokens[2:]:  # PRUNED with its last value, kept in the shared storage
        assert t.user_attrs["outcome"] == "pruned" and t.user_attrs["pruned_at"] == 1
        assert t.value == pytest.approx(0.3) and t.intermediate_values == {1: pytest.approx(0.3)}
    assert tokens[0].intermediate_values == {1: pytest.approx(0.5), 2: pytest.approx(0.1)}
    # the pruned trials' 0.3 beats every finished 0.1, yet the best is a finished evaluation
    assert res.best is not None and res.best.state == "COMPLETE" and res.best.values["accuracy"] == pytest.approx(0.1)
    assert [r.state for r in res.history] == ["COMPLETE", "COMPLETE", "PRUNED", "PRUNED"]
    assert res.history[2].measured == {"accuracy": pytest.approx(0.3)} and not res.history[2].values
    assert all(r.state == "COMPLETE" for r in res.top(5)) and len(res.top(5)) == 2
    assert res.study.user_attrs["wsnas:config"]["pruner"] == "custom:MedianPruner"

    again = wsnas.search("nb201", evaluator=ev, eval_budget=4, predictor=None, pruner=pruner, output_dir=tmp_path,
                         progress=False)  # fmt: skip
    assert ev.calls == 4 and len(again.history) == 4  # pruned evaluations spent their slots: nothing to resume
    with pytest.raises(wsnas.SearchConfigError, match=r"custom pruner \(MedianPruner\); pass it \(pruner=\)"):
        wsnas.join(res.study_name, res.storage, evaluator=ev, output_dir=tmp_path, progress=False)


def test_without_a_pruner_the_curves_are_reported_and_nothing_is_pruned(tmp_path) -> None:
    ev = Curves(good=2)
    res = wsnas.search("nb201", evaluator=ev, eval_budget=4, predictor=None, output_dir=tmp_path, progress=False)
    assert ev.stopped == [] and [r.state for r in res.history] == ["COMPLETE"] * 4
    assert res.best.values["accuracy"] == pytest.approx(0.9)
    assert all(len(t.intermediate_values) == 2 for t in _tokens(res))


def test_named_pruners_are_stored_and_every_worker_makes_its_own(tmp_path) -> None:
    kinds = {"median": optuna.pruners.MedianPruner, "halving": optuna.pruners.SuccessiveHalvingPruner,
             "hyperband": optuna.pruners.HyperbandPruner}  # fmt: skip
    for name, kind in kinds.items():
        res = wsnas.search("nb201", evaluator=Curves(good=1), eval_budget=2, predictor=None, pruner=name,
                           output_dir=tmp_path / name, progress=False)  # fmt: skip
        assert res.study.user_attrs["wsnas:config"]["pruner"] == name
        joined = wsnas.join(res.study_name, res.storage, evaluator=Curves(), output_dir=tmp_path / name,
                            progress=False)  # fmt: skip
        config = joined._config
        assert config.pruner_name == name
        loops = [Loop(config, joined.study, Coordinator(joined.study), None, worker=w) for w in (0, 1)]
        assert all(isinstance(loop.pruner, kind) for loop in loops) and loops[0].pruner is not loops[1].pruner
    plain = wsnas.search("nb201", evaluator=Curves(), eval_budget=1, predictor=None, output_dir=tmp_path / "p",
                         progress=False)  # fmt: skip
    with_one = wsnas.search("nb201", evaluator=Curves(), eval_budget=1, predictor=None, pruner="median",
                            output_dir=tmp_path / "p", progress=False)  # fmt: skip
    assert plain.study_name != with_one.study_name  # a pruner makes another search (and study)


def test_train_evaluator_reports_every_epoch_and_stops_when_pruned(tmp_path) -> None:
    class Always(optuna.pruners.BasePruner):
        def prune(self, study, trial) -> bool:  # noqa: ANN001
            return True

    task = wsnas.synthetic(n=64, classes=2, image_size=8, epochs=3, val_size=16, size={"C": 2, "N": 1})
    ev = wsnas.TrainEvaluator(task)
    res = wsnas.search("nb201", evaluator=ev, eval_budget=1, predictor=None, pruner="median", output_dir=tmp_path / "a",
                       progress=False)  # fmt: skip
    (t,) = _tokens(res)  # median waits for 5 finished trials: trained to the end, every epoch reported
    assert t.state == TrialState.COMPLETE and sorted(t.intermediate_values) == [1, 2, 3]
    assert t.intermediate_values[3] == pytest.approx(t.value)
    res = wsnas.search("nb201", evaluator=ev, eval_budget=2, predictor=None, pruner=Always(), output_dir=tmp_path / "b",
                       progress=False)  # fmt: skip
    tokens = _tokens(res)
    assert [t.state for t in tokens] == [TrialState.PRUNED] * 2 and res.best is None
    assert all(sorted(t.intermediate_values) == [1] and t.user_attrs["pruned_at"] == 1 for t in tokens)


def test_train_stops_when_its_epoch_callback_says_so() -> None:
    task = wsnas.synthetic(n=64, classes=2, image_size=8, epochs=3, val_size=16, size={"C": 2, "N": 1})
    arch = SPACE.from_string("|nor_conv_3x3~0|+|skip_connect~0|nor_conv_1x1~1|+|none~0|none~1|avg_pool_3x3~2|")
    seen: list[tuple[int, float, float]] = []
    full = wsnas.train(SPACE, arch, task, seed=0, on_epoch=lambda *a: seen.append(a))
    assert [s[0] for s in seen] == [1, 2, 3] and [s[1] for s in seen] == list(full.val_acc_curve)
    assert "stopped_after_epoch" not in full.extra
    short = wsnas.train(SPACE, arch, task, seed=0, on_epoch=lambda epoch, acc, loss: epoch == 2)
    assert len(short.val_acc_curve) == 2 and short.extra["stopped_after_epoch"] == 2
    assert short.val_acc_curve == full.val_acc_curve[:2]  # the same run, cut short
    threads = torch.get_num_threads()

    def stop(epoch: int, acc: float, loss: float) -> None:
        raise optuna.TrialPruned()

    with pytest.raises(optuna.TrialPruned):
        wsnas.train(SPACE, arch, task, seed=0, on_epoch=stop)
    assert torch.get_num_threads() == threads and not torch.are_deterministic_algorithms_enabled()


def test_a_pruner_that_cannot_act_is_refused_before_any_work(table, tmp_path) -> None:
    out = tmp_path / "out"
    cases = [
        ({"pruner": "asha"}, "unknown pruner 'asha'; known pruners: none, median, halving, hyperband"),
        ({"objectives": ("accuracy", "params")}, r"pruning needs one objective"),
        ({"evaluator": wsnas.TableEvaluator(table, "arch", "acc")}, "TableEvaluator reports none"),
        ({"evaluator": lambda arch: 0.5}, "CallableEvaluator reports none"),
    ]
    for change, message in cases:
        kw = {"evaluator": Curves(), "eval_budget": 2, "predictor": None, "pruner": "median", **change}
        with pytest.raises(wsnas.SearchConfigError, match=message):
            wsnas.search("nb201", output_dir=out, progress=False, **kw)
        assert not out.exists() or not any(out.iterdir())


def test_the_predictor_guided_loop_never_proposes_a_pruned_cell_again(tmp_path) -> None:
    """With a predictor (the GP loop) the pruned cells keep their slots and architectures: every evaluation
    is a different cell, the loop learns from the completed ones only, and the best is a completed one."""
    ev = Curves(good=2)
    res = wsnas.search("nb201", evaluator=ev, eval_budget=6, n_candidates=64, pruner=optuna.pruners.MedianPruner(
        n_startup_trials=2), output_dir=tmp_path, progress=False, seed=3)  # fmt: skip
    tokens = _tokens(res)
    assert ev.calls == 6 and ev.stopped == [3, 4, 5, 6]
    assert sorted(t.state.name for t in tokens) == ["COMPLETE"] * 2 + ["PRUNED"] * 4
    assert len({t.user_attrs["arch_hash"] for t in tokens}) == 6  # no cell evaluated twice
    assert res.best is not None and res.best.state == "COMPLETE"
