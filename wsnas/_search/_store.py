"""The search's Optuna storage: opening it, the stored configuration, and who evaluates what.

Every real evaluation is one Optuna trial of the study, its *token*: created atomically (one
``create_new_trial`` with a template) in state WAITING, with user attributes ``arch_hash`` and
``slot`` (which of the ``eval_budget`` evaluations it is). A worker that wants to evaluate an
architecture in a slot:

1. creates its token, then reads every token that shares the architecture or the slot;
2. backs off if one of them is in use (RUNNING, COMPLETE, FAIL by an evaluator error, or pruned);
3. otherwise moves every WAITING one of them, its own last, to RUNNING with the storage's atomic
   ``set_trial_state_values(RUNNING)`` (a compare-and-set from WAITING in the RDB and journal
   storages). It wins when every move succeeds; the others' tokens it took end PRUNED.

Two workers cannot both win: each reads only after its own token is stored, so the later reader sees
the earlier token, and a token can be moved to RUNNING once. The winner's token is the trial that the
result is told to (COMPLETE, or FAIL with ``fail_reason``). While it evaluates, the winner raises its
token's ``beat`` attribute every few seconds; a RUNNING token whose beat stops for ``stale_after``
seconds (or whose worker process on this host is gone) is marked FAIL ``stale`` by any worker, which
frees its slot and architecture, so a killed worker loses nothing that was finished and blocks nothing.
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import threading
import time
import uuid
import warnings
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from wsnas._errors import SearchConfigError, StorageError
from wsnas._search._files import check_sqlite_file, repair_journal, require_file
from wsnas._search._optuna import storage_of, study_id_of, trial_id_of

if TYPE_CHECKING:
    import optuna
    from optuna.storages import BaseStorage
    from optuna.trial import FrozenTrial

__all__ = [
    "open_storage", "open_study", "quiet_optuna", "Coordinator", "CONFIG_KEY", "is_token", "token_used",
    "token_finished", "config_digest",
]  # fmt: skip

CONFIG_KEY = "wsnas:config"
_KIND = "wsnas"  # user attr "kind" of wsnas's trials: "eval" (real evaluation token) or "predicted"


def _safe_url(url: str) -> str:
    """``url`` without its password."""
    try:
        from sqlalchemy.engine import make_url

        return make_url(url).render_as_string(hide_password=True)
    except Exception:
        return url


def open_storage(url: str | None, output_dir: Path, *, must_exist: bool | str = False) -> tuple[BaseStorage, str]:
    """Open the storage at ``url`` (``None``: ``sqlite:///OUTPUT_DIR/search.db``) and check it answers.

    ``journal:PATH`` (or ``journal:///PATH``) opens Optuna's journal file storage at ``PATH``; anything
    else is an SQLAlchemy URL for Optuna's RDB storage (``sqlite:///...``, ``postgresql://...``). A
    journal's torn last line is dropped with a warning; an SQLite file that is empty or damaged is refused.
    ``must_exist``: a look-up of a study that should be there (a worker joining, a sync; a str names the
    study): a journal or SQLite file that does not exist is an error, and nothing is created.

    Raises:
        StorageError: the URL cannot be opened (the message names it, without its password, and why).
    """
    import optuna

    if url is None and must_exist:
        require_file(output_dir / "search.db", "search storage", _looked_for(must_exist))
    if url is None:
        output_dir.mkdir(parents=True, exist_ok=True)
        url = f"sqlite:///{(output_dir / 'search.db').resolve()}"
    if url.startswith("journal:"):
        path = url[len("journal:") :]
        path = path[2:] if path.startswith("///") else path
        if not path:
            raise StorageError(f"a journal storage URL is journal:PATH, got {url!r}")
        if must_exist:
            require_file(Path(path), "journal storage", _looked_for(must_exist))
        try:
            Path(path).parent.mkdir(parents=True, exist_ok=True)
            repair_journal(Path(path))
            backend = optuna.storages.journal.JournalFileBackend(path)
            return optuna.storages.JournalStorage(backend), url
        except OSError as exc:
            raise StorageError(f"cannot open journal storage {path!r}: {exc}") from None
        except ValueError as exc:  # JSONDecodeError, UnicodeDecodeError: not a journal, or damaged inside
            reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise StorageError(
                f"journal storage {path!r} is not a readable Optuna journal (damaged or another kind of file: "
                f"{type(exc).__name__}: {reason})"
            ) from None
    sqlite_file = _sqlite_path(url)
    if sqlite_file is not None:
        if must_exist:
            require_file(sqlite_file, "search storage", _looked_for(must_exist))
    kwargs: dict[str, Any] = {"pool_pre_ping": True}
    if url.startswith("sqlite"):
        kwargs["connect_args"] = {"timeout": 120}
    elif url.startswith("postgres"):
        kwargs["connect_args"] = {"connect_timeout": 10}
    try:
        storage = _rdb_storage(url, kwargs)
    except StorageError:
        raise
    except ImportError:
        raise StorageError(
            f"storage {_safe_url(url)!r} needs its database driver: pip install it "
            "(PostgreSQL: pip install 'psycopg[binary]')"
        ) from None
    except Exception as exc:  # sqlalchemy's ArgumentError, OperationalError, ...
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise StorageError(f"cannot open storage {_safe_url(url)!r}: {reason}") from None
    return storage, url


def _looked_for(must_exist: bool | str) -> str | None:
    return must_exist if isinstance(must_exist, str) else None


def _rdb_storage(url: str, engine_kwargs: dict[str, Any]) -> Any:
    """Optuna's RDB storage; on SQLite every transaction is ``BEGIN IMMEDIATE``.

    pysqlite defers ``BEGIN`` to the first write, so the read-check-write of Optuna's WAITING -> RUNNING
    compare-and-set would not be atomic between processes (two workers both "won" one trial in a test).
    Creating the tables of a new database races between workers that start together: retry.
    """
    import optuna
    import sqlalchemy

    for attempt in range(10):
        try:
            with quiet_optuna(), _creation_lock(url):
                sqlite_file = _sqlite_path(url)
                if sqlite_file is not None:  # under the lock: a file another worker is creating is complete
                    check_sqlite_file(sqlite_file)
                storage = optuna.storages.RDBStorage(url, engine_kwargs=engine_kwargs)
            break
        except sqlalchemy.exc.DBAPIError as exc:  # tables created by two workers at once
            if not any(m in str(exc) for m in _CREATION_RACES) or attempt == 9:
                raise
            time.sleep(0.2 * (attempt + 1))
    if url.startswith("sqlite"):
        engine = storage.engine

        @sqlalchemy.event.listens_for(engine, "connect")
        def _no_implicit_begin(dbapi_connection: Any, record: Any) -> None:
            dbapi_connection.isolation_level = None

        @sqlalchemy.event.listens_for(engine, "begin")
        def _begin_immediate(conn: Any) -> None:
            conn.exec_driver_sql("BEGIN IMMEDIATE")

        engine.dispose()  # connections made before the hooks existed
    return storage


# What a database says when another worker created the same tables or schema version row first.
_CREATION_RACES = ("already exists", "duplicate key", "UNIQUE constraint failed")


@contextlib.contextmanager
def _creation_lock(url: str) -> Iterator[None]:
    """Hold an exclusive lock on ``DB.lock`` beside a SQLite file while Optuna creates its tables.

    Optuna creates the tables, then inserts the alembic version row; two processes opening a new file
    at once can both pass the first step and collide on the second (``UNIQUE constraint failed:
    alembic_version.version_num``). Other databases (and systems without ``fcntl``) rely on the retry.
    """
    path = _sqlite_path(url)
    try:
        import fcntl
    except ImportError:  # Windows
        fcntl = None  # type: ignore[assignment]
    if path is None or fcntl is None:
        yield
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(f"{path}.lock", "a") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def _sqlite_path(url: str) -> Path | None:
    """The file of a ``sqlite:///PATH`` URL; ``None`` for other databases and in-memory SQLite."""
    if not url.startswith("sqlite"):
        return None
    try:
        from sqlalchemy.engine import make_url

        database = make_url(url).database
    except Exception:
        return None
    if not database or database == ":memory:" or database.startswith("file:"):
        return None
    return Path(database)


@contextlib.contextmanager
def quiet_optuna() -> Iterator[None]:
    """Optuna logs warnings only, inside (its INFO lines would drown the progress bar)."""
    import optuna

    level = optuna.logging.get_verbosity()
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    try:
        yield
    finally:
        optuna.logging.set_verbosity(level)


def open_study(
    storage: BaseStorage, name: str, directions: list[str], config: Mapping[str, Any] | None
) -> tuple[optuna.Study, dict[str, Any]]:
    """Create or load the study ``name``; store ``config`` in a new study, check it against an old one.

    With ``config=None`` (a joining worker) the study must exist. Returns the study and its stored
    configuration.

    Raises:
        SearchConfigError: no such study (worker), a study made by something else than wsnas, or one
            whose stored space or objectives differ from ``config``.
    """
    import optuna

    with quiet_optuna():
        if config is None:
            try:
                study = optuna.load_study(study_name=name, storage=storage)
            except KeyError:
                names = [s.study_name for s in optuna.get_all_study_summaries(storage)]
                raise SearchConfigError(f"no study named {name!r} in this storage; its studies: {names}") from None
        else:
            study = optuna.create_study(study_name=name, storage=storage, directions=directions, load_if_exists=True)
    stored = study.user_attrs.get(CONFIG_KEY)
    if stored is None:
        if config is None or study.trials:
            raise SearchConfigError(f"study {name!r} was not made by wsnas search (it has no {CONFIG_KEY!r})")
        study.set_user_attr(CONFIG_KEY, dict(config))
        objectives = config.get("objectives")
        if isinstance(objectives, (list, tuple)) and len(objectives) == len(directions):
            with warnings.catch_warnings():  # optuna marks set_metric_names experimental
                warnings.simplefilter("ignore")
                study.set_metric_names([str(o) for o in objectives])  # optuna-dashboard: "accuracy", not "0"
        return study, dict(config)
    if config is not None:
        for key in ("space", "objectives"):
            if stored.get(key) != config.get(key):
                raise SearchConfigError(
                    f"study {name!r} searches {key}={stored.get(key)!r}, this call asks for {config.get(key)!r}; "
                    "pass another study_name (--study-name) or output directory"
                )
        if stored.get("eval_budget") != config.get("eval_budget"):
            stored = {**stored, "eval_budget": config.get("eval_budget")}
            study.set_user_attr(CONFIG_KEY, stored)
    return study, dict(stored)


def is_token(t: FrozenTrial) -> bool:
    """Whether ``t`` is a real-evaluation token of wsnas."""
    return t.user_attrs.get("kind") == "eval"


def token_used(t: FrozenTrial) -> bool:
    """Whether ``t`` holds its slot and architecture: RUNNING, or finished (:func:`token_finished`)."""
    from optuna.trial import TrialState

    return t.state == TrialState.RUNNING or token_finished(t)


def token_finished(t: FrozenTrial) -> bool:
    """Whether ``t`` is a finished real evaluation (COMPLETE, FAIL by an evaluator error, or PRUNED by the
    search's pruner: outcome ``pruned``)."""
    from optuna.trial import TrialState

    return (
        t.state == TrialState.COMPLETE
        or (t.state == TrialState.FAIL and "fail_reason" in t.user_attrs)
        or (t.state == TrialState.PRUNED and t.user_attrs.get("outcome") == "pruned")
    )


@dataclass
class Coordinator:
    """One worker's side of the claim protocol (see the module docstring) on ``study``."""

    study: optuna.Study
    stale_after: float = 60.0
    worker: str = field(default_factory=lambda: f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}")
    _seen: dict[int, tuple[Any, float]] = field(default_factory=dict)

    @property
    def storage(self) -> BaseStorage:
        return storage_of(self.study)

    @property
    def study_id(self) -> int:
        return study_id_of(self.study)

    def trials(self) -> list[FrozenTrial]:
        return self.storage.get_all_trials(self.study_id, deepcopy=False)

    def tokens(self) -> list[FrozenTrial]:
        return [t for t in self.trials() if is_token(t)]

    # -- stale tokens ---------------------------------------------------------------------------------
    def _dead_here(self, t: FrozenTrial) -> bool:
        host, _, rest = str(t.user_attrs.get("worker", "")).partition(":")
        pid = rest.partition(":")[0]
        if host != socket.gethostname() or not pid.isdigit():
            return False
        if int(pid) == os.getpid():  # an earlier search of this process (one search runs at a time per process)
            return True
        try:
            os.kill(int(pid), 0)
        except ProcessLookupError:
            return True
        except OSError:
            return False
        return False

    def reap_stale(self, tokens: list[FrozenTrial]) -> int:
        """Mark FAIL ``stale`` the RUNNING tokens of dead workers (process gone, or no beat for ``stale_after`` s)."""
        from optuna.exceptions import UpdateFinishedTrialError
        from optuna.trial import TrialState

        now = time.monotonic()
        reaped = 0
        for t in tokens:
            if t.state != TrialState.RUNNING or t.user_attrs.get("worker") == self.worker:
                continue
            beat = (t.user_attrs.get("beat"), t.user_attrs.get("worker"))
            seen = self._seen.get(trial_id_of(t))
            if seen is None or seen[0] != beat:
                self._seen[trial_id_of(t)] = (beat, now)
                seen = (beat, now)
            if self._dead_here(t) or now - seen[1] > self.stale_after:
                with contextlib.suppress(UpdateFinishedTrialError, RuntimeError):
                    self.storage.set_trial_user_attr(trial_id_of(t), "outcome", "stale")
                    self.storage.set_trial_state_values(trial_id_of(t), TrialState.FAIL)
                    reaped += 1
        return reaped

    # -- claims ---------------------------------------------------------------------------------------
    def claim(
        self, arch_hash: str, slot: int, params: dict[str, Any], distributions: dict[str, Any], attrs: dict[str, Any]
    ) -> int | None:
        """Try to win ``slot`` for the architecture ``arch_hash``; the trial id of the won token, or ``None``."""
        from optuna.exceptions import UpdateFinishedTrialError
        from optuna.trial import FrozenTrial, TrialState

        user_attrs = {**attrs, "kind": "eval", "arch_hash": arch_hash, "slot": slot, "worker": self.worker, "beat": 0}
        template = FrozenTrial(
            number=-1,
            state=TrialState.WAITING,
            value=None,
            datetime_start=None,
            datetime_complete=None,
            params=params,
            distributions=distributions,
            user_attrs=user_attrs,
            system_attrs={},
            intermediate_values={},
            trial_id=-1,
        )
        own = self.storage.create_new_trial(self.study_id, template_trial=template)
        rivals = [
            t
            for t in self.tokens()
            if trial_id_of(t) != own
            and (t.user_attrs.get("arch_hash") == arch_hash or t.user_attrs.get("slot") == slot)
        ]
        taken: list[int] = []
        won = not any(token_used(t) for t in rivals)
        if won:
            for tid in sorted(trial_id_of(t) for t in rivals if t.state == TrialState.WAITING) + [own]:
                try:
                    ok = self.storage.set_trial_state_values(tid, TrialState.RUNNING)
                except UpdateFinishedTrialError:
                    ok = False
                if not ok:
                    won = False
                    break
                taken.append(tid)
        if won:
            self._finish(taken[:-1], "duplicate")
            return own
        if own not in taken:
            with contextlib.suppress(UpdateFinishedTrialError):
                if self.storage.set_trial_state_values(own, TrialState.RUNNING):
                    taken.append(own)
        self._finish(taken, "lost")
        return None

    def _finish(self, trial_ids: list[int], outcome: str) -> None:
        from optuna.exceptions import UpdateFinishedTrialError
        from optuna.trial import TrialState

        for tid in trial_ids:
            with contextlib.suppress(UpdateFinishedTrialError):
                self.storage.set_trial_user_attr(tid, "outcome", outcome)
                self.storage.set_trial_state_values(tid, TrialState.PRUNED)

    @contextlib.contextmanager
    def beating(self, trial_id: int, interval: float | None = None) -> Iterator[None]:
        """Raise the token's ``beat`` every ``interval`` seconds (default ``stale_after / 6``) inside."""
        interval = self.stale_after / 6 if interval is None else interval
        stop = threading.Event()

        def run() -> None:
            beat = 0
            while not stop.wait(interval):
                beat += 1
                with contextlib.suppress(Exception):  # a finished trial or a storage hiccup: the next beat retries
                    self.storage.set_trial_user_attr(trial_id, "beat", beat)

        thread = threading.Thread(target=run, name=f"wsnas-beat-{trial_id}", daemon=True)
        thread.start()
        try:
            yield
        finally:
            stop.set()
            thread.join()

    def tell(
        self, trial_id: int, values: list[float] | None, attrs: Mapping[str, Any], fail_reason: str | None
    ) -> None:
        """Store a real result on the won token: COMPLETE with ``values``, or FAIL with ``fail_reason``."""
        from optuna.trial import TrialState

        for key, value in attrs.items():
            self.storage.set_trial_user_attr(trial_id, key, value)
        if fail_reason is not None:
            self.storage.set_trial_user_attr(trial_id, "fail_reason", fail_reason)
            self.storage.set_trial_state_values(trial_id, TrialState.FAIL)
        else:
            self.storage.set_trial_state_values(trial_id, TrialState.COMPLETE, values=values)

    def release_mine(self, outcome: str) -> None:
        """:meth:`release` every token of this worker that is still waiting or running."""
        from optuna.trial import TrialState

        for t in self.tokens():
            if t.user_attrs.get("worker") == self.worker and t.state in (TrialState.RUNNING, TrialState.WAITING):
                self.release(trial_id_of(t), outcome)

    def release(self, trial_id: int, outcome: str) -> None:
        """Give a won token back unfinished (FAIL with ``outcome``, e.g. ``interrupted``): its slot is free again."""
        from optuna.exceptions import UpdateFinishedTrialError
        from optuna.trial import TrialState

        with contextlib.suppress(UpdateFinishedTrialError):
            self.storage.set_trial_user_attr(trial_id, "outcome", outcome)
            self.storage.set_trial_state_values(trial_id, TrialState.FAIL)


def config_digest(config: Mapping[str, Any]) -> str:
    """A short digest of the parts of ``config`` that make a search what it is (not its budget)."""
    import hashlib

    keys = ("space", "evaluator", "objectives", "sampler", "seed", "max_params", "predictor")
    doc = {k: config.get(k) for k in keys}
    if config.get("pruner") not in (None, "none"):  # only then: the digests of searches without one stay as they were
        doc["pruner"] = config["pruner"]
    return hashlib.sha256(json.dumps(doc, sort_keys=True, default=str).encode()).hexdigest()[:8]
