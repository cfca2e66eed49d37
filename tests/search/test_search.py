"""wsnas.search in one process: budget, resume, determinism, evaluators, objectives, errors (the CLI: tests/cli)."""

from __future__ import annotations

import json
import math

import numpy as np
import optuna
import pytest

import wsnas
from wsnas._search._store import is_token
from wsnas.search_spaces import get_space

SPACE = get_space("nb201")


@pytest.fixture(scope="module")
def accs(records) -> dict[str, float]:
    return {r.arch_hash: r.val_acc for r in records}


def _tokens(result: wsnas.SearchResult) -> list[optuna.trial.FrozenTrial]:
    return [t for t in result.study.get_trials(deepcopy=False) if is_token(t)]


def _search(table, pred, out, **kw):
    options = {"evaluator": wsnas.TableEvaluator(table, "arch", "acc"), "predictor": pred, "batch_size": 8}
    options.update(kw)
    return wsnas.search("nb201", output_dir=out, progress=False, **options)


def test_budget_spent_on_distinct_archs_then_resume_and_extend(table, pred, accs, tmp_path) -> None:
    res = _search(table, pred, tmp_path, eval_budget=8)
    assert len(res.history) == 8 and all(r.state == "COMPLETE" for r in res.history)
    hashes = [r.arch_hash for r in res.history]
    assert len(set(hashes)) == 8
    for r in res.history:  # measured values are the table's, predictions were recorded
        assert r.values["accuracy"] == pytest.approx(accs[r.arch_hash]) and r.predicted is not None
    assert res.best is not None and res.best.values["accuracy"] == max(r.values["accuracy"] for r in res.history)
    assert res.best.params and res.best.flops
    done = [t for t in _tokens(res) if t.state == optuna.trial.TrialState.COMPLETE]
    assert len(done) == 8  # every real evaluation is a COMPLETE trial of the study
    assert (tmp_path / "search.db").is_file() and (tmp_path / f"{res.study_name}.json").is_file()
    doc = json.loads((tmp_path / f"{res.study_name}.json").read_text())
    assert [h["arch"] for h in doc["history"]] == [r.arch for r in res.history]
    assert (tmp_path / f"{res.study_name}-screening.csv").is_file()

    again = _search(table, pred, tmp_path, eval_budget=8)  # the same call: nothing new
    assert [r.arch_hash for r in again.history] == hashes and len(_tokens(again)) == len(_tokens(res))
    more = _search(table, pred, tmp_path, eval_budget=12)  # a larger budget extends the same study
    assert [r.arch_hash for r in more.history][:8] == hashes
    assert len(more.history) == 12 and len({r.arch_hash for r in more.history}) == 12


def test_same_seed_same_result(table, pred, tmp_path) -> None:
    a = _search(table, pred, tmp_path / "a", eval_budget=6, seed=3)
    b = _search(table, pred, tmp_path / "b", eval_budget=6, seed=3)
    assert [r.arch for r in a.history] == [r.arch for r in b.history]
    assert pred.history == b.predictor.history[: len(pred.history)]  # the caller's predictor is not changed
    assert b.predictor.history == pred.history  # one objective: a GP prior, never fine-tuned


def test_evaluator_errors_and_nan_fail_their_trial_and_the_search_goes_on(pred, tmp_path) -> None:
    calls = []

    def flaky(arch: wsnas.Arch) -> float:
        calls.append(arch.hash)
        if len(calls) == 2:
            raise RuntimeError("out of memory (simulated)")
        if len(calls) == 4:
            return math.nan
        return float(SPACE.ops(arch).count("nor_conv_3x3"))

    res = wsnas.search("nb201", evaluator=flaky, eval_budget=6, predictor=pred, output_dir=tmp_path, progress=False)
    assert len(res.history) == 6 and len(calls) == 6 and len(set(calls)) == 6
    failed = [r for r in res.history if r.state == "FAIL"]
    reasons = ["RuntimeError: out of memory (simulated)", "the evaluator returned accuracy=nan"]
    assert [f.error for f in failed] == reasons
    fails = [t for t in _tokens(res) if t.state == optuna.trial.TrialState.FAIL]
    assert sorted(t.user_attrs["fail_reason"] for t in fails) == sorted(f.error for f in failed)


