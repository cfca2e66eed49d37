"""Evaluators: what turns an architecture into really-measured metrics during a search.

* :class:`TrainEvaluator` trains the network on a :class:`~wsnas.Task` (``wsnas.train``);
* :class:`TableEvaluator` looks architectures up in a CSV of measured results that a user brings;
* any callable ``Arch -> float | dict`` (a float is the ``accuracy``; a dict maps metric names to numbers);
* a plug-in path ``package.module:attr`` naming one of these in a module of the user's (imported, never
  unpickled), which is how ``wsnas search --evaluator`` and the workers of a study reach a user's evaluator.

Every evaluator returns a dict of finite floats with at least ``accuracy`` (higher is better). A failure
is an exception; the search records it as a FAIL trial with the reason and goes on. An evaluator that
takes a keyword ``trial`` gets a :class:`TrialReporter` (``trial.report(value, step)``); raising
``optuna.TrialPruned`` when ``trial.should_prune()`` makes the trial PRUNED, and the search goes on.
A study stores an evaluator as its ``spec`` (a string or, for a :class:`TrainEvaluator`, a JSON dict of
its task), from which a joining worker rebuilds it.
"""

from __future__ import annotations

import csv
import inspect
import math
import os
import warnings
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

from wsnas._arch import Arch
from wsnas._errors import EvaluatorError, InvalidArchitecture

if TYPE_CHECKING:
    import optuna

    from wsnas.search_spaces import SearchSpace
    from wsnas.training import Task

__all__ = [
    "TrainEvaluator", "TableEvaluator", "CallableEvaluator", "TrialReporter", "as_evaluator", "evaluator_from_spec",
    "takes_trial",
]  # fmt: skip


@dataclass(frozen=True)
class TrainEvaluator:
    """Really train each architecture on ``task`` (see :func:`wsnas.train`) and report its validation accuracy.

    Args:
        task: a :class:`~wsnas.Task`, or the name of a built-in task (``digits``, ``synthetic``).
        seed: the training seed (initial weights and data order) of every architecture.
        space: the search space; ``None``: the space the search runs on.

    Returns per architecture: ``accuracy`` (validation accuracy, a fraction), ``val_loss``, ``params`` and
    ``flops`` of the trained network, ``train_seconds``, ``cpu_seconds`` and ``diverged`` (0 or 1).

    Called with ``trial=`` (a :class:`TrialReporter`, as the search does), it reports the validation
    accuracy after every epoch (step ``k``: ``k`` epochs trained) and stops with ``optuna.TrialPruned``
    when the search's pruner says so (never after the last epoch). A task of a built-in dataset is
    data (:attr:`spec`): the study stores it and ``wsnas worker`` rebuilds the same evaluator.
    """

    task: Task | str
    seed: int = 0
    space: SearchSpace | None = field(default=None, compare=False)
    takes_trial: ClassVar[bool] = True

    def __post_init__(self) -> None:
        if isinstance(self.task, str):
            from wsnas.training import get_task

            if self.seed == 0:
                object.__setattr__(self, "_spec", f"train:{self.task}")
            object.__setattr__(self, "task", get_task(self.task))

    @property
    def spec(self) -> str | dict[str, Any] | None:
        """How a study stores this evaluator: ``train:TASK`` (a built-in task by name, seed 0), the plug-in
        path it was loaded from, else a JSON dict of the task (name, data folder, recipe, fingerprint) and
        seed; ``None`` when the task is no built-in dataset (:attr:`why_not_data` says why)."""
        return getattr(self, "_spec", None) or self._described()[0]

    @property
    def why_not_data(self) -> str | None:
        """Why a worker cannot rebuild this evaluator from the study (``None``: it can)."""
        return None if getattr(self, "_spec", None) else self._described()[1]

    def _described(self) -> tuple[dict[str, Any] | None, str | None]:
        cached = getattr(self, "_doc", None)
        if cached is None:
            try:
                cached = ({"kind": "train", **self.task.to_dict(), "seed": int(self.seed)}, None)  # type: ignore[union-attr]
            except ValueError as exc:
                cached = (None, str(exc))
            else:
                cached = (_by_name(self.task, self.seed) or cached[0], None)
            object.__setattr__(self, "_doc", cached)
        return cached

    @classmethod
    def from_spec(cls, doc: Mapping[str, Any], *, data_dir: str | os.PathLike[str] | None = None) -> TrainEvaluator:
        """The evaluator a study stored as a dict (:attr:`spec`); ``data_dir``: where the dataset is on this
        machine (default: the stored folder). The data read must be the stored data (same fingerprint).

        Raises:
            EvaluatorError: a malformed description, or ``data_dir`` for a task that reads no folder.
            wsnas.DatasetError: the data folder is missing, or holds other data than the study's.
        """
        from wsnas.training import Task

        try:
            return cls(Task.from_dict(doc, data_dir=data_dir), seed=int(doc["seed"]))
        except (KeyError, TypeError, ValueError) as exc:
            task = doc.get("task") if isinstance(doc, Mapping) else None
            raise EvaluatorError(f"cannot rebuild the study's TrainEvaluator (task {task!r}): {exc}") from None

    def for_space(self, space: SearchSpace) -> TrainEvaluator:
        """This evaluator bound to ``space`` (a copy)."""
        out = replace(self, space=space, task=self.task)
        if getattr(self, "_spec", None) is not None:
            object.__setattr__(out, "_spec", self._spec)  # type: ignore[attr-defined]
        return out

    def build_size(self, space: SearchSpace) -> tuple[dict[str, Any], tuple[int, ...]]:
        """The ``space.build`` keywords and input shape of the trained networks."""
        task = self.task
        assert not isinstance(task, str)
        if not task.size:
            task = task.with_recipe(size=dict(space.proxy_size))
        return dict(task.build_kwargs), tuple(task.input_shape)

    def __call__(self, arch: Arch, *, trial: TrialReporter | None = None) -> dict[str, float]:
        from wsnas.training import train

        space = self.space
        if space is None:
            from wsnas.search_spaces import get_space

            space = get_space(arch.space)
        assert not isinstance(self.task, str)
        epochs = self.task.epochs

        def on_epoch(epoch: int, val_acc: float, val_loss: float) -> None:
            assert trial is not None
            trial.report(val_acc, epoch)
            if epoch < epochs and trial.should_prune():
                import optuna

                raise optuna.TrialPruned(f"pruned after epoch {epoch} of {epochs} (val acc {val_acc:.4f})")

        r = train(space, arch, self.task, seed=self.seed, on_epoch=None if trial is None else on_epoch)
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


