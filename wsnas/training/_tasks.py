"""Tasks: a dataset plus a training recipe, with a stable fingerprint of everything that changes results.

>>> task = digits(epochs=2, resolution=16)
>>> data = task.prepare()          # train/validation split drawn with task.seed, resized and normalised
>>> data.train_x.shape             # [n_train, C, 16, 16]

Built-in datasets: ``cifar10`` (a user's ``cifar-10-batches-py`` folder, read with a restricted
unpickler), ``digits`` (scikit-learn's bundled 8x8 digits) and ``synthetic`` (tiny seeded data for
tests). Nothing is ever downloaded.
"""

from __future__ import annotations

import functools
import hashlib
import json
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from wsnas._errors import DatasetError, UnknownTask
from wsnas.training._datasets import DataSource, _load_digits, cifar10_source

if TYPE_CHECKING:
    import torch

__all__ = [
    "Task",
    "TaskData",
    "DataSource",
    "DatasetError",
    "UnknownTask",
    "cifar10",
    "digits",
    "synthetic",
    "get_task",
    "task_names",
    "OPTIMIZERS",
    "SCHEDULES",
]

OPTIMIZERS = ("sgd", "adamw")
SCHEDULES = ("onecycle", "cosine", "constant")


# -- the task -----------------------------------------------------------------------------------------
@dataclass(frozen=True)
class TaskData:
    """A prepared task: normalised images and labels of the training subset and the validation split,
    and the per-channel statistics (``mean``, ``std`` ``[1, C, 1, 1]``) they were normalised with.

    Shapes: ``train_x [n_train, C, R, R]`` float32, ``train_y [n_train]`` int64, ``val_x [n_val, C, R, R]``,
    ``val_y [n_val]``, with ``R`` the task's resolution.
    """

    train_x: torch.Tensor
    train_y: torch.Tensor
    val_x: torch.Tensor
    val_y: torch.Tensor
    mean: np.ndarray = field(repr=False, default_factory=lambda: np.zeros(1, np.float32))
    std: np.ndarray = field(repr=False, default_factory=lambda: np.ones(1, np.float32))


