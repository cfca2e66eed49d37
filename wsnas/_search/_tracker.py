"""MLflow tracking of searches: one experiment per study, a parent run per search, a child run per evaluation.

>>> tracker = SearchTracker("sqlite:///runs/mlflow.db", study="nb201-demo")
>>> tracker.start({"space": "nb201", "seed": 0, ...})
>>> tracker.log_evaluation(TrackedEvaluation(trial=3, arch="|...|", arch_hash="ab12...", ...))
>>> tracker.log_step(1, {"best_accuracy": 0.71})
>>> tracker.finish()

Layout (what the MLflow UI shows):

* experiment ``study``, of MLflow 3's model-training kind (``mlflow.experimentKind``), with a saved view of its runs
  table (:data:`VIEW_KEY`: the evaluations, sorted by accuracy, with accuracy, predicted, params and FLOPs as
  columns; :func:`runs_link` opens it);
* parent run tagged ``wsnas.role=search`` and ``wsnas.study=STUDY``, described in words (what MLflow shows as its
  description: space, evaluator, objectives, budget, predictor), holding the configuration as params, best-so-far
  and predictor-vs-real correlation as step metrics, and the artifacts (plots, top-k table, predictor card,
  screening tables);
* one child run per real evaluation (``mlflow.parentRunId`` = the parent), tagged ``wsnas.key`` = ``STUDY/TRIAL``
  (the idempotency key), ``wsnas.arch_hash``, ``wsnas.trial``, ``wsnas.worker``; params ``arch`` and one
  ``choice.NAME`` per architecture choice; metrics ``predicted``, ``uncertainty`` and the measured ones.

Reliability: every call goes to MLflow with MLflow's own HTTP retries turned down (one try of at most ``timeout``
seconds) and ``retries`` retries of ours. When they are exhausted the tracker warns once, stops trying for
``cooldown`` seconds, and reports ``False``; the search goes on, and since its results are in the Optuna storage,
:func:`wsnas.track_sync` (``wsnas track sync``) logs whatever is missing later. A child run is looked up by its key
before it is created, so retries and syncs never duplicate one.

Cost: with ``lazy=True`` (a search's tracker) :meth:`SearchTracker.start` only keeps the configuration; MLflow is
imported and its store opened (1.5 s of CPU, plus 2 s to create a new SQLite store) when the first thing is logged,
so a search that logs nothing (a rerun of a finished one) never pays for it.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import re
import time
import warnings
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from wsnas._search._files import with_store_lock

__all__ = ["SearchTracker", "TrackedEvaluation", "TrackingWarning", "default_tracking_uri", "mlflow_param_names",
           "runs_view", "runs_link", "experiment_tags", "search_description", "VIEW_KEY", "VIEW_TAG", "KIND",
           "MODEL_TRAINING", "COLUMNS"]  # fmt: skip

T = TypeVar("T")
_ROLE, _STUDY, _KEY = "wsnas.role", "wsnas.study", "wsnas.key"
_PARENT = "mlflow.parentRunId"
_DONE = "wsnas.logged"  # set last: a child run without it was cut short
_NOTE = "mlflow.note.content"  # a run's or experiment's description in MLflow's UI (markdown)
#: MLflow 3's experiment kind tag, and its value for model training ("Machine learning", not "GenAI apps")
KIND, MODEL_TRAINING = "mlflow.experimentKind", "custom_model_development"
#: the saved runs-table view of a search's experiment: experiment tag ``mlflow.sharedViewState.VIEW_KEY``,
#: opened by the UI's ``?viewStateShareKey=VIEW_KEY`` (MLflow 3.x's shared views)
VIEW_KEY = "wsnas-evaluations"
VIEW_TAG = f"mlflow.sharedViewState.{VIEW_KEY}"
#: the metric columns of the view, before any other objective of the search
COLUMNS = ("accuracy", "predicted", "params", "flops")


class TrackingWarning(UserWarning):
    """MLflow could not be reached; the search goes on and ``wsnas track sync`` can fill the gap."""


@dataclass(frozen=True)
class TrackedEvaluation:
    """One real evaluation as MLflow sees it (a child run).

    Attributes:
        trial: the Optuna trial number (with the study name, the idempotency key).
        arch: the architecture string; ``arch_hash`` its canonical hash.
        choices: the architecture's choices (``{"edge_1_0": "nor_conv_3x3", ...}``), logged as params.
        metrics: measured values (``accuracy``, ``params``, ``flops``, ``latency_ms``, ...); non-finite
            values are left out (MLflow rejects them).
        predicted, uncertainty: the predictor's score at screening time, if any.
        state: ``"COMPLETE"``, ``"FAIL"`` or ``"PRUNED"`` (the run ends ``KILLED``); ``reason`` says why a trial failed.
        worker: who evaluated it (host:pid).
    """

    trial: int
    arch: str
    arch_hash: str
    choices: Mapping[str, Any] = field(default_factory=dict)
    metrics: Mapping[str, float] = field(default_factory=dict)
    predicted: float | None = None
    uncertainty: float | None = None
    state: str = "COMPLETE"
    reason: str | None = None
    worker: str | None = None


def default_tracking_uri(run_dir: str | os.PathLike[str]) -> str:
    """``$MLFLOW_TRACKING_URI`` if set, else a SQLite store in ``run_dir`` (``sqlite:///RUN_DIR/mlflow.db``)."""
    env = os.environ.get("MLFLOW_TRACKING_URI")
    if env:
        return env
    return f"sqlite:///{Path(run_dir).resolve() / 'mlflow.db'}"


@contextlib.contextmanager
def _quick_http(timeout: float) -> Iterator[None]:
    """MLflow's HTTP client with one try of at most ``timeout`` s (its defaults retry for minutes)."""
    keys = {"MLFLOW_HTTP_REQUEST_MAX_RETRIES": "0", "MLFLOW_HTTP_REQUEST_TIMEOUT": str(max(1, math.ceil(timeout)))}
    saved = {k: os.environ.get(k) for k in keys}
    os.environ.update(keys)
    try:
        yield
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def _finite(metrics: Mapping[str, Any]) -> dict[str, float]:
    out = {}
    for k, v in metrics.items():
        if isinstance(v, bool) or not isinstance(v, (int, float)):
            continue
        if math.isfinite(float(v)):
            out[k] = float(v)
    return out


def mlflow_param_names(names: Iterable[str]) -> dict[str, str]:
    """``{name: MLflow-safe name}``: MLflow takes only alphanumerics, ``_ - . /`` and spaces in a key, so
    ``edge(in,b)`` becomes ``edge_in_b_``; names that would collide get ``_2``, ``_3``, ... appended."""
    out: dict[str, str] = {}
    used: set[str] = set()
    for name in names:
        safe = re.sub(r"[^A-Za-z0-9_\-. /]", "_", str(name)) or "_"
        candidate, n = safe, 1
        while candidate in used:
            n += 1
            candidate = f"{safe}_{n}"
        used.add(candidate)
        out[name] = candidate
    return out


def _rejected(exc: BaseException) -> bool:
    """Whether MLflow answered and refused the call (a 4xx: bad input), as opposed to not answering."""
    try:
        from mlflow.exceptions import MlflowException
    except ImportError:  # pragma: no cover - mlflow is a dependency
        return False
    if not isinstance(exc, MlflowException):
        return False
    try:
        return 400 <= int(exc.get_http_status_code()) < 500
    except (TypeError, ValueError):
        return False


def _param(v: Any) -> str:
    text = str(v)
    return text if len(text) <= 6000 else text[:5997] + "..."


def runs_view(metrics: Iterable[str] = COLUMNS) -> str:
    """The experiment tag value that saves the runs-table view :data:`VIEW_KEY` (MLflow 3's saved view: an
    envelope ``{name, createdAt, updatedAt, state}``, ``state`` the JSON of the search facets and table
    state): the child runs (the parent filtered out, so they are not folded under it), best accuracy
    first, ``metrics`` and the ``arch`` param as columns (MLflow shows no metric column unless selected)."""
    columns = [f"metrics.`{m}`" for m in dict.fromkeys(metrics)] + ["params.`arch`"]
    state = {
        "searchFilter": "tags.`wsnas.trial` LIKE '%'",
        "orderByKey": "metrics.`accuracy`",
        "orderByAsc": False,
        "selectedColumns": columns,
        "columnOrder": columns,  # in this order (the table sorts them by name otherwise), the arch readable
        "columnWidths": {"params.`arch`": 560},
        "runsHiddenMode": "SHOW_ALL",
    }
    now = int(time.time() * 1000)
    return json.dumps({"name": "wsnas: evaluations", "createdAt": now, "updatedAt": now, "state": json.dumps(state)})


def runs_link(ui: str, experiment_id: str, *, view: bool = True) -> str:
    """The MLflow UI (at ``ui``, ``http://host:port``) link to the runs table of ``experiment_id`` in its
    model-training mode, opening the saved view :data:`VIEW_KEY` (``view=False``: the plain table)."""
    query = f"viewStateShareKey={VIEW_KEY}&workflowType=machine_learning" if view else "workflowType=machine_learning"
    return f"{ui.rstrip('/')}/#/experiments/{experiment_id}/runs?{query}"


def experiment_tags(objectives: Any = ()) -> dict[str, str]:
    """The experiment tags that make MLflow's UI open a search's experiment as model training, with its
    runs view (``objectives``: the search's, a list or its JSON; those beyond :data:`COLUMNS` are columns too)."""
    names = _listed(objectives)
    return {KIND: MODEL_TRAINING, VIEW_TAG: runs_view([*COLUMNS, *(o for o in names if o not in COLUMNS)])}


def _decoded(value: Any) -> Any:
    """A config value as the parent run's params hold it: JSON lists and dicts decoded."""
    with contextlib.suppress(ValueError):
        return json.loads(value) if isinstance(value, str) and value[:1] in "[{" else value
    return value


def _listed(value: Any) -> list[str]:
    value = _decoded(value)
    return [str(v) for v in value] if isinstance(value, (list, tuple)) else [] if value is None else [str(value)]


def _short(value: Any, limit: int = 160) -> str:
    text = value if isinstance(value, str) else json.dumps(value, default=str)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _evaluator_words(value: Any) -> str:
    """A stored training task (a dict) by its name and recipe; anything else (``table:...``) as it is."""
    doc = _decoded(value)
    if not (isinstance(doc, dict) and doc.get("kind") == "train"):
        return f"`{_short(value)}`"
    recipe = doc.get("recipe") if isinstance(doc.get("recipe"), dict) else {}
    knobs = ", ".join(f"{k} {v}" for k, v in recipe.items() if not isinstance(v, (dict, list)))
    return f"training on `{doc.get('task', '?')}`" + (f" ({_short(knobs, 120)})" if knobs else "")


def search_description(study: str, config: Mapping[str, Any]) -> str:
    """What the search ``study`` is, in words (markdown), from its configuration (the parent run's params):
    the space, the evaluator, the objectives, the budget, the predictor and the sampler."""
    get = config.get
    objectives = _listed(get("objectives")) or ["accuracy"]
    budget = int(get("eval_budget") or 0)
    predictor = get("predictor")
    head = f"wsnas search `{study}` of space **{get('space', '?')}**"
    if budget > 0:
        head += f": {budget} real evaluations by {_evaluator_words(get('evaluator'))}"
    else:
        head += ": training-free (the predictor's scores only, no real evaluation)"
    lines = [head + ".", "", f"- objectives: {', '.join(objectives)}"]
    if predictor in (None, "None", "none"):
        lines.append("- predictor: none (plain Optuna, no screening)")
    else:
        screened = f"; {get('n_candidates')} candidates screened" if get("n_candidates") is not None else ""
        lines.append(f"- predictor: `{_short(predictor)}`{screened}")
    lines.append(f"- sampler: {get('sampler', '?')}, seed {get('seed', '?')}")
    if get("max_params") not in (None, "None"):
        lines.append(f"- at most {get('max_params')} parameters")
    if get("pruner") not in (None, "None", "none"):
        lines.append(f"- pruner: {get('pruner')}")
    lines += ["", "One child run per evaluation (metrics accuracy, predicted, params, flops; params arch and "
              "choice.*). This run: best_accuracy and predictor_spearman by step; plots and tables under the "
              "artifacts' search/ folder."]  # fmt: skip
    return "\n".join(lines)


class SearchTracker:
    """Logs one search (the study ``study``) to the MLflow store at ``tracking_uri``; never raises.

    Args:
        tracking_uri: an MLflow tracking URI (``http://...``, ``sqlite:///...``, a folder).
        study: the study name: the experiment's name and the key prefix of child runs.
        retries: retries of a failed call (after the first try).
        timeout: seconds one HTTP request may take.
        cooldown: seconds to stop calling MLflow after a call failed for good.
        lazy: :meth:`start` keeps the configuration and returns ``True``; MLflow is first called (and
            imported) by the first thing logged. ``False``: :meth:`start` calls it at once and says whether
            it answered.
    """

    def __init__(
        self, tracking_uri: str, study: str, *, retries: int = 2, timeout: float = 5.0, cooldown: float = 30.0,
        lazy: bool = False,
    ) -> None:  # fmt: skip
        self.tracking_uri = tracking_uri
        self.study = study
        self.retries, self.timeout, self.cooldown = retries, timeout, cooldown
        self.lazy = lazy
        self._pending: tuple[dict[str, Any], str | None, bool] = ({}, None, True)  # start()'s arguments
        self.parent_id: str | None = None
        self.experiment_id: str | None = None
        self.failures = 0
        self._down_until = 0.0
        self._warned = False
        self._client: Any = None
        self.last_error: str | None = None  # the last failed call's exception, "Type: message"
        self.last_rejected = False  # whether MLflow refused it (a 4xx) rather than not answering

    # -- plumbing ----------------------------------------------------------------------------------------
    @property
    def client(self) -> Any:
        if self._client is None:
            # MLflow 3 reports usage over the network (a thread at import, a record per call): off unless asked
            os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
            from mlflow.tracking import MlflowClient

            self._client = MlflowClient(tracking_uri=self.tracking_uri)
        return self._client

    @property
    def started(self) -> bool:
        """Whether MLflow holds the parent run (it was found or created by this tracker)."""
        return self.parent_id is not None

    @property
    def available(self) -> bool:
        """Whether calls are being made (``False`` during the cooldown after a failure)."""
        return time.monotonic() >= self._down_until

    def _call(self, what: str, fn: Callable[[], T]) -> T | None:
        if not self.available:
            return None
        delay = 0.2
        for attempt in range(self.retries + 1):
            try:
                with _quick_http(self.timeout):
                    return fn()
            except Exception as exc:  # any MLflow/HTTP/DB error: the search must go on
                last = exc
                if _rejected(exc):  # asked again, MLflow would refuse again
                    break
                if attempt < self.retries:
                    time.sleep(delay)
                    delay *= 2
        self.failures += 1
        self.last_error, self.last_rejected = f"{type(last).__name__}: {last}", _rejected(last)
        if not self.last_rejected:  # MLflow is down: leave it alone for a while
            self._down_until = time.monotonic() + self.cooldown
        if not self._warned:
            self._warned = True
            warnings.warn(
                f"MLflow tracking at {self.tracking_uri} failed ({what}: {type(last).__name__}: {last}); the search "
                "goes on, its results stay in the Optuna storage: run `wsnas track sync` to log what is missing",
                TrackingWarning,
                stacklevel=3,
            )
        return None

    # -- the parent run ----------------------------------------------------------------------------------
    def start(self, config: Mapping[str, Any], *, run_name: str | None = None, reopen: bool = True) -> bool:
        """Find or create the experiment and the search's parent run, and log ``config`` as its params
        (a lazy tracker only keeps them for the first thing logged, and returns ``True``).

        ``reopen``: set a finished parent run back to RUNNING (a search that resumes); ``wsnas track sync``
        passes ``False``, so a finished search's parent stays FINISHED, its end time kept. The parent's
        description (:func:`search_description`) is written from ``config`` where it is missing or differs;
        a new experiment gets the model-training kind, the runs view (:func:`runs_view`) and that
        description, an older one whatever of these it lacks."""
        self._pending = (dict(config), run_name, reopen)
        if self.lazy and self.parent_id is None:
            return True
        return self._start(*self._pending)

    def _start(self, config: dict[str, Any], run_name: str | None, reopen: bool) -> bool:
        note = search_description(self.study, config) if config else None
        wanted = {**experiment_tags(config.get("objectives")), _STUDY: self.study, **({_NOTE: note} if note else {})}

        def go() -> str:
            from mlflow.entities import Param, RunTag

            c = self.client
            exp = c.get_experiment_by_name(self.study)
            if exp is None:
                # a SQLite store's artifacts go beside the database, not to MLflow's default ./mlruns of the cwd
                db = self.tracking_uri[len("sqlite:///") :] if self.tracking_uri.startswith("sqlite:///") else ""
                where = (Path(db).resolve().parent / "mlartifacts").as_uri() if db not in ("", ":memory:") else None
                self.experiment_id = c.create_experiment(self.study, artifact_location=where, tags=wanted)
            else:
                self.experiment_id = exp.experiment_id
                for k, v in wanted.items():  # an experiment made before these tags existed
                    if k not in exp.tags:
                        c.set_experiment_tag(self.experiment_id, k, v)
            found = c.search_runs(
                [self.experiment_id], f"tags.`{_ROLE}` = 'search' and tags.`{_STUDY}` = '{_quote(self.study)}'"
            )
            if found:
                run = found[0]
                run_id = run.info.run_id
                if reopen and run.info.status != "RUNNING":
                    c.update_run(run_id, status="RUNNING")
            else:
                tags = {_ROLE: "search", _STUDY: self.study, **({_NOTE: note} if note else {})}
                run = c.create_run(self.experiment_id, tags=tags, run_name=run_name or self.study)
                run_id = run.info.run_id
            params = [Param(k, _param(v)) for k, v in config.items() if k not in run.data.params]
            tags = [RunTag(_NOTE, note)] if note and run.data.tags.get(_NOTE) != note else []
            if params or tags:
                c.log_batch(run_id, params=params, tags=tags)
            return run_id

        self.parent_id = self._call("start", lambda: with_store_lock(self.tracking_uri, go))
        return self.parent_id is not None

    def _parent(self) -> str | None:
        if self.parent_id is None and not self._start(*self._pending):
            return None
        return self.parent_id

    def log_step(self, step: int, metrics: Mapping[str, Any]) -> bool:
        """Step metrics on the parent run (best so far, predictor-vs-real correlation, ...)."""
        values = _finite(metrics)
        parent = self._parent()
        if parent is None or not values:
            return parent is not None

        def go() -> bool:
            from mlflow.entities import Metric

            now = int(time.time() * 1000)
            self.client.log_batch(parent, metrics=[Metric(k, v, now, int(step)) for k, v in values.items()])
            return True

        return bool(self._call("log_step", go))

    def log_artifact(self, path: str | os.PathLike[str], artifact_path: str | None = None) -> bool:
        """A file (plot, CSV, card) on the parent run."""
        parent = self._parent()
        if parent is None:
            return False
        return bool(self._call("log_artifact", lambda: self.client.log_artifact(parent, str(path), artifact_path) or 1))

    def finish(self, status: str = "FINISHED") -> bool:
        """Mark the parent run ``FINISHED`` (or ``FAILED``/``KILLED``)."""
        if self.parent_id is None:
            return False
        parent = self.parent_id
        return bool(self._call("finish", lambda: self.client.set_terminated(parent, status) or 1))

    # -- child runs --------------------------------------------------------------------------------------
    def key(self, trial: int) -> str:
        return f"{self.study}/{int(trial)}"

    def logged_keys(self) -> set[str] | None:
        """Keys of the child runs already in MLflow (``None`` when MLflow cannot be reached)."""
        parent = self._parent()
        if parent is None:
            return None

        def go() -> set[str]:
            keys: set[str] = set()
            token = None
            while True:
                page = self.client.search_runs(
                    [self.experiment_id], f"tags.`{_PARENT}` = '{parent}'", max_results=1000, page_token=token
                )
                keys.update(r.data.tags.get(_KEY, "") for r in page if r.data.tags.get(_DONE) == "1")
                token = page.token
                if not token:
                    return keys

        return self._call("list", go)

    def log_evaluation(self, ev: TrackedEvaluation) -> bool:
        """One child run for ``ev`` unless a run with its key exists; ``True`` when MLflow holds it."""
        parent = self._parent()
        if parent is None:
            return False
        key = self.key(ev.trial)

        def go() -> bool:
            from mlflow.entities import Metric, Param, RunTag

            c = self.client
            found = c.search_runs([self.experiment_id], f"tags.`{_KEY}` = '{_quote(key)}'")
            if any(r.data.tags.get(_DONE) == "1" for r in found):
                return True
            for r in found:  # a run left half-written by a failed call: replace it
                c.delete_run(r.info.run_id)
            tags = {_PARENT: parent, _KEY: key, _STUDY: self.study, "wsnas.arch_hash": ev.arch_hash,
                    "wsnas.trial": str(ev.trial), "wsnas.state": ev.state}  # fmt: skip
            if ev.worker:
                tags["wsnas.worker"] = ev.worker
            if ev.reason:
                tags["wsnas.fail_reason"] = ev.reason[:5000]
            now = int(time.time() * 1000)
            params = [Param("arch", _param(ev.arch))]
            names = mlflow_param_names(f"choice.{k}" for k in ev.choices)
            params += [Param(names[f"choice.{k}"], _param(v)) for k, v in ev.choices.items()]
            renamed = {safe: name for name, safe in names.items() if safe != name}
            if renamed:  # the space's own names, for the params MLflow would not take as they are
                tags["wsnas.choice_names"] = json.dumps(renamed, sort_keys=True)
            run = c.create_run(self.experiment_id, tags=tags, run_name=f"trial-{ev.trial}")
            metrics = dict(ev.metrics)
            if ev.predicted is not None:
                metrics["predicted"] = ev.predicted
            if ev.uncertainty is not None:
                metrics["uncertainty"] = ev.uncertainty
            values = [Metric(k, v, now, 0) for k, v in _finite(metrics).items()]
            c.log_batch(run.info.run_id, metrics=values, params=params, tags=[RunTag(_DONE, "1")])
            c.set_terminated(run.info.run_id, {"COMPLETE": "FINISHED", "PRUNED": "KILLED"}.get(ev.state, "FAILED"))
            return True

        return bool(self._call("log_evaluation", go))


def _quote(text: str) -> str:
    return text.replace("'", "\\'")
