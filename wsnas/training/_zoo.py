"""Model zoos: JSON-lines files of really-trained architectures, appended crash-safely, resumable.

One line per trained network (see :class:`ZooRecord`). Appends write a whole line in one ``write`` and
``fsync`` it, so a crash can leave at most a torn last line; loading ignores that line with a warning and
the next append truncates it first. A record's key is ``(space, arch hash, seed, task fingerprint)``;
:func:`build_zoo` skips keys already in the file, so a killed build resumes where it stopped.
"""

from __future__ import annotations

import json
import math
import os
import warnings
from collections.abc import Iterator
from dataclasses import dataclass, fields
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from wsnas._errors import ZooFileError

if TYPE_CHECKING:
    from wsnas._arch import Arch
    from wsnas.search_spaces import SearchSpace
    from wsnas.training._tasks import Task
    from wsnas.training._train import TrainResult

__all__ = ["Zoo", "ZooRecord", "ZooFileError", "build_zoo", "sample_distinct"]

Key = tuple[str, str, int, str]


@dataclass(frozen=True)
class ZooRecord:
    """One trained architecture: what :class:`~wsnas.TrainResult` measured plus provenance.

    ``val_acc`` is a fraction in ``[0, 1]``; the ``*_curve`` fields have one value per epoch.
    """

    space: str
    arch: str
    arch_hash: str
    seed: int
    task: str
    task_fingerprint: str
    val_acc: float
    val_loss: float | None
    val_acc_curve: list[float]
    val_loss_curve: list[float]
    train_loss_curve: list[float]
    train_seconds: float
    params: int
    flops: int
    diverged: bool
    init: str
    wsnas_version: str
    timestamp: str
    cpu_seconds: float = math.nan

    @property
    def key(self) -> Key:
        """``(space, arch hash, seed, task fingerprint)``: what makes two records the same experiment."""
        return (self.space, self.arch_hash, self.seed, self.task_fingerprint)

    @classmethod
    def from_result(cls, result: TrainResult) -> ZooRecord:
        """The record of ``result``, stamped with the wsnas version and the current UTC time."""
        from wsnas._version import __version__

        doc = result.to_dict()
        doc.pop("extra", None)
        now = datetime.now(timezone.utc).isoformat(timespec="seconds")
        return cls(**doc, wsnas_version=__version__, timestamp=now)

    @classmethod
    def from_dict(cls, doc: dict[str, Any]) -> ZooRecord:
        names = {f.name for f in fields(cls)}
        missing = sorted(names - set(doc) - {"cpu_seconds"})  # older records lack cpu_seconds
        if missing:
            raise ValueError(f"a zoo record needs the fields {missing}")
        kept = {k: v for k, v in doc.items() if k in names}
        if kept.get("cpu_seconds") is None:
            kept.pop("cpu_seconds", None)
        for name, value in kept.items():
            _check_field(name, value)
        return cls(**kept)

    def to_json(self) -> str:
        doc = {f.name: getattr(self, f.name) for f in fields(self)}
        if not math.isfinite(doc["cpu_seconds"]):
            doc["cpu_seconds"] = None
        return json.dumps(doc, sort_keys=True, allow_nan=False)


_NUMBERS = ("val_acc", "train_seconds", "cpu_seconds")
_INTS = ("seed", "params", "flops")
_CURVES = ("val_acc_curve", "val_loss_curve", "train_loss_curve")


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _check_field(name: str, value: Any) -> None:
    """A record field has its type (a JSON number where a number belongs, ...), else a ``ValueError``."""
    ok = True
    if name in _NUMBERS:
        ok = _is_number(value)
    elif name == "val_loss":
        ok = value is None or _is_number(value)
    elif name in _INTS:
        ok = isinstance(value, int) and not isinstance(value, bool)
    elif name in _CURVES:
        ok = isinstance(value, list) and all(v is None or _is_number(v) for v in value)
    elif name == "diverged":
        ok = isinstance(value, bool)
    else:
        ok = isinstance(value, str)
    if not ok:
        raise ValueError(f"field {name!r} has the wrong type: {value!r}")


