"""wsnas: weight-space neural architecture search.

A candidate architecture (:class:`Arch`) of a search space (:mod:`wsnas.search_spaces`) is built into a
real PyTorch network, given generated initial weights, turned into a parameter graph and scored by a
graph neural network that predicts how well it will train.

Importing ``wsnas`` is cheap: names that need torch load their module on first use.
"""

from __future__ import annotations

import importlib
from typing import Any

from wsnas._arch import INPUT, OUTPUT, Arch, Arity
from wsnas._errors import (
    DatasetError,
    EvaluatorError,
    InvalidArchitecture,
    PredictorFileError,
    SearchConfigError,
    StorageError,
    UnknownSearchSpace,
    UnknownTask,
    UnsupportedLayer,
    WsnasError,
    ZooFileError,
)
from wsnas._netstats import count_flops, count_params
from wsnas._version import __version__
from wsnas.training import (
    ExportError,
    ExportResult,
    Task,
    TaskData,
    TrainResult,
    Zoo,
    ZooRecord,
    build_zoo,
    cifar10,
    digits,
    export,
    get_task,
    sample_distinct,
    synthetic,
    task_names,
    train,
    train_many,
)

# name -> module, imported on first access (these modules import torch at import time)
_LAZY: dict[str, str] = {
    **dict.fromkeys(
        ["TensorSpec", "WeightSpec", "weight_spec", "generate", "GeneratedWeights", "load_into", "INIT_RULES",
         "ParamGraph", "param_graph", "batch_graphs", "build_batch", "GraphTemplate", "NODE_TYPES", "EDGE_TYPES",
         "NODE_FEATURES", "graph_template", "CandidateGraphs"],
        "wsnas.encoding",
    ),  # fmt: skip
    **dict.fromkeys(
        ["search", "join", "SearchResult", "SearchRecord", "SearchPredictor", "TrainEvaluator", "TableEvaluator",
         "CallableEvaluator", "OBJECTIVES", "NetMeasures"],
        "wsnas._search",
    ),  # fmt: skip
}

__all__ = [
    "Arch",
    "Arity",
    "INPUT",
    "OUTPUT",
    "WsnasError",
    "InvalidArchitecture",
    "UnknownSearchSpace",
    "UnsupportedLayer",
    "PredictorFileError",
    "UnknownTask",
    "DatasetError",
    "ZooFileError",
    "EvaluatorError",
    "SearchConfigError",
    "StorageError",
    "count_params",
    "count_flops",
    "Task",
    "TaskData",
    "cifar10",
    "digits",
    "synthetic",
    "get_task",
    "task_names",
    "TrainResult",
    "train",
    "train_many",
    "Zoo",
    "ZooRecord",
    "build_zoo",
    "sample_distinct",
    "export",
    "ExportResult",
    "ExportError",
    "__version__",
    *_LAZY,
]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        value = getattr(importlib.import_module(_LAZY[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'wsnas' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(__all__)
