"""``wsnas.search``: Optuna-driven, predictor-guided architecture search with a real evaluation budget.

>>> result = wsnas.search("nb201", evaluator=wsnas.TrainEvaluator("digits"), eval_budget=20)
>>> result.best.arch, result.best.measured["accuracy"], len(result.history)
>>> task = wsnas.cifar10("data/cifar10", epochs=4, resolution=16, size={"C": 8})      # your own data and recipe
>>> wsnas.search("mylab.spaces:Mine", evaluator=wsnas.TrainEvaluator(task), eval_budget=24, pruner="median")

Optuna storage is the source of truth: every real evaluation is a trial there before anything else
happens with it, so a search resumes where it stopped (rerun the same call) and several processes or
machines share one study (:func:`join`, ``wsnas worker``) without evaluating an architecture twice.
"""

from __future__ import annotations

import math
import os
import sys
from collections.abc import Callable, Sequence
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from wsnas._errors import SearchConfigError
from wsnas._search._config import PRUNERS, SAMPLERS, SearchConfig
from wsnas._search._loop import Loop
from wsnas._search._optuna import storage_of
from wsnas._search._result import SearchRecord, SearchResult, build_result, write_json
from wsnas._search._store import Coordinator, config_digest, open_storage, open_study, quiet_optuna, token_finished
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

__all__ = ["search", "join", "SearchResult", "SearchRecord", "SAMPLERS", "PRUNERS"]


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
    pruner: Any = None,
    stale_after: float = 60.0,
    tracking: bool | str | None = None,
    progress: bool = True,
    on_start: Callable[[str, str], object] | None = None,
) -> SearchResult:
    """Search ``space``: Optuna proposes, the predictor screens, the evaluator measures the most promising.

    Args:
        space: a search space, its name, or a plug-in path ``package.module:attr`` (a SearchSpace or a
            zero-argument factory of one in an importable module; workers import the same).
        evaluator: ``TrainEvaluator(task)``, ``TableEvaluator(csv, arch_column, metric_column)``, a spec
            string (``train:TASK``, ``table:PATH:ARCH_COL:METRIC_COL``, a plug-in ``package.module:attr``)
            or any callable ``Arch -> float | dict`` (one taking a keyword ``trial`` may report
            intermediate values: :class:`~wsnas._search._evaluators.TrialReporter`). A TrainEvaluator of a
            built-in dataset is stored in the study as data, so ``wsnas worker`` rebuilds it.
        eval_budget: real evaluations in all (across every worker; a FAIL trial counts as one);
            ``0``: training-free, predictions only.
        predictor: ``"default"`` (the shipped predictor of the space), a predictor file, a predictor
            object (any :class:`~wsnas.SearchPredictor`, such as a ``WeightPredictor``; copied), or ``None``
            (plain Optuna: no screening). With one objective the predictor is the mean of a Gaussian
            process that real results correct (:mod:`wsnas._search._acquire`); with several it ranks
            batches of proposals and is fine-tuned online.
        objectives: ``accuracy`` plus any of ``params``, ``flops``, ``latency`` (the network's costs).
        sampler: ``None`` (TPE for one objective, NSGA-II for several), ``tpe``, ``nsga2``, ``random`` or an
            Optuna sampler.
        n_candidates: architectures screened in all (default ``8 * eval_budget``; 500 training-free);
            each round of ``batch_size`` (default 32) candidates spends ``eval_budget * batch_size /
            n_candidates`` real evaluations on the best of them. With one objective and a predictor: the
            size of the first pool when the evaluator has no table (then ``batch_size`` more each round).
        storage: an Optuna storage URL (``sqlite:///...``, ``postgresql://...``) or ``journal:PATH``;
            ``None``: ``OUTPUT_DIR/search.db``.
        study_name: default ``SPACE-DIGEST``, a digest of the configuration: the same call resumes.
        seed: seeds the sampler (worker ``i`` of a shared study uses ``seed + i``).
        output_dir: where the default storage, ``STUDY.json`` and ``STUDY-screening.csv`` go.
        max_params: drop candidates with more parameters before they are scored.
        kappa: the uncertainty weight of the ranking ``score + kappa * uncertainty`` (several objectives).
        fine_tune_epochs: epochs of each online fine-tuning of the predictor (several objectives).
        pruner: stop unpromising evaluations early on their intermediate values (a TrainEvaluator reports
            the validation accuracy after every epoch): ``None``/``"none"``, ``"median"``, ``"halving"``,
            ``"hyperband"`` (Optuna's MedianPruner, SuccessiveHalvingPruner, HyperbandPruner with their
            defaults) or an Optuna pruner. One objective only. A pruned evaluation is a PRUNED trial with
            its last value: it spends its slot of ``eval_budget`` and is never the best.
        stale_after: seconds without a heartbeat after which another worker's evaluation counts as dead.
        tracking: MLflow tracking (see :mod:`wsnas._search._tracker`): ``True`` logs to ``$MLFLOW_TRACKING_URI``
            or else ``sqlite:///OUTPUT_DIR/mlflow.db``; a string is a tracking URI; ``False`` turns it off;
            ``None`` (default) is ``True`` unless the environment sets ``WSNAS_TRACKING=0``.
            A tracking failure never stops the search (one warning; ``wsnas track sync`` fills the gap).
        progress: a tqdm bar of real evaluations on stderr.
        on_start: called as ``on_start(study_name, storage_url)`` once the study is open, before the first
            evaluation (``wsnas search`` prints how to join it from there); an error it raises stops the search.

    Raises:
        wsnas.SearchConfigError, wsnas.UnknownSearchSpace, wsnas.PredictorFileError, wsnas.EvaluatorError,
        wsnas.StorageError: bad input, each before any work starts. An evaluator that fails on an
        architecture makes that trial FAIL (the reason is kept) and the search goes on.
    """
    _check_stale_after(stale_after)
    config = SearchConfig.build(
        space=space, evaluator=evaluator, eval_budget=eval_budget, predictor=predictor, objectives=objectives,
        sampler=sampler, n_candidates=n_candidates, batch_size=batch_size, seed=seed, max_params=max_params,
        kappa=kappa, fine_tune_epochs=fine_tune_epochs, pruner=pruner,
    )  # fmt: skip
    out = Path(output_dir)
    storage_obj, url = open_storage(storage, out)
    stored = config.to_dict()
    name = study_name or f"{config.space.name}-{config_digest(stored)}"
    study, _ = open_study(storage_obj, name, config.directions, stored)
    return _run(config, study, url, name, out, stale_after, progress, tracking, on_start)


