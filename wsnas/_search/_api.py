"""``wsnas.search``: Optuna-driven, predictor-guided architecture search with a real evaluation budget.

>>> result = wsnas.search("nb201", evaluator=wsnas.TrainEvaluator("digits"), eval_budget=20)
>>> result.best.arch, result.best.measured["accuracy"], len(result.history)

Optuna storage is the source of truth: every real evaluation is a trial there before anything else
happens with it, so a search resumes where it stopped (rerun the same call) and several processes or
machines share one study (:func:`join`, ``wsnas worker``) without evaluating an architecture twice.
"""

from __future__ import annotations

import copy
import os
import sys
from collections.abc import Callable, Sequence
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from wsnas._errors import SearchConfigError
from wsnas._search._loop import Loop, Plan
from wsnas._search._objectives import OBJECTIVES, NetMeasures, check_objectives
from wsnas._search._result import SearchRecord, SearchResult, build_result, write_json
from wsnas._search._store import Coordinator, _quiet_optuna, config_digest, open_storage, open_study, token_finished
from wsnas._search._tracking import (
    evaluation_of,
    finished_evaluations,
    log_artifacts,
    log_progress,
    search_config,
    tracker_for,
)

if TYPE_CHECKING:
    import optuna

    from wsnas._search._tracker import SearchTracker
    from wsnas.search_spaces import SearchSpace

__all__ = ["search", "join", "SearchResult", "SearchRecord", "SAMPLERS"]

SAMPLERS = ("auto", "tpe", "nsga2", "random")


# -- the plan: every argument checked before any work -------------------------------------------------
def _sampler_factory(name: Any, n_objectives: int, population: int) -> tuple[Callable[[int], Any], str]:
    import optuna

    if isinstance(name, optuna.samplers.BaseSampler):
        sampler = name
        return (lambda seed: copy.deepcopy(sampler)), f"custom:{type(name).__name__}"
    key = "auto" if name is None else str(name).lower()
    if key not in SAMPLERS:
        raise SearchConfigError(f"unknown sampler {name!r}; known samplers: {', '.join(SAMPLERS)} or an Optuna sampler")
    if key == "auto":
        key = "tpe" if n_objectives == 1 else "nsga2"
    if key == "tpe":
        return (lambda seed: optuna.samplers.TPESampler(seed=seed)), key
    if key == "nsga2":
        return (lambda seed: optuna.samplers.NSGAIISampler(seed=seed, population_size=population)), key
    return (lambda seed: optuna.samplers.RandomSampler(seed=seed)), key


def _predictor(predictor: Any, space: SearchSpace) -> tuple[Any, str | None]:
    if predictor is None:
        return None, None
    if isinstance(predictor, (str, os.PathLike)):
        from wsnas.predictors import load

        spec = str(predictor)
        pred = load(space.name if spec == "default" else spec)
        spec = spec if spec == "default" else str(Path(spec).resolve())
    else:
        if not callable(getattr(predictor, "predict", None)):
            raise SearchConfigError(
                f"predictor must be 'default', a predictor file, an object with predict(archs), or None; "
                f"got {type(predictor).__name__}"
            )
        pred, spec = copy.deepcopy(predictor), "object"
    pred_space = getattr(getattr(pred, "space", None), "name", space.name)
    if pred_space != space.name:
        raise SearchConfigError(f"the predictor scores space {pred_space!r}, the search runs on {space.name!r}")
    return pred, spec


