"""Evaluators: what turns an architecture into really-measured metrics during a search.

* :class:`TrainEvaluator` trains the network on a :class:`~wsnas.Task` (``wsnas.train``);
* :class:`TableEvaluator` looks architectures up in a CSV of measured results that a user brings;
* any callable ``Arch -> float | dict`` (a float is the ``accuracy``; a dict maps metric names to numbers).

Every evaluator returns a dict of finite floats with at least ``accuracy`` (higher is better). A failure
is an exception; the search records it as a FAIL trial with the reason and goes on.
"""

from __future__ import annotations

import csv
import math
import os
import warnings
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from wsnas._arch import Arch
from wsnas._errors import EvaluatorError, InvalidArchitecture

if TYPE_CHECKING:
    from wsnas.search_spaces import SearchSpace
    from wsnas.training import Task

__all__ = ["TrainEvaluator", "TableEvaluator", "CallableEvaluator", "as_evaluator", "evaluator_from_spec"]


@dataclass(frozen=True)
class TrainEvaluator:
    """Really train each architecture on ``task`` (see :func:`wsnas.train`) and report its validation accuracy.

    Args:
        task: a :class:`~wsnas.Task`, or the name of a built-in task (``digits``, ``synthetic``).
        seed: the training seed (initial weights and data order) of every architecture.
        space: the search space; ``None``: the space the search runs on.

    Returns per architecture: ``accuracy`` (validation accuracy, a fraction), ``val_loss``, ``params`` and
    ``flops`` of the trained network, ``train_seconds``, ``cpu_seconds`` and ``diverged`` (0 or 1).
    """

    task: Task | str
    seed: int = 0
    space: SearchSpace | None = field(default=None, compare=False)

    def __post_init__(self) -> None:
        if isinstance(self.task, str):
            from wsnas.training import get_task

            object.__setattr__(self, "_spec", f"train:{self.task}")
            object.__setattr__(self, "task", get_task(self.task))

    @property
    def spec(self) -> str | None:
        """``train:TASK`` when the task is a built-in one given by name (workers rebuild it), else ``None``."""
        return getattr(self, "_spec", None)

    def for_space(self, space: SearchSpace) -> TrainEvaluator:
        """This evaluator bound to ``space`` (a copy)."""
        out = replace(self, space=space, task=self.task)
        if self.spec is not None:
            object.__setattr__(out, "_spec", self.spec)
        return out

    def build_size(self, space: SearchSpace) -> tuple[dict[str, Any], tuple[int, ...]]:
        """The ``space.build`` keywords and input shape of the trained networks."""
        task = self.task
        assert not isinstance(task, str)
        if not task.size:
            task = task.with_recipe(size=dict(space.proxy_size))
        return dict(task.build_kwargs), tuple(task.input_shape)

    def __call__(self, arch: Arch) -> dict[str, float]:
        from wsnas.training import train

        space = self.space
        if space is None:
            from wsnas.search_spaces import get_space

            space = get_space(arch.space)
        assert not isinstance(self.task, str)
        r = train(space, arch, self.task, seed=self.seed)
        out = {
            "accuracy": float(r.val_acc),
            "params": float(r.params),
            "flops": float(r.flops),
            "train_seconds": float(r.train_seconds),
            "cpu_seconds": float(r.cpu_seconds),
            "diverged": float(r.diverged),
        }
        if r.val_loss is not None:
            out["val_loss"] = float(r.val_loss)
        return out