def test_ctrl_c_gives_the_evaluation_back_and_the_same_call_resumes(pred, tmp_path) -> None:
    calls: list[str] = []
    stop = {"at": 3}

    def evaluator(arch: wsnas.Arch) -> float:
        calls.append(arch.hash)
        if len(calls) == stop["at"]:
            raise KeyboardInterrupt
        return float(SPACE.ops(arch).count("nor_conv_3x3") + 0.01 * len(calls))

    kw = {"evaluator": evaluator, "eval_budget": 5, "predictor": pred, "output_dir": tmp_path, "progress": False}
    with pytest.raises(KeyboardInterrupt):
        wsnas.search("nb201", **kw)
    stop["at"] = -1
    res = wsnas.search("nb201", **kw)
    assert len(res.history) == 5 and all(r.state == "COMPLETE" for r in res.history)
    assert len(set(r.arch_hash for r in res.history)) == 5
    assert len(calls) == 2 + 1 + 3  # two kept, the interrupted one given back, three more
    interrupted = [t for t in _tokens(res) if t.user_attrs.get("outcome") == "interrupted"]
    assert len(interrupted) == 1


def test_multi_objective_returns_a_pareto_front(table, pred, tmp_path) -> None:
    res = _search(table, pred, tmp_path, eval_budget=10, objectives=("accuracy", "params"))
    assert res.study.directions == [optuna.study.StudyDirection.MAXIMIZE, optuna.study.StudyDirection.MINIMIZE]
    assert res.study.user_attrs["wsnas:config"]["sampler"] == "nsga2"
    done = [r for r in res.history if r.state == "COMPLETE"]
    pts = {r.arch_hash: (r.values["accuracy"], r.values["params"]) for r in done}
    front = {r.arch_hash for r in res.pareto}
    assert front and res.best is not None and res.best.arch_hash in front
    for h in front:  # nothing dominates a front member; every other record is dominated by one
        a, p = pts[h]
        assert not any(a2 >= a and p2 <= p and (a2, p2) != (a, p) for a2, p2 in pts.values())
    for h, (a, p) in pts.items():
        if h not in front:
            assert any(pts[f][0] >= a and pts[f][1] <= p for f in front)


def test_training_free_max_params_and_plain_optuna(table, pred, tmp_path) -> None:
    free = wsnas.search("nb201", predictor=pred, n_candidates=24, batch_size=12, output_dir=tmp_path, progress=False)
    assert free.training_free and free.history == [] and len(free.screened) == 24
    assert free.best is not None and free.best.predicted == max(r.predicted for r in free.screened)
    limit = 400_000
    small = _search(table, pred, tmp_path, eval_budget=5, max_params=limit)
    assert all(wsnas.NetMeasures(SPACE).params(SPACE.from_string(r.arch)) <= limit for r in small.history)
    plain = _search(table, None, tmp_path, eval_budget=5, sampler="random")
    assert len(plain.history) == 5 and all(r.predicted is None for r in plain.history)


def test_records_carry_params_and_flops_from_what_was_measured(table, pred, tmp_path) -> None:
    seen_at_start: list[tuple[str, str, int]] = []
    calls: list[str] = []

    def measuring(arch: wsnas.Arch) -> dict[str, float]:  # an evaluator that measures the network itself
        calls.append(arch.hash)
        convs = SPACE.ops(arch).count("nor_conv_3x3")
        return {"accuracy": convs / 6, "params": 1000.0 + 10 * convs, "flops": 5000.0 + len(calls)}

    def on_start(name: str, url: str) -> None:
        seen_at_start.append((name, url, len(calls)))

    res = wsnas.search("nb201", evaluator=measuring, eval_budget=4, predictor=pred, output_dir=tmp_path,
                       progress=False, on_start=on_start)  # fmt: skip
    assert seen_at_start == [(res.study_name, res.storage, 0)]  # told where, before the first evaluation
    assert len(res.history) == 4
    for r in res.history:  # every record, not only the best: the evaluator's own measurements, as ints
        assert type(r.params) is int and type(r.flops) is int
        assert (r.params, r.flops) == (int(r.measured["params"]), int(r.measured["flops"]))
    assert res.best is not None and res.best.params == int(res.best.measured["params"])
    two = _search(table, pred, tmp_path / "two", eval_budget=4, objectives=("accuracy", "params"))
    for r in two.history:  # a table measures no network: the params objective the search computed fills it
        assert r.params == int(r.values["params"]) > 0
    for r in two.pareto:
        assert type(r.params) is int and type(r.flops) is int and r.flops > 0


def test_no_shipped_predictor_names_both_ways_out(pred, tmp_path, only_nb201_shipped) -> None:
    with pytest.raises(wsnas.SearchConfigError) as info:
        wsnas.search("nb101", output_dir=tmp_path, progress=False)  # training-free, the default predictor
    message = str(info.value)
    assert "no shipped predictor for space 'nb101'" in message and "--predictor none" in message
    assert 'load("nb201").transfer("nb101")' in message and "wsnas predictor finetune" in message
    with pytest.raises(wsnas.SearchConfigError, match=r"pred\.transfer\('nb101'\).*--predictor none"):
        wsnas.search("nb101", predictor=pred, output_dir=tmp_path, progress=False)