def _by_name(task: Task, seed: int) -> str | None:
    """``train:TASK`` when ``task`` is the built-in task of that name as it is (no data folder) and ``seed`` 0."""
    from wsnas.training import get_task

    if seed != 0 or task.name == "cifar10" or get_task(task.name).fingerprint != task.fingerprint:
        return None
    return f"train:{task.name}"


class TrialReporter:
    """The trial of one real evaluation, as an evaluator sees it: Optuna's ``report`` and ``should_prune``.

    Intermediate values go straight to the study's storage, so the pruner compares against every worker's
    curves; ``should_prune`` asks the search's pruner (never prunes without one). An evaluator stops by
    raising ``optuna.TrialPruned``. ``last`` is the last ``(step, value)`` reported.
    """

    def __init__(self, study: optuna.Study, trial_id: int, pruner: optuna.pruners.BasePruner | None = None) -> None:
        self.study = study
        self.trial_id = trial_id
        self.pruner = pruner
        self.last: tuple[int, float] | None = None
        self._steps: set[int] = set()

    def report(self, value: float, step: int) -> None:
        """Store ``value`` as the intermediate value of ``step`` (an int >= 0); a second value of a step
        is ignored, as in Optuna."""
        from wsnas._search._optuna import storage_of

        if isinstance(step, bool) or not isinstance(step, int) or step < 0:
            raise EvaluatorError(f"trial.report needs a step that is an int >= 0, got {step!r}")
        if step in self._steps:
            return
        storage_of(self.study).set_trial_intermediate_value(self.trial_id, step, float(value))
        self._steps.add(step)
        self.last = (step, float(value))

    def should_prune(self) -> bool:
        """Whether the search's pruner stops this evaluation now (``False`` before any report)."""
        from wsnas._search._optuna import storage_of

        if self.pruner is None or self.last is None:
            return False
        return bool(self.pruner.prune(self.study, storage_of(self.study).get_trial(self.trial_id)))