class TableEvaluator:
    """Look architectures up in a CSV of measured results: column ``arch_column`` holds the space's strings,
    ``metric_column`` the metric (higher is better; it becomes ``accuracy``).

    Rows of the same architecture (equal canonical hash) are averaged. Only the rows' architectures can
    be evaluated: a search restricts its candidates to them, and asking for another one is an error.

    Args:
        path: the CSV file (a header line, then one row per measurement).
        arch_column: the column of architecture strings.
        metric_column: the column of the metric.
        space: the search space (or its name) the strings belong to; ``None``: the search's space.

    Raises:
        EvaluatorError: the file is missing or empty, lacks a column, has a row whose metric is not a
            number or whose architecture string does not parse (the message names the line).
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        arch_column: str,
        metric_column: str,
        *,
        space: SearchSpace | str | None = None,
    ) -> None:
        if not isinstance(path, (str, os.PathLike)):
            raise EvaluatorError(f"TableEvaluator needs the path of a CSV file (str or os.PathLike), got {path!r}")
        for what, col in (("arch_column", arch_column), ("metric_column", metric_column)):
            if not isinstance(col, str) or not col:
                raise EvaluatorError(f"TableEvaluator's {what} must be a column name (a non-empty str), got {col!r}")
        self.path = Path(path)
        self.arch_column = str(arch_column)
        self.metric_column = str(metric_column)
        self._rows = self._read()
        self.space: SearchSpace | None = None
        self._by_hash: dict[str, float] = {}
        self._strings: dict[str, str] = {}
        if space is not None:
            self.bind(space)

    @property
    def spec(self) -> str:
        """``table:PATH:ARCH_COLUMN:METRIC_COLUMN``: how ``wsnas search --evaluator`` names this evaluator."""
        return f"table:{self.path.resolve()}:{self.arch_column}:{self.metric_column}"

    def _read(self) -> list[tuple[int, str, float]]:
        where = repr(str(self.path))
        if not self.path.is_file():
            raise EvaluatorError(f"table file {where} does not exist")
        try:
            with open(self.path, newline="", encoding="utf-8") as f:
                reader = csv.DictReader(f)
                columns = list(reader.fieldnames or [])
                for col in (self.arch_column, self.metric_column):
                    if col not in columns:
                        raise EvaluatorError(f"table {where} has no column {col!r}; its columns are {columns}")
                rows, bad = [], []
                for lineno, row in enumerate(reader, start=2):
                    text, raw = row.get(self.arch_column), row.get(self.metric_column)
                    if text is None or raw is None or not text.strip():
                        raise EvaluatorError(f"table {where} line {lineno}: missing {self.arch_column!r} or value")
                    try:
                        value = float(raw)
                    except ValueError:
                        raise EvaluatorError(
                            f"table {where} line {lineno}: {self.metric_column!r} must be a number, got {raw!r}"
                        ) from None
                    if not math.isfinite(value):
                        bad.append(lineno)
                        continue
                    rows.append((lineno, text.strip(), value))
        except UnicodeDecodeError as exc:
            raise EvaluatorError(f"table {where} is not a UTF-8 CSV file ({exc.reason})") from None
        except csv.Error as exc:
            raise EvaluatorError(f"table {where} is not a valid CSV file ({exc})") from None
        if bad:
            lines = ", ".join(str(n) for n in bad[:5]) + (", ..." if len(bad) > 5 else "")
            if not rows:
                raise EvaluatorError(
                    f"table {where}: every one of its {len(bad)} rows has a non-finite {self.metric_column!r} "
                    f"(NaN or inf; lines {lines})"
                )
            warnings.warn(
                f"table {where}: {len(bad)} row(s) with a non-finite {self.metric_column!r} (NaN or inf) left out "
                f"(lines {lines})",
                RuntimeWarning,
                stacklevel=3,
            )
        if not rows:
            raise EvaluatorError(f"table {where} has no rows below its header")
        return rows

    def bind(self, space: SearchSpace | str) -> TableEvaluator:
        """Parse every row as an architecture of ``space`` (done once; returns ``self``)."""
        from wsnas.search_spaces import get_space

        space_obj = get_space(space) if isinstance(space, str) else space
        if self.space is not None and self.space.name == space_obj.name:
            return self
        sums: dict[str, list[float]] = {}
        strings: dict[str, str] = {}
        for lineno, text, value in self._rows:
            try:
                arch = space_obj.from_string(text)
            except InvalidArchitecture as exc:
                raise EvaluatorError(
                    f"table {str(self.path)!r} line {lineno}: {text!r} is not an architecture of "
                    f"{space_obj.name!r} ({exc})"
                ) from None
            sums.setdefault(arch.hash, []).append(value)
            strings.setdefault(arch.hash, space_obj.to_string(arch))
        self.space = space_obj
        self._by_hash = {h: sum(v) / len(v) for h, v in sums.items()}
        self._strings = strings
        return self

    def __len__(self) -> int:
        return len(self._by_hash) if self.space is not None else len(self._rows)

    def can_evaluate(self, arch: Arch) -> bool:
        """Whether the table holds ``arch``."""
        if self.space is None:
            self.bind(arch.space)
        return arch.hash in self._by_hash

    def archs(self) -> list[str]:
        """The table's architectures (the space's strings), one per distinct architecture."""
        if self.space is None:
            raise EvaluatorError("TableEvaluator.archs() needs a space: pass space= or call bind(space) first")
        return list(self._strings.values())

    def __call__(self, arch: Arch) -> dict[str, float]:
        if not self.can_evaluate(arch):
            assert self.space is not None
            raise EvaluatorError(
                f"architecture {self.space.to_string(arch)!r} is not in table {str(self.path)!r} "
                f"({len(self._by_hash)} architectures); a TableEvaluator evaluates only the table's rows"
            )
        return {"accuracy": self._by_hash[arch.hash]}


class CallableEvaluator:
    """Wrap a user's callable ``Arch -> float | dict[str, float]`` (a float is the ``accuracy``)."""

    def __init__(self, fn: Callable[[Arch], float | Mapping[str, float]]) -> None:
        if not callable(fn):
            raise EvaluatorError(f"an evaluator must be callable (Arch -> float | dict), got {type(fn).__name__}")
        self.fn = fn
        self.spec: str | None = None
        if callable(getattr(fn, "can_evaluate", None)):  # a callable may say which archs it can measure
            self.can_evaluate = fn.can_evaluate

    def __call__(self, arch: Arch) -> dict[str, float]:
        return normalise_result(self.fn(arch))


