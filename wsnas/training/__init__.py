"""Training: tasks (a dataset plus a frozen recipe), real training from generated weights, model zoos.

>>> task = cifar10("data/", epochs=1, resolution=16)     # or digits(), synthetic()
>>> result = train(space, arch, task, seed=0)             # result.val_acc, result.cpu_seconds
>>> build_zoo(space, task, n=200, seed=0, path="zoo.jsonl")   # appended crash-safely, resumed by key

Modules: :mod:`~wsnas.training._datasets` (where images come from, read without unpickling code),
:mod:`~wsnas.training._tasks` (:class:`Task` and its fingerprint), :mod:`~wsnas.training._train`
(training runs, one process per core), :mod:`~wsnas.training._zoo` (zoo files) and
:mod:`~wsnas.training._export` (a chosen architecture as a network to ship: :func:`export`). Importing this
package is cheap: torch loads inside the functions that train.
"""

from __future__ import annotations

from wsnas.training._datasets import DataSource, cifar10_source
from wsnas.training._export import ExportError, ExportResult, export
from wsnas.training._tasks import (
    OPTIMIZERS,
    SCHEDULES,
    Task,
    TaskData,
    cifar10,
    digits,
    get_task,
    synthetic,
    task_names,
)
from wsnas.training._train import TrainResult, train, train_many
from wsnas.training._zoo import Zoo, ZooRecord, build_zoo, sample_distinct

__all__ = [
    "DataSource",
    "cifar10_source",
    "OPTIMIZERS",
    "SCHEDULES",
    "Task",
    "TaskData",
    "cifar10",
    "digits",
    "get_task",
    "synthetic",
    "task_names",
    "TrainResult",
    "train",
    "train_many",
    "Zoo",
    "ZooRecord",
    "build_zoo",
    "sample_distinct",
    "ExportError",
    "ExportResult",
    "export",
]