def takes_trial(fn: Any) -> bool:
    """Whether ``fn`` accepts a keyword ``trial`` (other than as its first argument)."""
    try:
        params = list(inspect.signature(fn).parameters.values())
    except (TypeError, ValueError):
        return False
    return any(p.name == "trial" and (p.kind == p.KEYWORD_ONLY or (p.kind == p.POSITIONAL_OR_KEYWORD and i > 0))
               for i, p in enumerate(params))  # fmt: skip


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

    takes_trial: ClassVar[bool] = False

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
    """Wrap a user's callable ``Arch -> float | dict[str, float]`` (a float is the ``accuracy``); one that
    takes a keyword ``trial`` gets the search's :class:`TrialReporter` (``takes_trial``)."""

    def __init__(self, fn: Callable[..., float | Mapping[str, float]]) -> None:
        if not callable(fn):
            raise EvaluatorError(f"an evaluator must be callable (Arch -> float | dict), got {type(fn).__name__}")
        self.fn = fn
        self.spec: str | None = None
        self.takes_trial = takes_trial(fn)
        if callable(getattr(fn, "can_evaluate", None)):  # a callable may say which archs it can measure
            self.can_evaluate = fn.can_evaluate

    def __call__(self, arch: Arch, *, trial: TrialReporter | None = None) -> dict[str, float]:
        if trial is not None and self.takes_trial:
            return normalise_result(self.fn(arch, trial=trial))
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


def evaluator_from_spec(spec: str | Mapping[str, Any]) -> Any:
    """``train:TASK``, ``table:PATH:ARCH_COLUMN:METRIC_COLUMN``, a plug-in path ``package.module:attr``, or a
    stored TrainEvaluator dict (:attr:`TrainEvaluator.spec`) as an evaluator.

    A plug-in names a callable ``Arch -> float | dict``, a TrainEvaluator or TableEvaluator, or a class of
    one made with no arguments; the evaluator's ``spec`` is then the path, so workers import it too.

    Raises:
        EvaluatorError: another form, a table that cannot be read, a plug-in that cannot be loaded or
            is not callable. wsnas.UnknownTask: ``train:`` names no built-in task.
    """
    if isinstance(spec, Mapping):
        if spec.get("kind") == "train":
            return TrainEvaluator.from_spec(spec)
        raise EvaluatorError(f"a stored evaluator description must have kind 'train', got {dict(spec)!r}")
    kind, sep, rest = str(spec).partition(":")
    if kind == "train" and sep and rest:
        return TrainEvaluator(rest)
    if kind == "table" and sep:
        parts = rest.rsplit(":", 2)
        if len(parts) == 3 and all(parts):
            return TableEvaluator(parts[0], parts[1], parts[2])
    from wsnas.search_spaces import is_plugin_path

    if is_plugin_path(str(spec)):
        return _evaluator_plugin(str(spec))
    raise EvaluatorError(
        "an evaluator is 'train:TASK' or 'table:PATH:ARCH_COLUMN:METRIC_COLUMN' (or a plug-in 'package.module:attr'), "
        f"got {spec!r}"
    )


def _evaluator_plugin(path: str) -> Any:
    from wsnas.search_spaces import load_plugin

    obj = load_plugin(path, "evaluator", EvaluatorError)
    if isinstance(obj, type):
        try:
            obj = obj()
        except Exception as exc:  # noqa: BLE001 - the user's class failed: one line
            raise EvaluatorError(f"evaluator plug-in {path!r}: calling it failed: {type(exc).__name__}: {exc}") from exc
    if isinstance(obj, TrainEvaluator):
        out = replace(obj, task=obj.task)
        object.__setattr__(out, "_spec", path)
        return out
    if isinstance(obj, (TableEvaluator, CallableEvaluator)):
        obj.spec = path  # type: ignore[misc]
        return obj
    if not callable(obj):
        raise EvaluatorError(f"evaluator plug-in {path!r} is a {type(obj).__name__}, not callable: Arch -> float|dict")
    ev = CallableEvaluator(obj)
    ev.spec = path
    return ev


def as_evaluator(obj: Any, space: SearchSpace) -> Callable[..., dict[str, float]]:
    """Bind ``obj`` (a spec string or dict, TrainEvaluator, TableEvaluator, or callable) to ``space``.

    The returned object is callable ``Arch -> dict``, has ``spec`` (``None`` when workers cannot rebuild
    it from the study) and ``takes_trial``.
    """
    if isinstance(obj, (str, Mapping)):
        obj = evaluator_from_spec(obj)
    if isinstance(obj, TrainEvaluator):
        return obj if obj.space is not None else obj.for_space(space)
    if isinstance(obj, TableEvaluator):
        return obj.bind(space)
    if isinstance(obj, CallableEvaluator):
        return obj
    return CallableEvaluator(obj)