def join(
    study_name: str,
    storage: str,
    *,
    output_dir: str | os.PathLike[str] = "wsnas-runs",
    evaluator: Any = None,
    predictor: Any = None,
    pruner: Any = None,
    data_dir: str | os.PathLike[str] | None = None,
    stale_after: float = 60.0,
    tracking: bool | str | None = None,
    progress: bool = True,
    on_start: Callable[[str, str], object] | None = None,
    wait: float = 0.0,
) -> SearchResult:
    """Join the running search ``study_name`` in ``storage`` as one more worker (``wsnas worker``).

    The configuration comes from the study: the space (a plug-in path is imported again), the evaluator
    (a TrainEvaluator of a built-in dataset is rebuilt from its stored task; ``data_dir``: where that
    dataset is on this machine, if not where the search read it), the pruner. A search started with a
    callable evaluator, a predictor object or a custom Optuna pruner needs them again here (``evaluator=``,
    ``predictor=``, ``pruner=``). ``on_start`` as in :func:`search`. ``wait``: seconds to wait for the
    study to appear (a worker started beside the search that creates it), trying once a second.

    Raises:
        wsnas.SearchConfigError: no such study, or its space, evaluator, predictor or pruner cannot be
            rebuilt (the message says why). wsnas.DatasetError: the data is missing or other than the study's.
    """
    _check_stale_after(stale_after)
    if not isinstance(study_name, str) or not isinstance(storage, str):
        raise SearchConfigError(
            f"join needs a study name and a storage URL (str), got {study_name!r} and {storage!r}"
        )
    if not isinstance(wait, (int, float)) or not math.isfinite(wait) or wait < 0:
        raise SearchConfigError(f"wait must be a number of seconds >= 0, got {wait!r}")
    out = Path(output_dir)
    storage_obj, url, study, stored = _open_joined(storage, out, study_name, float(wait))
    _check_space(study_name, stored.get("space"))
    ev = evaluator if evaluator is not None else _stored_evaluator(study_name, stored.get("evaluator"), data_dir)
    pred = predictor if predictor is not None else stored.get("predictor")
    if pred == "object":
        raise SearchConfigError(f"study {study_name!r} screens with a predictor object; pass it (predictor=)")
    prune = pruner if pruner is not None else stored.get("pruner")
    if str(prune).startswith("custom:"):
        raise SearchConfigError(f"study {study_name!r} prunes with a custom pruner ({prune[7:]}); pass it (pruner=)")
    config = SearchConfig.from_dict(stored, evaluator=ev, predictor=pred, pruner=prune)
    return _run(config, study, url, study_name, out, stale_after, progress, tracking, on_start)


def _open_joined(storage: str, out: Path, study_name: str, wait: float) -> tuple[Any, str, optuna.Study, dict]:
    """The storage, its URL, the study ``study_name`` and its stored configuration; while the study is not
    there (or not yet configured by its search), try again once a second for ``wait`` seconds."""
    import time

    from wsnas._errors import StorageError

    deadline = time.monotonic() + wait
    while True:
        try:
            storage_obj, url = open_storage(storage, out, must_exist=study_name)
            study, stored = open_study(storage_obj, study_name, [], None)
            return storage_obj, url, study, stored
        except (StorageError, SearchConfigError):
            if time.monotonic() >= deadline:
                raise
            time.sleep(1.0)