def normalise_result(result: Any) -> dict[str, float]:
    """An evaluator's return value as ``{name: float}``.

    Raises:
        EvaluatorError: not a number or a dict of numbers.
    """
    if isinstance(result, Mapping):
        out: dict[str, float] = {}
        for key, value in result.items():
            try:
                out[str(key)] = float(value)
            except (TypeError, ValueError):
                raise EvaluatorError(f"evaluator result {key!r} must be a number, got {value!r}") from None
        return out
    if isinstance(result, bool) or not isinstance(result, (int, float)) and not hasattr(result, "__float__"):
        raise EvaluatorError(f"an evaluator must return a number or a dict of numbers, got {type(result).__name__}")
    return {"accuracy": float(result)}


def check_values(measured: Mapping[str, float], needed: tuple[str, ...]) -> None:
    """Every name in ``needed`` is in ``measured`` and finite.

    Raises:
        EvaluatorError: a needed metric is missing, NaN or infinite.
    """
    for name in needed:
        if name not in measured:
            raise EvaluatorError(f"the evaluator returned no {name!r} (it returned {sorted(measured)})")
        if not math.isfinite(measured[name]):
            raise EvaluatorError(f"the evaluator returned {name}={measured[name]}")


def evaluator_from_spec(spec: str) -> TrainEvaluator | TableEvaluator:
    """``train:TASK`` or ``table:PATH:ARCH_COLUMN:METRIC_COLUMN`` as an evaluator.

    Raises:
        EvaluatorError: another form, or a table that cannot be read.
        wsnas.UnknownTask: ``train:`` names no built-in task.
    """
    kind, sep, rest = str(spec).partition(":")
    if kind == "train" and sep and rest:
        return TrainEvaluator(rest)
    if kind == "table" and sep:
        parts = rest.rsplit(":", 2)
        if len(parts) == 3 and all(parts):
            return TableEvaluator(parts[0], parts[1], parts[2])
    raise EvaluatorError(f"an evaluator is 'train:TASK' or 'table:PATH:ARCH_COLUMN:METRIC_COLUMN', got {spec!r}")


def as_evaluator(obj: Any, space: SearchSpace) -> Callable[[Arch], dict[str, float]]:
    """Bind ``obj`` (a spec string, TrainEvaluator, TableEvaluator, or callable) to ``space``.

    The returned object is callable ``Arch -> dict`` and has ``spec`` (``None`` when workers cannot
    rebuild it from a string).
    """
    if isinstance(obj, str):
        obj = evaluator_from_spec(obj)
    if isinstance(obj, TrainEvaluator):
        return obj if obj.space is not None else obj.for_space(space)
    if isinstance(obj, TableEvaluator):
        return obj.bind(space)
    if isinstance(obj, CallableEvaluator):
        return obj
    return CallableEvaluator(obj)
