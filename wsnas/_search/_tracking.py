"""A search's MLflow tracking: what the loop reports after each evaluation, the end-of-search artifacts,
and ``wsnas track sync``. The MLflow side (runs, retries, idempotency) is :mod:`wsnas._search._tracker`.

Everything is read back from the Optuna study (the source of truth), so live tracking and a later sync
log the same runs: a child run per finished real evaluation (its trial number is the key), best-so-far
and predictor-vs-real Spearman as step metrics on the parent (the step is the evaluation's position).

A search's tracker is lazy (MLflow starts with the first evaluation logged), and the end-of-search
artifacts are written and logged once per tracking store and number of evaluations (the study keeps
what was logged where, under :data:`LOGGED_KEY`): rerunning a finished search does not touch MLflow.
:func:`search_links` finds the latest search in an MLflow server (``wsnas ui`` prints its links).
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import subprocess
import urllib.request
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from wsnas._search._tracker import (
    VIEW_TAG,
    SearchTracker,
    TrackedEvaluation,
    default_tracking_uri,
    experiment_tags,
    runs_link,
    search_description,
)

if TYPE_CHECKING:
    import optuna
    from optuna.trial import FrozenTrial

    from wsnas._search._protocol import SearchPredictor
    from wsnas._search._result import SearchResult

__all__ = ["tracker_for", "search_config", "evaluation_of", "finished_evaluations", "log_progress",
           "log_artifacts", "sync", "search_links", "LOGGED_KEY"]  # fmt: skip

#: study user attribute ``{tracking URI: evaluations}``: the stores that hold the search's artifacts, and
#: how many evaluations the search had when they were logged
LOGGED_KEY = "wsnas:artifacts_logged"


def tracker_for(tracking: bool | str | None, output_dir: str | Path, study_name: str) -> SearchTracker | None:
    """The (lazy) tracker of ``tracking``: ``True`` the default store, a string that URI, ``False`` none,
    ``None`` the default store unless ``$WSNAS_TRACKING`` is ``0``/``off``/``false``/``no``."""
    if tracking is None:
        tracking = os.environ.get("WSNAS_TRACKING", "1").strip().lower() not in ("0", "off", "false", "no")
    if tracking is False:
        return None
    uri = default_tracking_uri(output_dir) if tracking is True else str(tracking)
    if uri.startswith("sqlite:///"):
        Path(uri[len("sqlite:///") :]).parent.mkdir(parents=True, exist_ok=True)
    return SearchTracker(uri, study_name, lazy=True)


def _git_commit() -> str | None:
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True, timeout=5, check=False)
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() or None if out.returncode == 0 else None


def search_config(config: Mapping[str, Any], predictor: SearchPredictor | None, storage: str) -> dict[str, Any]:
    """The parent run's params: the search configuration, the predictor card's id, versions, git commit."""
    import optuna
    import torch

    from wsnas._version import __version__

    out: dict[str, Any] = {k: (json.dumps(v) if isinstance(v, (list, dict)) else v) for k, v in config.items()}
    card = predictor.card if predictor is not None else None
    if card is not None:
        digest = hashlib.sha256(json.dumps(card, sort_keys=True, default=str).encode()).hexdigest()[:16]
        out["predictor_card_id"] = digest
    out.update(wsnas_version=__version__, torch_version=torch.__version__, optuna_version=optuna.__version__)
    out["storage"] = storage
    commit = _git_commit()
    if commit:
        out["git_commit"] = commit
    return out


def evaluation_of(t: FrozenTrial, objectives: Sequence[str]) -> TrackedEvaluation:
    """The child run of the finished real-evaluation trial ``t``."""
    from optuna.trial import TrialState

    ok = t.state == TrialState.COMPLETE
    metrics: dict[str, float] = {}
    for k, v in (t.user_attrs.get("measured") or {}).items():
        if isinstance(v, (int, float)) and not isinstance(v, bool):
            metrics[k] = float(v)
    if ok and t.values:
        for name, v in zip(objectives, t.values):
            metrics.setdefault(name, float(v))
    return TrackedEvaluation(
        trial=t.number, arch=str(t.user_attrs.get("arch")), arch_hash=str(t.user_attrs.get("arch_hash")),
        choices=dict(t.params), metrics=metrics, predicted=t.user_attrs.get("predicted"),
        uncertainty=t.user_attrs.get("uncertainty"),
        state="COMPLETE" if ok else "PRUNED" if t.user_attrs.get("outcome") == "pruned" else "FAIL",
        reason=t.user_attrs.get("fail_reason"), worker=t.user_attrs.get("worker"),
    )  # fmt: skip


def finished_evaluations(study: optuna.Study) -> list[FrozenTrial]:
    """Finished real-evaluation trials in evaluation order (completion time, then number)."""
    from wsnas._search._store import is_token, token_finished

    done = [t for t in study.get_trials(deepcopy=False) if is_token(t) and token_finished(t)]
    return sorted(done, key=lambda t: (t.datetime_complete, t.number))


def log_progress(tracker: SearchTracker, done: Sequence[FrozenTrial], objectives: Sequence[str]) -> None:
    """Step metrics on the parent after the ``len(done)``-th evaluation: best accuracy so far, and the
    Spearman of predicted against measured accuracy over the evaluations so far."""
    from optuna.trial import TrialState

    from wsnas.predictors import spearman

    if "accuracy" not in objectives:
        return
    i = list(objectives).index("accuracy")
    acc = [t.values[i] for t in done if t.state == TrialState.COMPLETE and t.values]
    metrics: dict[str, float] = {"evaluations": float(len(done))}
    if acc:
        metrics["best_accuracy"] = float(max(acc))
    pairs = [(t.user_attrs["predicted"], t.values[i]) for t in done
             if t.state == TrialState.COMPLETE and t.values and t.user_attrs.get("predicted") is not None]  # fmt: skip
    if len(pairs) >= 3:
        import numpy as np

        a = np.array(pairs, dtype=np.float64)
        rho = spearman(a[:, 0], a[:, 1])
        if math.isfinite(rho):
            metrics["predictor_spearman"] = rho
    tracker.log_step(len(done), metrics)


def log_artifacts(tracker: SearchTracker, result: SearchResult, folder: Path) -> list[Path]:
    """Write the search's pictures and tables to ``folder`` and log them on the parent run; the files.

    Nothing is done (``[]``) when the tracker's store got them already for as many evaluations as the
    search has now, and ``folder`` still holds them (a rerun of a finished search)."""
    logged = dict(result.study.user_attrs.get(LOGGED_KEY) or {})
    if not tracker.started and logged.get(tracker.tracking_uri) == len(result.history) and any(folder.glob("*")):
        return []
    files = _write_artifacts(result, folder)
    ok = all([tracker.log_artifact(f, "search") for f in files])
    if ok and files:
        result.study.set_user_attr(LOGGED_KEY, {**logged, tracker.tracking_uri: len(result.history)})
    return files


def _write_artifacts(result: SearchResult, folder: Path) -> list[Path]:
    """The pictures and tables of :func:`log_artifacts`, written to ``folder``."""
    from wsnas._search._plots import arch_plot, pareto_plot, progress_plot, scatter_plot, write_table

    folder.mkdir(parents=True, exist_ok=True)
    files: list[Path] = []
    done = [r for r in result.history if r.state == "COMPLETE"]
    objectives = list(result.objectives)
    if "accuracy" in objectives and done:
        files.append(progress_plot([r.values["accuracy"] for r in done], folder / "progress.png"))
        pairs = [(r.predicted, r.values["accuracy"]) for r in done if r.predicted is not None]
        if len(pairs) >= 2:
            scatter = folder / "predicted_vs_measured.png"
            files.append(scatter_plot([p for p, _ in pairs], [m for _, m in pairs], scatter))
    if len(objectives) >= 2 and done:
        front = {r.arch_hash for r in result.pareto}
        points = [dict(r.values) for r in done]
        files.append(pareto_plot(points, [r.arch_hash in front for r in done], objectives[1], objectives[0],
                                 folder / "pareto.png"))  # fmt: skip
    if result.best is not None and result._config is not None:
        arch = result._config.space.from_string(result.best.arch)
        files.append(arch_plot(arch, folder / "best_architecture.png", title=f"best: {result.best.arch}"))
    top = [{"rank": k + 1, "arch": r.arch, **r.values, "predicted": r.predicted, "params": r.params,
            "flops": r.flops, "trial": r.trial} for k, r in enumerate(result.top(10))]  # fmt: skip
    if top:
        files.append(write_table(top, folder / "top_k.csv"))
    card = result.predictor.card if result.predictor is not None else None
    if card is not None:
        path = folder / "predictor_card.json"
        path.write_text(json.dumps(card, indent=2, default=str), encoding="utf-8")
        files.append(path)
    screening = result.output_dir / f"{result.study_name}-screening.csv"
    if screening.is_file():
        files.append(screening)
    return files


def sync(study: optuna.Study, tracker: SearchTracker, storage: str = "") -> tuple[int, int]:
    """Log every finished evaluation of ``study`` that MLflow lacks (idempotent); ``(logged now, in all)``.

    Raises:
        wsnas.SearchConfigError: ``study`` was not made by ``wsnas search``.
        RuntimeError: MLflow cannot be reached.
    """
    from wsnas._errors import SearchConfigError
    from wsnas._search._store import CONFIG_KEY

    config = study.user_attrs.get(CONFIG_KEY)
    if config is None:
        raise SearchConfigError(f"study {study.study_name!r} was not made by wsnas search (no {CONFIG_KEY!r})")
    objectives = list(config.get("objectives") or ["accuracy"])
    if not tracker.start(search_config(config, None, storage), reopen=False):  # a finished search stays FINISHED
        raise RuntimeError(f"cannot reach the MLflow tracking store {tracker.tracking_uri}: {tracker.last_error}")
    have = tracker.logged_keys()
    if have is None:
        raise RuntimeError(f"cannot list the runs in {tracker.tracking_uri}")
    done = finished_evaluations(study)
    logged = 0
    for k, t in enumerate(done, start=1):
        if tracker.key(t.number) in have:
            continue
        if not tracker.log_evaluation(evaluation_of(t, objectives)):
            if tracker.last_rejected:
                raise RuntimeError(f"MLflow refused trial {t.number} ({tracker.tracking_uri}): {tracker.last_error}")
            raise RuntimeError(
                f"MLflow stopped answering at trial {t.number} ({tracker.tracking_uri}): {tracker.last_error}"
            )
        logged += 1
        log_progress(tracker, done[:k], objectives)
    return logged, len(done)


def _rest(base: str, path: str, body: dict[str, Any] | None = None, timeout: float = 10.0) -> dict[str, Any]:
    """One call of MLflow's REST API at ``base`` (POST with a JSON ``body``, else GET)."""
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(f"{base}/api/2.0/mlflow/{path}", data=data, method="GET" if data is None else "POST",
                                 headers={"Content-Type": "application/json"})  # fmt: skip
    with urllib.request.urlopen(req, timeout=timeout) as r:
        return json.loads(r.read() or b"{}")