def _stored_evaluator(study_name: str, ev: Any, data_dir: str | os.PathLike[str] | None) -> Any:
    """The evaluator a study stored, rebuilt (``data_dir``: its dataset's folder here); an error when the
    worker must be given it (a Python callable or object)."""
    from wsnas._search._evaluators import TrainEvaluator

    if ev == "callable":
        raise SearchConfigError(f"study {study_name!r} evaluates with a Python callable; pass it (evaluator=)")
    if isinstance(ev, dict) and ev.get("kind") == "object":
        raise SearchConfigError(
            f"study {study_name!r} evaluates with a Python {ev.get('type', 'object')} that it cannot store as data: "
            f"{ev.get('why')}; pass it (evaluator=), or start the search with a plug-in path (package.module:attr)"
        )
    if isinstance(ev, dict) and ev.get("kind") == "train":
        return TrainEvaluator.from_spec(ev, data_dir=data_dir)
    if data_dir is not None:
        raise SearchConfigError(f"study {study_name!r} evaluates with {ev!r}, which reads no data folder (data_dir=)")
    return ev


def _check_space(study_name: str, space: Any) -> None:
    """The study's space can be found here, else an error that says how a worker finds it."""
    from wsnas._errors import UnknownSearchSpace
    from wsnas.search_spaces import get_space

    try:
        get_space(str(space))
    except UnknownSearchSpace as exc:
        if ":" in str(space):
            raise SearchConfigError(f"study {study_name!r}: {exc}") from None
        raise SearchConfigError(
            f"study {study_name!r} searches space {space!r}, which this process does not know: start the search "
            "with a plug-in path (--space package.module:attr) that every worker imports, or register the space"
        ) from None


def _track(tracker: SearchTracker, study: optuna.Study, trial_id: int, config: SearchConfig) -> None:
    """Log the evaluation just stored (with the network's params and FLOPs) and the progress so far."""
    trial = storage_of(study).get_trial(trial_id)
    if not token_finished(trial) or not tracker.available:
        return
    ev = evaluation_of(trial, config.objectives)
    try:
        arch = config.space.from_string(ev.arch)
        costs = {"params": float(config.measures.params(arch)), "flops": float(config.measures.flops(arch))}
    except Exception:  # noqa: BLE001 - costs are extras; the evaluation is logged without them
        costs = {}
    ev = replace(ev, metrics={**costs, **ev.metrics})
    tracker.log_evaluation(ev)
    log_progress(tracker, finished_evaluations(study), config.objectives)


def _run(
    config: SearchConfig, study: optuna.Study, url: str, name: str, out: Path, stale_after: float, progress: bool,
    tracking: bool | str | None = None, on_start: Callable[[str, str], object] | None = None,
) -> Any:  # fmt: skip
    from tqdm import tqdm

    coord = Coordinator(study, stale_after=stale_after)
    workers = [k for k in study.user_attrs if k.startswith("wsnas:worker:")]
    study.set_user_attr(f"wsnas:worker:{coord.worker}", len(workers))
    out.mkdir(parents=True, exist_ok=True)
    if on_start is not None:  # before the progress bar draws, so its lines stay above the bar
        on_start(name, url)
    total = config.eval_budget or config.n_candidates
    bar = tqdm(total=total, desc=f"search {config.space.name}", unit="eval" if config.eval_budget else "arch",
               file=sys.stderr, disable=not progress, dynamic_ncols=True)  # fmt: skip
    loop = Loop(config, study, coord, bar, worker=len(workers), screening_log=str(out / f"{name}-screening.csv"))
    tracker = tracker_for(tracking, out, name)
    if tracker is not None:
        tracker.start(search_config(config.to_dict(), config.predictor, url))
        loop.on_result = lambda tid: _track(tracker, study, tid, config)
    status = "KILLED"
    try:
        with quiet_optuna():
            loop.run()
        status = "FINISHED"
    finally:
        bar.close()
        if tracker is not None and status != "FINISHED":
            tracker.finish(status)
    result = build_result(study, config, url, name, out)
    result.predictor = config.predictor
    result.tracking_uri = tracker.tracking_uri if tracker is not None else None
    write_json(out / f"{name}.json", result.to_dict())
    if tracker is not None:
        log_artifacts(tracker, result, out / f"{name}-artifacts")
        tracker.finish()
    return result


def _check_stale_after(stale_after: Any) -> None:
    ok = isinstance(stale_after, (int, float)) and not isinstance(stale_after, bool)
    if not ok or not math.isfinite(stale_after) or stale_after <= 0:
        raise SearchConfigError(f"stale_after must be a positive number of seconds, got {stale_after!r}")