class Zoo:
    """A zoo file: read its records, append new ones crash-safely.

    Args:
        path: the JSON-lines file; created (with its folder) on the first append.
    """

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> list[ZooRecord]:
        """Every complete record of the file at ``path`` (``[]`` when it does not exist)."""
        return list(cls(path).records())

    def records(self) -> Iterator[ZooRecord]:
        """The file's records in file order; a torn last line is skipped with a warning.

        Raises:
            ZooFileError: a line other than the last is not a zoo record.
        """
        if not self.path.exists():
            return
        raw = self.path.read_bytes()
        lines = raw.split(b"\n")
        complete, tail = lines[:-1], lines[-1]  # ``tail`` is what follows the last newline
        out = []
        for lineno, line in enumerate(complete, start=1):
            if not line.strip():
                continue
            try:
                out.append(ZooRecord.from_dict(json.loads(line)))
            except (ValueError, TypeError) as exc:
                raise ZooFileError(f"{str(self.path)!r} line {lineno} is not a zoo record: {exc}") from None
        if tail.strip():
            warnings.warn(
                f"zoo {str(self.path)!r}: ignoring a torn last line ({len(tail)} bytes, no newline); "
                "the next append removes it",
                RuntimeWarning,
                stacklevel=2,
            )
        yield from out

    def keys(self) -> set[Key]:
        """Keys of the records already in the file."""
        return {r.key for r in self.records()}

    def append(self, record: ZooRecord | TrainResult) -> ZooRecord:
        """Append one record as one line: a single write, then flush and fsync.

        A torn last line left by a crash is truncated first. Returns the record written.
        """
        if not isinstance(record, ZooRecord):
            record = ZooRecord.from_result(record)
        line = (record.to_json() + "\n").encode()
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            _lock(fd)
            size = os.fstat(fd).st_size
            end = _complete_end(fd, size)
            if end < size:
                warnings.warn(
                    f"zoo {str(self.path)!r}: removing a torn last line ({size - end} bytes)",
                    RuntimeWarning,
                    stacklevel=2,
                )
                os.ftruncate(fd, end)
            os.lseek(fd, end, os.SEEK_SET)
            written = os.write(fd, line)
            while written < len(line):  # a regular file takes it in one write; be safe anyway
                written += os.write(fd, line[written:])
            os.fsync(fd)
        finally:
            os.close(fd)  # also releases the lock
        return record


def _lock(fd: int) -> None:
    """Exclusive advisory lock, so that two builders appending to one file do not interleave."""
    try:
        import fcntl
    except ImportError:  # pragma: no cover - not POSIX
        return
    fcntl.flock(fd, fcntl.LOCK_EX)


def _complete_end(fd: int, size: int, block: int = 1 << 16) -> int:
    """Offset just after the file's last newline (0 when it has none): where complete lines end."""
    pos = size
    while pos > 0:
        start = max(0, pos - block)
        chunk = os.pread(fd, pos - start, start)
        nl = chunk.rfind(b"\n")
        if nl >= 0:
            return start + nl + 1
        pos = start
    return 0


def sample_distinct(space: SearchSpace, n: int, seed: int) -> list[Arch]:
    """The first ``n`` distinct architectures (by canonical hash) that ``space.sample`` draws with ``seed``.

    The sequence depends only on ``seed``: asking for more extends the list, it never reorders it.
    """
    if space.size is not None and n > space.size:
        raise ValueError(f"cannot sample {n} distinct architectures from {space.name!r}, it has {space.size}")
    rng = np.random.default_rng(seed)
    seen: set[str] = set()
    out: list[Arch] = []
    draws = 0
    while len(out) < n:
        arch = space.sample(rng)
        draws += 1
        if arch.hash not in seen:
            seen.add(arch.hash)
            out.append(arch)
        elif draws > 100 * n + 1000:
            raise ValueError(f"{space.name!r} gave only {len(out)} distinct architectures in {draws} draws")
    return out


def build_zoo(
    space: SearchSpace,
    task: Task,
    n: int,
    seed: int,
    out: str | os.PathLike[str],
    *,
    train_seed: int | None = None,
    workers: int | None = None,
    progress: bool = True,
) -> list[ZooRecord]:
    """Train ``n`` distinct architectures sampled with ``seed`` on ``task`` and append them to ``out``.

    Every network is trained with ``train_seed`` (default: ``seed``) as its training seed, the seed its
    record carries; a second ``train_seed`` on the same sample measures the label noise. Architectures whose
    key is already in the file are skipped, so rerunning after a crash trains only what is missing (the
    sample sequence is the same). Records are appended as each training finishes; a tqdm bar with an ETA goes to stderr.
    An empty ``task.size`` is resolved to the space's ``proxy_size`` first (it is part of the fingerprint).

    Returns:
        The records of this build's ``n`` architectures (old and new), in sample order.
    """
    from tqdm import tqdm

    from wsnas.training._train import train_many

    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise ValueError(f"n must be an int >= 1, got {n!r}")
    tseed = seed if train_seed is None else train_seed
    if isinstance(tseed, bool) or not isinstance(tseed, int):
        raise ValueError(f"train_seed must be an int, got {train_seed!r}")
    if not task.size:
        task = task.with_recipe(size=dict(space.proxy_size))
    zoo = Zoo(out)
    fp = task.fingerprint
    archs = sample_distinct(space, n, seed)
    have = {r.key: r for r in zoo.records() if r.task_fingerprint == fp and r.seed == tseed}
    todo = [a for a in archs if (space.name, a.hash, tseed, fp) not in have]
    bar = tqdm(total=n, initial=n - len(todo), desc=f"zoo {space.name}/{task.name}", unit="arch", disable=not progress)
    try:
        for result in train_many(space, todo, task, seeds=tseed, workers=workers):
            record = zoo.append(result)
            have[record.key] = record
            bar.update(1)
            bar.set_postfix(acc=f"{record.val_acc:.3f}")
    finally:
        bar.close()
    return [have[(space.name, a.hash, tseed, fp)] for a in archs]
