"""The storage files of a search, checked before Optuna opens them: a journal whose last line was torn by
a crash is repaired (the torn tail dropped, with a warning), and an SQLite file that is empty, not a
database or damaged is refused with a clear error instead of a fresh study or a driver's message.
"""

from __future__ import annotations

import os
import sqlite3
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

from wsnas._errors import StorageError

__all__ = ["repair_journal", "check_sqlite_file", "require_file", "with_store_lock"]

T = TypeVar("T")

_SQLITE_HEADER = b"SQLite format 3\x00"


def require_file(path: Path, what: str, study: str | None = None) -> None:
    """``path`` exists as a file, else a :class:`StorageError` (a look-up creates nothing); ``study``: the
    study looked for, named first in the message."""
    if not path.exists():
        lead = f"no study named {study!r}: its {what}" if study else f"the {what}"
        raise StorageError(f"{lead} {str(path)!r} does not exist (nothing was created)")
    if not path.is_file():
        raise StorageError(f"{what} {str(path)!r} is not a file")


def repair_journal(path: Path) -> None:
    """Drop a torn last line (bytes after the last newline: a write cut short by a crash) from the journal
    at ``path``, under the journal's own write lock, with a warning. Optuna would otherwise glue the next
    record onto the torn one and the study could no longer be read."""
    try:
        size = path.stat().st_size
    except FileNotFoundError:
        return
    if size == 0 or _last_byte(path) == b"\n":
        return
    import optuna

    lock = optuna.storages.journal.JournalFileSymlinkLock(str(path))
    while not lock.acquire():  # acquire() waits; it returns False only when interrupted by a timeout
        pass
    try:
        data = path.read_bytes()
        if data.endswith(b"\n"):
            return
        keep = data.rfind(b"\n") + 1
        with open(path, "r+b") as f:
            f.truncate(keep)
            f.flush()
            os.fsync(f.fileno())
    finally:
        lock.release()
    warnings.warn(
        f"journal {str(path)!r}: ignored a torn last line ({len(data) - keep} bytes without a newline, left by "
        "a crash); the records before it are intact",
        RuntimeWarning,
        stacklevel=3,
    )


def _last_byte(path: Path) -> bytes:
    with open(path, "rb") as f:
        f.seek(-1, os.SEEK_END)
        return f.read(1)


def check_sqlite_file(path: Path) -> None:
    """An existing SQLite file at ``path`` is a sound database: not empty (an empty file is not a fresh
    database: the study it held is gone), starting with SQLite's header, passing ``PRAGMA quick_check``."""
    if not path.exists():
        return
    where = repr(str(path))
    with open(path, "rb") as f:
        head = f.read(len(_SQLITE_HEADER))
    if not head:
        raise StorageError(
            f"storage {where} is an empty file, not a database: the study it held is lost or it was never "
            "written; remove the file to start a new search, or pass the right --storage"
        )
    if head != _SQLITE_HEADER:
        raise StorageError(f"storage {where} is not an SQLite database (its first bytes are {head[:8]!r})")
    try:
        con = sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True, timeout=120)
        try:
            rows = con.execute("PRAGMA quick_check").fetchall()
        finally:
            con.close()
    except sqlite3.DatabaseError as exc:
        rows = [(str(exc),)]
    problems = [str(r[0]) for r in rows if str(r[0]) != "ok"]
    if problems:
        raise StorageError(
            f"storage {where} is damaged (SQLite's integrity check: {problems[0]}); restore it from a copy, "
            "or remove it to start over"
        )



def with_store_lock(uri: str, fn: Callable[[], T]) -> T:
    """``fn()`` holding an exclusive lock on a local SQLite store (``DB.lock`` beside it): a search and its
    workers starting at once would otherwise race to create the store's tables, the experiment and the
    search's parent run. Other stores (a server, a folder) and systems without ``fcntl`` need no lock."""
    rest = uri[len("sqlite:///") :] if uri.startswith("sqlite:///") else ""
    if not rest or rest.startswith(":memory:"):
        return fn()
    try:
        import fcntl
    except ImportError:  # pragma: no cover - Windows
        return fn()
    lock = Path(rest.split("?", 1)[0] + ".lock")
    lock.parent.mkdir(parents=True, exist_ok=True)
    with open(lock, "a") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            return fn()
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)