def test_train_evaluator_trains_for_real(tmp_path) -> None:
    ev = wsnas.TrainEvaluator(wsnas.synthetic(epochs=1))
    res = wsnas.search("nb201", evaluator=ev, eval_budget=2, predictor=None, output_dir=tmp_path, progress=False)
    assert len(res.history) == 2
    m = res.history[0].measured
    assert 0.0 <= m["accuracy"] <= 1.0 and m["params"] > 0 and m["flops"] > 0 and m["train_seconds"] > 0


def test_table_evaluator_errors_are_clear(table, tmp_path) -> None:
    ev = wsnas.TableEvaluator(table, "arch", "acc", space="nb201")
    missing = SPACE.from_string("|none~0|+|none~0|none~1|+|none~0|none~1|none~2|")
    assert not ev.can_evaluate(missing) or pytest.skip("the zoo holds the all-none cell")
    with pytest.raises(wsnas.EvaluatorError, match=r"is not in table .*1255 architectures"):
        ev(missing)
    bad = tmp_path / "bad.csv"
    cases = {
        "arch,acc\n": "no rows below its header",
        "name,acc\nx,1\n": "has no column 'arch'; its columns are \\['name', 'acc'\\]",
        "arch,acc\n|none~0|+|none~0|none~1|+|none~0|none~1|none~2|,high\n": "line 2: 'acc' must be a number",
    }
    for text, message in cases.items():
        bad.write_text(text)
        with pytest.raises(wsnas.EvaluatorError, match=message):
            wsnas.TableEvaluator(bad, "arch", "acc")
    bad.write_text("arch,acc\n|conv~0|,0.5\n")
    with pytest.raises(wsnas.EvaluatorError, match="line 2: '\\|conv~0\\|' is not an architecture of 'nb201'"):
        wsnas.TableEvaluator(bad, "arch", "acc", space="nb201")
    with pytest.raises(wsnas.EvaluatorError, match="does not exist"):
        wsnas.TableEvaluator(tmp_path / "nope.csv", "arch", "acc")


def test_bad_search_input_is_one_clear_error_before_any_work(table, pred, tmp_path, only_nb201_shipped) -> None:
    ev = wsnas.TableEvaluator(table, "arch", "acc")
    out = tmp_path / "out"
    cases = [
        ({"space": "nb999"}, wsnas.UnknownSearchSpace, "unknown search space 'nb999'"),
        ({"sampler": "cmaes"}, wsnas.SearchConfigError, "unknown sampler 'cmaes'"),
        ({"objectives": ("accuracy", "joules")}, wsnas.SearchConfigError, "unknown objective 'joules'"),
        ({"objectives": ("params",)}, wsnas.SearchConfigError, "must include 'accuracy'"),
        ({"eval_budget": -1}, wsnas.SearchConfigError, "eval_budget must be an int >= 0"),
        ({"evaluator": None}, wsnas.SearchConfigError, "eval_budget=3 needs an evaluator"),
        ({"eval_budget": 0, "predictor": None}, wsnas.SearchConfigError, "training-free search"),
        ({"predictor": tmp_path / "none.safetensors"}, wsnas.PredictorFileError, "does not exist"),
        ({"space": "nb101"}, wsnas.SearchConfigError, "no shipped predictor for space 'nb101'"),
        ({"space": "graph", "predictor": pred}, wsnas.SearchConfigError, "scores space 'nb201'"),
        ({"storage": "postgresql://u:secret@127.0.0.1:1/db"}, wsnas.StorageError, "cannot open storage"),
        ({"storage": "nosuchdb://x"}, wsnas.StorageError, "cannot open storage 'nosuchdb://x'"),
    ]
    for change, error, message in cases:
        kw = {"space": "nb201", "evaluator": ev, "eval_budget": 3, "predictor": pred, **change}
        if kw["space"] == "nb101" and "predictor" not in change:
            kw["predictor"] = "default"
        with pytest.raises(error, match=message) as info:
            wsnas.search(kw.pop("space"), output_dir=out, progress=False, **kw)
        assert "secret" not in str(info.value)
        assert not out.exists() or not any(out.iterdir()), f"{change} left files behind"


def test_evaluator_results_are_normalised() -> None:
    from wsnas._search._evaluators import CallableEvaluator

    arch = SPACE.sample(np.random.default_rng(0))
    assert CallableEvaluator(lambda a: 0.5)(arch) == {"accuracy": 0.5}
    assert CallableEvaluator(lambda a: {"accuracy": 1, "loss": 0.2})(arch) == {"accuracy": 1.0, "loss": 0.2}
    with pytest.raises(wsnas.EvaluatorError, match="must return a number or a dict"):
        CallableEvaluator(lambda a: "good")(arch)
    with pytest.raises(wsnas.EvaluatorError, match="must be callable"):
        CallableEvaluator(3)  # type: ignore[arg-type]