def _plan(
    space: SearchSpace | str,
    evaluator: Any,
    eval_budget: int,
    predictor: Any,
    objectives: str | Sequence[str],
    sampler: Any,
    n_candidates: int | None,
    batch_size: int | None,
    seed: int,
    max_params: int | None,
    kappa: float,
    fine_tune_epochs: int,
) -> Plan:
    from wsnas._search._evaluators import TrainEvaluator, as_evaluator
    from wsnas.search_spaces import get_space

    space_obj = get_space(space) if isinstance(space, str) else space
    names = check_objectives(objectives)
    if "accuracy" not in names:
        raise SearchConfigError(f"objectives must include 'accuracy' (the rest are costs), got {list(names)}")
    for key, value, low in (("eval_budget", eval_budget, 0), ("seed", seed, 0)):
        if isinstance(value, bool) or not isinstance(value, int) or value < low:
            raise SearchConfigError(f"{key} must be an int >= {low}, got {value!r}")
    for key, value in (("n_candidates", n_candidates), ("batch_size", batch_size), ("max_params", max_params)):
        if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
            raise SearchConfigError(f"{key} must be None or an int >= 1, got {value!r}")
    if not kappa >= 0 or isinstance(fine_tune_epochs, bool) or not isinstance(fine_tune_epochs, int):
        raise SearchConfigError(f"kappa must be >= 0 and fine_tune_epochs an int, got {kappa!r}, {fine_tune_epochs!r}")
    if eval_budget > 0 and evaluator is None:
        raise SearchConfigError(f"eval_budget={eval_budget} needs an evaluator (TrainEvaluator, TableEvaluator, ...)")
    if eval_budget == 0 and predictor is None:
        raise SearchConfigError("a training-free search (eval_budget=0) needs a predictor; pass predictor= or a budget")
    pred, pred_spec = _predictor(predictor, space_obj)
    ev = as_evaluator(evaluator, space_obj) if evaluator is not None and eval_budget > 0 else None
    batch = (1 if pred is None else 32) if batch_size is None else batch_size
    if pred is None:
        batch = 1
    n_cand = n_candidates if n_candidates is not None else (max(8 * eval_budget, batch) if eval_budget else 500)
    population = max(4, min(50, (eval_budget or n_cand) // 4))
    factory, sampler_name = _sampler_factory(sampler, len(names), population)
    if isinstance(ev, TrainEvaluator):
        size, shape = ev.build_size(space_obj)
        measures = NetMeasures(space_obj, size, shape)
    else:
        measures = NetMeasures(space_obj)
    config = {
        "space": space_obj.name,
        "evaluator": None if ev is None else (getattr(ev, "spec", None) or "callable"),
        "objectives": list(names),
        "eval_budget": eval_budget,
        "predictor": pred_spec,
        "sampler": sampler_name,
        "n_candidates": n_cand,
        "batch_size": batch,
        "seed": seed,
        "max_params": max_params,
        "kappa": kappa,
        "fine_tune_epochs": fine_tune_epochs,
    }
    directions = [OBJECTIVES[n] for n in names]
    return Plan(
        space_obj, names, directions, ev, eval_budget, pred, factory, n_cand, batch, seed, max_params, kappa,
        fine_tune_epochs, measures, config,
    )  # fmt: skip


# -- running ------------------------------------------------------------------------------------------
def search(
    space: SearchSpace | str,
    *,
    evaluator: Any = None,
    eval_budget: int = 0,
    predictor: Any = "default",
    objectives: str | Sequence[str] = ("accuracy",),
    sampler: Any = None,
    n_candidates: int | None = None,
    batch_size: int | None = None,
    storage: str | None = None,
    study_name: str | None = None,
    seed: int = 0,
    output_dir: str | os.PathLike[str] = "wsnas-runs",
    max_params: int | None = None,
    kappa: float = 1.0,
    fine_tune_epochs: int = 3,
    stale_after: float = 60.0,
    tracking: bool | str | None = None,
    progress: bool = True,
) -> SearchResult:
    """Search ``space``: Optuna proposes, the predictor screens, the evaluator measures the most promising.

    Args:
        space: a search space or its name.
        evaluator: ``TrainEvaluator(task)``, ``TableEvaluator(csv, arch_column, metric_column)``, a spec
            string (``train:TASK``, ``table:PATH:ARCH_COL:METRIC_COL``) or any callable ``Arch -> float | dict``.
        eval_budget: real evaluations in all (across every worker; a FAIL trial counts as one);
            ``0``: training-free, predictions only.
        predictor: ``"default"`` (the shipped predictor of the space), a predictor file, a predictor
            object (copied, then fine-tuned online), or ``None`` (plain Optuna: no screening).
        objectives: ``accuracy`` plus any of ``params``, ``flops``, ``latency`` (the network's costs).
        sampler: ``None`` (TPE for one objective, NSGA-II for several), ``tpe``, ``nsga2``, ``random`` or an
            Optuna sampler.
        n_candidates: architectures screened in all (default ``8 * eval_budget``; 500 training-free);
            each round of ``batch_size`` (default 32) candidates spends ``eval_budget * batch_size /
            n_candidates`` real evaluations on the best of them.
        storage: an Optuna storage URL (``sqlite:///...``, ``postgresql://...``) or ``journal:PATH``;
            ``None``: ``OUTPUT_DIR/search.db``.
        study_name: default ``SPACE-DIGEST``, a digest of the configuration: the same call resumes.
        seed: seeds the sampler (worker ``i`` of a shared study uses ``seed + i``).
        output_dir: where the default storage, ``STUDY.json`` and ``STUDY-screening.csv`` go.
        max_params: drop candidates with more parameters before they are scored.
        kappa: the uncertainty weight of the ranking ``score + kappa * uncertainty``.
        fine_tune_epochs: epochs of each online fine-tuning of the predictor.
        stale_after: seconds without a heartbeat after which another worker's evaluation counts as dead.
        tracking: MLflow tracking (see :mod:`wsnas._search._tracker`): ``True`` logs to ``$MLFLOW_TRACKING_URI``
            or else ``sqlite:///OUTPUT_DIR/mlflow.db``; a string is a tracking URI; ``False`` turns it off;
            ``None`` (default) is ``True`` unless the environment sets ``WSNAS_TRACKING=0``.
            A tracking failure never stops the search (one warning; ``wsnas track sync`` fills the gap).
        progress: a tqdm bar of real evaluations on stderr.

    Raises:
        wsnas.SearchConfigError, wsnas.UnknownSearchSpace, wsnas.PredictorFileError, wsnas.EvaluatorError,
        wsnas.StorageError: bad input, each before any work starts. An evaluator that fails on an
        architecture makes that trial FAIL (the reason is kept) and the search goes on.
    """
    plan = _plan(
        space, evaluator, eval_budget, predictor, objectives, sampler, n_candidates, batch_size, seed, max_params,
        kappa, fine_tune_epochs,
    )  # fmt: skip
    out = Path(output_dir)
    storage_obj, url = open_storage(storage, out)
    name = study_name or f"{plan.space.name}-{config_digest(plan.config)}"
    study, _ = open_study(storage_obj, name, plan.directions, plan.config)
    return _run(plan, study, url, name, out, stale_after, progress, tracking)


def join(
    study_name: str,
    storage: str,
    *,
    output_dir: str | os.PathLike[str] = "wsnas-runs",
    evaluator: Any = None,
    predictor: Any = None,
    stale_after: float = 60.0,
    tracking: bool | str | None = None,
    progress: bool = True,
) -> SearchResult:
    """Join the running search ``study_name`` in ``storage`` as one more worker (``wsnas worker``).

    The configuration comes from the study. A search started with a callable evaluator or a predictor
    object needs them again here (``evaluator=``, ``predictor=``).

    Raises:
        wsnas.SearchConfigError: no such study, or its evaluator or predictor cannot be rebuilt.
    """
    out = Path(output_dir)
    storage_obj, url = open_storage(storage, out)
    study, config = open_study(storage_obj, study_name, [], None)
    ev = evaluator if evaluator is not None else config.get("evaluator")
    if ev == "callable":
        raise SearchConfigError(f"study {study_name!r} evaluates with a Python callable; pass it (evaluator=)")
    pred = predictor if predictor is not None else config.get("predictor")
    if pred == "object":
        raise SearchConfigError(f"study {study_name!r} screens with a predictor object; pass it (predictor=)")
    plan = _plan(
        config["space"], ev, config["eval_budget"], pred, config["objectives"], config["sampler"],
        config["n_candidates"], config["batch_size"], config["seed"], config["max_params"], config["kappa"],
        config["fine_tune_epochs"],
    )  # fmt: skip
    return _run(plan, study, url, study_name, out, stale_after, progress, tracking)


def _track(tracker: SearchTracker, study: optuna.Study, trial_id: int, plan: Plan) -> None:
    """Log the evaluation just stored (with the network's params and FLOPs) and the progress so far."""
    trial = study._storage.get_trial(trial_id)
    if not token_finished(trial) or not tracker.available:
        return
    ev = evaluation_of(trial, plan.objectives)
    try:
        arch = plan.space.from_string(ev.arch)
        costs = {"params": float(plan.measures.params(arch)), "flops": float(plan.measures.flops(arch))}
    except Exception:  # noqa: BLE001 - costs are extras; the evaluation is logged without them
        costs = {}
    ev = replace(ev, metrics={**costs, **ev.metrics})
    tracker.log_evaluation(ev)
    log_progress(tracker, finished_evaluations(study), plan.objectives)


def _run(
    plan: Plan, study: optuna.Study, url: str, name: str, out: Path, stale_after: float, progress: bool,
    tracking: bool | str | None = None,
) -> Any:  # fmt: skip
    from tqdm import tqdm

    coord = Coordinator(study, stale_after=stale_after)
    workers = [k for k in study.user_attrs if k.startswith("wsnas:worker:")]
    study.set_user_attr(f"wsnas:worker:{coord.worker}", len(workers))
    plan.seed = plan.seed + len(workers)
    out.mkdir(parents=True, exist_ok=True)
    total = plan.eval_budget or plan.n_candidates
    bar = tqdm(total=total, desc=f"search {plan.space.name}", unit="eval" if plan.eval_budget else "arch",
               file=sys.stderr, disable=not progress, dynamic_ncols=True)  # fmt: skip
    loop = Loop(plan, study, coord, bar, screening_log=str(out / f"{name}-screening.csv"))
    tracker = tracker_for(tracking, out, name)
    if tracker is not None:
        tracker.start(search_config(plan.config, plan.predictor, url))
        loop.on_result = lambda tid: _track(tracker, study, tid, plan)
    status = "KILLED"
    try:
        with _quiet_optuna():
            loop.run()
        status = "FINISHED"
    finally:
        bar.close()
        if tracker is not None and status != "FINISHED":
            tracker.finish(status)
    result = build_result(study, plan, url, name, out)
    result.predictor = plan.predictor
    result.tracking_uri = tracker.tracking_uri if tracker is not None else None
    write_json(out / f"{name}.json", result.to_dict())
    if tracker is not None:
        log_artifacts(tracker, result, out / f"{name}-artifacts")
        tracker.finish()
    return result
