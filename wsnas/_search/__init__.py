"""The search engine behind :func:`wsnas.search` and :func:`wsnas.join` (private: use those names).

Modules, from the top: :mod:`~wsnas._search._api` (``search``, ``join``: check the arguments, open the
study, run one worker), :mod:`~wsnas._search._loop` (one worker's rounds: propose, screen, evaluate,
fine-tune), :mod:`~wsnas._search._store` (the Optuna storage and the claim protocol between workers),
:mod:`~wsnas._search._result` (what a search returns), :mod:`~wsnas._search._objectives` and
:mod:`~wsnas._search._evaluators` (what is measured and how), and the MLflow side:
:mod:`~wsnas._search._tracking` (what a search logs, ``wsnas track sync``) over
:mod:`~wsnas._search._tracker` (runs, retries, idempotency) and :mod:`~wsnas._search._plots`.
"""

from __future__ import annotations

from wsnas._search._api import SAMPLERS, join, search
from wsnas._search._evaluators import CallableEvaluator, TableEvaluator, TrainEvaluator
from wsnas._search._objectives import OBJECTIVES, NetMeasures
from wsnas._search._result import SearchRecord, SearchResult

__all__ = [
    "search",
    "join",
    "SearchResult",
    "SearchRecord",
    "SAMPLERS",
    "TrainEvaluator",
    "TableEvaluator",
    "CallableEvaluator",
    "OBJECTIVES",
    "NetMeasures",
]
