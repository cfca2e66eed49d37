"""Exception types of wsnas: one type per kind of bad input.

Every message states the rule that was broken and the values that broke it, so that the CLI can print
it on one line and a user can fix their input without reading code.
"""

from __future__ import annotations

__all__ = [
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
]


class WsnasError(Exception):
    """Base class of every error wsnas raises on purpose."""


class InvalidArchitecture(WsnasError, ValueError):
    """An architecture graph or string breaks a rule of its search space."""


class UnknownSearchSpace(WsnasError, KeyError):
    """A search space was asked for by a name that is not registered."""

    def __str__(self) -> str:  # KeyError quotes its message; keep it readable
        return str(self.args[0]) if self.args else ""


class UnsupportedLayer(WsnasError, TypeError):
    """A network contains a layer that wsnas cannot turn into weights or a parameter graph."""


class PredictorFileError(WsnasError, OSError):
    """A predictor file is not a wsnas predictor, or is truncated or corrupted."""


class UnknownTask(WsnasError, KeyError):
    """A task was asked for by a name that is not registered."""

    def __str__(self) -> str:  # KeyError quotes its message; keep it readable
        return str(self.args[0]) if self.args else ""


class DatasetError(WsnasError, OSError):
    """A dataset is missing, malformed, or refused (an unsafe pickle)."""


class ZooFileError(WsnasError, OSError):
    """A zoo file is not JSON lines of zoo records (a line other than the last is malformed)."""


class EvaluatorError(WsnasError, RuntimeError):
    """An evaluator cannot measure an architecture: a malformed table, an architecture the table lacks,
    a result that is not a number, or a failure inside the evaluator (the message keeps its reason)."""


class SearchConfigError(WsnasError, ValueError):
    """A search was configured wrongly: an unknown objective or sampler, a bad budget, a predictor of
    another space, a study whose stored configuration differs."""


class StorageError(WsnasError, OSError):
    """An Optuna storage URL cannot be opened (unreachable server, unknown scheme, missing driver)."""
