"""wsnas: weight-space neural architecture search.

A candidate architecture (:class:`Arch`) of a search space (:mod:`wsnas.search_spaces`) is built into a
real PyTorch network, given generated initial weights, turned into a parameter graph and scored by a
graph neural network that predicts how well it will train.

Importing ``wsnas`` is cheap: torch and the other heavy libraries load when a function needs them.
"""

from __future__ import annotations

from wsnas._arch import INPUT, OUTPUT, Arch, Arity
from wsnas._errors import (
    InvalidArchitecture,
    PredictorFileError,
    UnknownSearchSpace,
    UnsupportedLayer,
    WsnasError,
)
from wsnas._netstats import count_flops, count_params
from wsnas._version import __version__

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
    "count_params",
    "count_flops",
    "__version__",
]