def search_links(base: str, *, fix: bool = True, timeout: float = 10.0) -> tuple[str, str | None]:
    """``(runs link, parent run link)`` of the latest search (the running one, else the last to finish)
    in the MLflow server at ``base``; ``(base, None)`` when it holds no search.

    With ``fix``, an experiment that lacks the model-training kind or the runs view, or a parent run that
    lacks its description (made before they existed), gets them first. Raises ``OSError``/``ValueError``
    when the server does not answer properly."""
    exps = _rest(base, "experiments/search", {"max_results": 1000}, timeout).get("experiments", [])
    ids = [e["experiment_id"] for e in exps]
    runs = _rest(base, "runs/search", {"experiment_ids": ids, "filter": "tags.`wsnas.role` = 'search'",
                                       "max_results": 1000}, timeout).get("runs", []) if ids else []  # fmt: skip
    if not runs:
        return base, None

    def recency(run: dict[str, Any]) -> tuple[bool, int, int]:
        info = run["info"]
        return info.get("status") == "RUNNING", int(info.get("end_time") or 0), int(info.get("start_time") or 0)

    run = max(runs, key=recency)
    exp_id, run_id = run["info"]["experiment_id"], run["info"]["run_id"]
    tags = {t["key"]: t.get("value") for e in exps if e["experiment_id"] == exp_id for t in e.get("tags", [])}
    if fix:
        params = {p["key"]: p.get("value") for p in run.get("data", {}).get("params", [])}
        for key, value in experiment_tags(params.get("objectives")).items():
            if key not in tags:
                _rest(base, "experiments/set-experiment-tag", {"experiment_id": exp_id, "key": key, "value": value},
                      timeout)  # fmt: skip
                tags[key] = value
        run_tags = {t["key"]: t.get("value") for t in run.get("data", {}).get("tags", [])}
        if "mlflow.note.content" not in run_tags and params:
            note = search_description(run_tags.get("wsnas.study", run_id), params)
            _rest(base, "runs/set-tag", {"run_id": run_id, "key": "mlflow.note.content", "value": note}, timeout)
    parent = f"{base.rstrip('/')}/#/experiments/{exp_id}/runs/{run_id}?workflowType=machine_learning"
    return runs_link(base, exp_id, view=VIEW_TAG in tags), parent