@dataclass(frozen=True, eq=True)
class Task:
    """A dataset plus a training recipe. Frozen; derive variants with :meth:`with_recipe`.

    Fields: ``optimizer`` (``sgd`` with ``momentum``/``nesterov``, or ``adamw``), ``lr``, ``weight_decay``,
    ``schedule`` (``onecycle``, ``cosine``, ``constant``; stepped per batch), ``epochs``, ``batch_size``,
    ``resolution`` (images are resized once at load time; ``None``: the dataset's own), ``subset``
    (training images used; ``None``: all not held out), ``val_size`` (images held out of the training
    data for validation, drawn with ``seed``), ``seed`` (the split), ``size`` (network size keywords
    passed to ``SearchSpace.build``; empty: the space's ``proxy_size``).
    """

    name: str
    source: DataSource
    optimizer: str = "sgd"
    lr: float = 0.05
    momentum: float = 0.9
    nesterov: bool = True
    weight_decay: float = 5e-4
    schedule: str = "cosine"
    epochs: int = 1
    batch_size: int = 64
    resolution: int | None = None
    subset: int | None = None
    val_size: int = 1000
    seed: int = 0
    size: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        object.__setattr__(self, "size", dict(sorted(dict(self.size).items())))
        if self.optimizer not in OPTIMIZERS:
            raise ValueError(f"optimizer must be one of {OPTIMIZERS}, got {self.optimizer!r}")
        if self.schedule not in SCHEDULES:
            raise ValueError(f"schedule must be one of {SCHEDULES}, got {self.schedule!r}")
        for key in ("epochs", "batch_size", "val_size"):
            value = getattr(self, key)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"Task.{key} must be an int >= 1, got {value!r}")
        for key in ("resolution", "subset"):
            value = getattr(self, key)
            if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
                raise ValueError(f"Task.{key} must be None or an int >= 1, got {value!r}")
        if not (self.lr > 0 and self.weight_decay >= 0 and 0 <= self.momentum < 1):
            raise ValueError(
                f"Task needs lr > 0, weight_decay >= 0 and 0 <= momentum < 1, got "
                f"(lr={self.lr}, weight_decay={self.weight_decay}, momentum={self.momentum})"
            )

    def __hash__(self) -> int:
        return hash(self.fingerprint)

    @property
    def input_shape(self) -> tuple[int, int, int]:
        """``(C, R, R)``: what a network of this task receives, without the batch dimension."""
        r = self.resolution or self.source.resolution
        return (self.source.in_channels, r, r)

    @property
    def build_kwargs(self) -> dict[str, Any]:
        """Keywords for ``SearchSpace.build``: the task's ``size`` plus ``num_classes`` and ``in_channels``."""
        return {"num_classes": self.source.num_classes, "in_channels": self.source.in_channels, **self.size}

    def recipe(self) -> dict[str, Any]:
        """Every field except the data source, as plain JSON-ready values."""
        doc = asdict(self)
        doc.pop("source")
        doc["size"] = dict(self.size)
        return doc

    @functools.cached_property
    def fingerprint(self) -> str:
        """Stable hex digest of everything that changes results: dataset identity and the whole recipe
        (the folder a dataset was read from is not part of it)."""
        doc = {"dataset": [self.source.name, self.source.digest], **self.recipe()}
        return hashlib.sha256(json.dumps(doc, sort_keys=True, default=str).encode()).hexdigest()[:16]

    def with_recipe(self, **changes: Any) -> Task:
        """A copy with some recipe fields changed (``None`` values are ignored)."""
        unknown = sorted(set(changes) - set(self.recipe()))
        if unknown:
            raise ValueError(f"unknown recipe field(s) {unknown}; known: {sorted(self.recipe())}")
        return replace(self, **{k: v for k, v in changes.items() if v is not None})

    def to_dict(self) -> dict[str, Any]:
        """The task as JSON data that :meth:`from_dict` turns back into the same task (equal fingerprint):
        ``{"task": name, "data": loader keywords (an absolute data folder), "recipe", "fingerprint"}``.

        Raises:
            ValueError: the task is no built-in task (its data cannot be named); the message says why.
        """
        return _task_to_dict(self)

    @classmethod
    def from_dict(cls, doc: Mapping[str, Any], *, data_dir: str | Path | None = None) -> Task:
        """The task :meth:`to_dict` described; ``data_dir`` replaces the stored data folder (the same data
        elsewhere: its fingerprint must be the stored one).

        Raises:
            ValueError, KeyError, TypeError: a malformed description, or ``data_dir`` for a task without
                one. UnknownTask: no built-in task of that name. DatasetError: the data folder is missing
                or holds other data than the description's.
        """
        return _task_from_dict(doc, data_dir)

    def prepare(self) -> TaskData:
        """Load, split, subset, resize and normalise the training data (cached per process).

        The validation split (``val_size`` images) and the training subset are disjoint draws from the
        training data with ``seed``; per-channel normalisation uses training-subset statistics.
        """
        return _prepare(self)

    def load_test(self) -> tuple[torch.Tensor, torch.Tensor]:
        """The untouched test split, resized and normalised like the training data: ``[N, C, R, R]``, ``[N]``."""
        x, y = self.source.load("test")
        data = _prepare(self)
        return _to_tensor(self._resize(x), data.mean, data.std), _labels(y)

    # -- internals ------------------------------------------------------------------------------------
    def _split(self) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        x, y = self.source.load("train")
        n = len(y)
        n_train = n - self.val_size if self.subset is None else self.subset
        if self.val_size + n_train > n or n_train < 1:
            raise ValueError(
                f"task {self.name!r}: val_size + subset must be <= the {n} training images, got "
                f"val_size={self.val_size}, subset={self.subset}"
            )
        order = np.random.default_rng(self.seed).permutation(n)
        val, train = order[: self.val_size], order[self.val_size : self.val_size + n_train]
        return x[train], y[train], x[val], y[val]

    def _resize(self, x: np.ndarray) -> np.ndarray:
        import torch
        import torch.nn.functional as F

        r = self.resolution or self.source.resolution
        h = x.shape[-1]
        if r == h:
            return x
        out = []
        for chunk in np.array_split(x, max(1, len(x) // 2048)):
            t = torch.from_numpy(np.ascontiguousarray(chunk))
            if h % r == 0:
                t = F.avg_pool2d(t, h // r)
            else:
                t = F.interpolate(t, size=(r, r), mode="bilinear", align_corners=False, antialias=r < h)
            out.append(t.numpy())
        return np.concatenate(out)


def _to_tensor(x: np.ndarray, mean: np.ndarray, std: np.ndarray) -> torch.Tensor:
    import torch

    return torch.from_numpy(np.ascontiguousarray((x - mean) / std, dtype=np.float32))


def _labels(y: np.ndarray) -> torch.Tensor:
    import torch

    return torch.from_numpy(np.ascontiguousarray(y, dtype=np.int64))


@functools.lru_cache(maxsize=2)  # a CIFAR-10 task at 32x32 holds ~120 MB
def _prepare(task: Task) -> TaskData:
    train_x, train_y, val_x, val_y = task._split()
    train_x, val_x = task._resize(train_x), task._resize(val_x)
    mean = train_x.mean(axis=(0, 2, 3), keepdims=True)
    std = train_x.std(axis=(0, 2, 3), keepdims=True) + 1e-6
    return TaskData(
        _to_tensor(train_x, mean, std), _labels(train_y), _to_tensor(val_x, mean, std), _labels(val_y), mean, std
    )


# -- built-in tasks -----------------------------------------------------------------------------------
def cifar10(data_dir: str | Path, **recipe: Any) -> Task:
    """CIFAR-10 from a user's ``cifar-10-batches-py`` folder (or its parent); recipe keywords as :class:`Task`.

    The dataset's identity is a content hash of the batch files (computed once per file per process).

    Raises:
        DatasetError: the folder or a file is missing; the message names the path and the layout.
    """
    source = cifar10_source(data_dir)
    recipe.setdefault("val_size", 1000)
    return Task(name="cifar10", source=source, **recipe)


def digits(**recipe: Any) -> Task:
    """scikit-learn's bundled 8x8 handwritten digits (1 channel, 10 classes), upsampled to 16x16 by default.

    1,438 training images (a fixed fifth is kept as the test split); ``val_size`` defaults to 288.
    """
    x, y = _load_digits("train")
    xt, yt = _load_digits("test")
    digest = hashlib.sha256(b"".join(a.tobytes() for a in (x, y, xt, yt))).hexdigest()[:16]
    source = DataSource("digits", digest, 10, 1, 8)
    recipe.setdefault("resolution", 16)
    recipe.setdefault("val_size", 288)
    return Task(name="digits", source=source, **recipe)


def synthetic(
    n: int = 512, classes: int = 4, image_size: int = 8, noise: float = 1.0, data_seed: int = 0, **recipe: Any
) -> Task:
    """Tiny generated images for tests: each class has a mean colour and a pattern, plus Gaussian noise.

    ``n`` training (and ``n`` test) images of shape ``[3, image_size, image_size]``, drawn with ``data_seed``.
    """
    options = (
        ("n", int(n)),
        ("classes", int(classes)),
        ("size", int(image_size)),
        ("noise", float(noise)),
        ("seed", int(data_seed)),
    )
    digest = hashlib.sha256(json.dumps(options).encode()).hexdigest()[:16]
    source = DataSource("synthetic", digest, int(classes), 3, int(image_size), options)
    recipe.setdefault("val_size", max(1, n // 8))
    return Task(name="synthetic", source=source, **recipe)


_TASKS: dict[str, Callable[..., Task]] = {"cifar10": cifar10, "digits": digits, "synthetic": synthetic}


def task_names() -> list[str]:
    """Names :func:`get_task` accepts."""
    return list(_TASKS)


def get_task(name: str, **options: Any) -> Task:
    """The built-in task called ``name`` with ``options`` (``data_dir`` for cifar10, recipe fields).

    Raises:
        UnknownTask: no task has that name; the message lists the known ones.
    """
    key = str(name).lower()
    if key not in _TASKS:
        raise UnknownTask(f"unknown task {name!r}; known tasks: {', '.join(_TASKS)}")
    if key == "cifar10" and options.get("data_dir") is None:
        raise DatasetError("task 'cifar10' needs data_dir: the folder holding 'cifar-10-batches-py'")
    return _TASKS[key](**options)


# -- a task as data (what a search's study stores, so that its workers rebuild the same task) -------------------
#: the loader options of each built-in dataset: ``DataSource.options`` key -> :func:`get_task` keyword
_SOURCE_KEYWORDS: dict[str, dict[str, str]] = {
    "cifar10": {"data_dir": "data_dir"},
    "digits": {},
    "synthetic": {"n": "n", "classes": "classes", "size": "image_size", "noise": "noise", "seed": "data_seed"},
}


def _task_to_dict(task: Task) -> dict[str, Any]:
    """See :meth:`Task.to_dict`."""
    names = _SOURCE_KEYWORDS.get(task.name)
    if names is None or task.source.name != task.name:
        raise ValueError(
            f"its task {task.name!r} (data {task.source.name!r}) is no built-in task ({', '.join(_SOURCE_KEYWORDS)}), "
            "which a study cannot store as data"
        )
    data = {names[k]: v for k, v in task.source.options if k in names}
    if "data_dir" in data:
        data["data_dir"] = str(Path(data["data_dir"]).resolve())
    recipe = {k: v for k, v in task.recipe().items() if k != "name"}
    try:
        same = get_task(task.name, **data, **recipe).fingerprint == task.fingerprint
    except Exception as exc:  # noqa: BLE001 - whatever the reason, it is no data
        raise ValueError(f"its task {task.name!r} cannot be rebuilt ({type(exc).__name__}: {exc})") from None
    if not same:
        raise ValueError(f"its task {task.name!r} differs from the built-in task rebuilt from its recipe")
    return {"task": task.name, "data": data, "recipe": recipe, "fingerprint": task.fingerprint}


def _task_from_dict(doc: Mapping[str, Any], data_dir: str | Path | None) -> Task:
    """See :meth:`Task.from_dict`."""
    name, data, recipe = str(doc["task"]), dict(doc["data"]), {k: v for k, v in doc["recipe"].items() if k != "name"}
    if data_dir is not None:
        if "data_dir" not in data:
            raise ValueError(f"task {name!r} reads no data folder; a data folder ({str(data_dir)!r}) does not apply")
        data["data_dir"] = str(data_dir)
    task = get_task(name, **data, **recipe)
    stored = doc.get("fingerprint")
    if stored is not None and task.fingerprint != stored:
        where = f" in {data['data_dir']!r}" if "data_dir" in data else ""
        raise DatasetError(
            f"the {name} data{where} is not the data the search trains on (task fingerprint {task.fingerprint}, "
            f"the study's {stored}): point the data folder (--data-dir) at the same copy"
        )
    return task
