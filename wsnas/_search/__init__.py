"""The search engine behind :func:`wsnas.search` and :func:`wsnas.join` (private: use those names).

Modules, from the top: :mod:`~wsnas._search._api` (``search``, ``join``: build the configuration, open
the study, run one worker), :mod:`~wsnas._search._config` (:class:`SearchConfig`: every option checked
once, frozen), :mod:`~wsnas._search._protocol` (:class:`SearchPredictor`: what a search needs of a
predictor), :mod:`~wsnas._search._loop` (one worker's rounds: propose, screen, evaluate,
fine-tune), :mod:`~wsnas._search._store` (the Optuna storage and the claim protocol between workers),
:mod:`~wsnas._search._result` (what a search returns), :mod:`~wsnas._search._objectives` and
:mod:`~wsnas._search._evaluators` (what is measured and how), and the MLflow side:
:mod:`~wsnas._search._tracking` (what a search logs, ``wsnas track sync``) over
:mod:`~wsnas._search._tracker` (runs, retries, idempotency) and :mod:`~wsnas._search._plots`.
:mod:`~wsnas._search._optuna` holds every use of Optuna's private API.
"""

from __future__ import annotations

from wsnas._search._api import join, search
from wsnas._search._config import SAMPLERS, SearchConfig
from wsnas._search._evaluators import CallableEvaluator, TableEvaluator, TrainEvaluator
from wsnas._search._objectives import OBJECTIVES, NetMeasures
from wsnas._search._protocol import SearchPredictor, check_predictor
from wsnas._search._result import SearchRecord, SearchResult
from wsnas._search._store import open_storage, open_study, quiet_optuna
from wsnas._search._tracker import SearchTracker, default_tracking_uri
from wsnas._search._tracking import search_links, sync

__all__ = [
    "search",
    "join",
    "SearchConfig",
    "SearchPredictor",
    "check_predictor",
    "SearchResult",
    "SearchRecord",
    "SAMPLERS",
    "TrainEvaluator",
    "TableEvaluator",
    "CallableEvaluator",
    "OBJECTIVES",
    "NetMeasures",
    "open_storage",
    "open_study",
    "quiet_optuna",
    "SearchTracker",
    "default_tracking_uri",
    "sync",
    "search_links",
]
