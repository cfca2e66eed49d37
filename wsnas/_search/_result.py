"""What a search returns: :class:`SearchRecord` per architecture, :class:`SearchResult` for the search."""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from wsnas._atomic import atomic_write_text
from wsnas._search._objectives import OBJECTIVES, pareto_indices
from wsnas._search._store import token_finished

if TYPE_CHECKING:
    import optuna

    from wsnas._arch import Arch
    from wsnas._search._config import SearchConfig
    from wsnas._search._protocol import SearchPredictor

__all__ = ["SearchRecord", "SearchResult", "build_result", "write_json"]


@dataclass(frozen=True)
class SearchRecord:
    """One architecture of a search: its string, trial number, objective values and measurements.

    ``measured`` holds what the evaluator returned (empty for a training-free search, whose ``values``
    are predictions); ``predicted``/``uncertainty`` what the predictor said when it was screened;
    ``error`` why a FAIL trial failed; ``params``/``flops`` the network's parameter count and FLOPs: on
    every record whose evaluator measured them (``measured["params"]``), whose objectives hold them or
    whose network the search already measured, and always on the best, Pareto and :meth:`SearchResult.top`
    records.
    """

    arch: str
    arch_hash: str
    trial: int
    state: str
    values: dict[str, float]
    measured: dict[str, float | None] = field(default_factory=dict)
    predicted: float | None = None
    uncertainty: float | None = None
    error: str | None = None
    params: int | None = None
    flops: int | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class SearchResult:
    """What a search found.

    ``history``: the really-evaluated architectures in evaluation order (FAIL trials included, with
    their ``error``); ``pareto``: the records of :meth:`evaluated` that no other one dominates on every
    objective in its direction, sorted by the first objective (the best one alone with one objective);
    ``best``: the first of ``pareto``; ``study``: the Optuna study holding everything.
    """

    best: SearchRecord | None
    pareto: list[SearchRecord]
    history: list[SearchRecord]
    study: optuna.Study
    objectives: tuple[str, ...]
    storage: str
    study_name: str
    output_dir: Path
    training_free: bool
    screened: list[SearchRecord] = field(default_factory=list, repr=False)
    predictor: SearchPredictor | None = field(default=None, repr=False)
    tracking_uri: str | None = None
    _config: SearchConfig | None = field(default=None, repr=False)

    def evaluated(self) -> list[SearchRecord]:
        """The records with a value for every objective, among which ``pareto`` is the non-dominated set:
        the COMPLETE evaluations (the screened candidates when training-free, their accuracy predicted)."""
        return self.screened if self.training_free else [r for r in self.history if r.state == "COMPLETE"]

    def top(self, n: int = 5) -> list[SearchRecord]:
        """The ``n`` best records by the first objective (really measured; predicted when training-free),
        with ``params`` and ``flops``."""
        best = _sorted(self.evaluated(), self.objectives)[:n]
        return [_with_costs(r, self._config) for r in best] if self._config is not None else best

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready: ``best``, ``pareto`` (each record with every objective's value in ``values``), ``evaluated``
        (how many records ``pareto`` was chosen from), ``history`` (``{"arch": string, ...measured}`` in order)
        and where."""
        return {
            "study_name": self.study_name,
            "storage": self.storage,
            "output_dir": str(self.output_dir),
            "tracking_uri": self.tracking_uri,
            "objectives": list(self.objectives),
            "training_free": self.training_free,
            "best": self.best.to_dict() if self.best else None,
            "pareto": [r.to_dict() for r in self.pareto],
            "evaluated": len(self.evaluated()),
            "history": [_history_row(r) for r in self.history],
        }


def _history_row(r: SearchRecord) -> dict[str, Any]:
    row: dict[str, Any] = {"arch": r.arch, **r.measured, "trial": r.trial, "state": r.state}
    if r.predicted is not None:
        row["predicted"] = r.predicted
    if r.error is not None:
        row["error"] = r.error
    return row


def _sorted(records: list[SearchRecord], objectives: Sequence[str]) -> list[SearchRecord]:
    first = objectives[0]
    sign = -1.0 if OBJECTIVES[first] == "maximize" else 1.0
    return sorted(records, key=lambda r: (sign * r.values[first], r.trial))


def build_result(study: optuna.Study, config: SearchConfig, url: str, name: str, out: Path) -> SearchResult:
    """The :class:`SearchResult` of everything ``study`` holds now."""
    from optuna.trial import TrialState

    trials = study.get_trials(deepcopy=False)
    training_free = config.eval_budget == 0
    if training_free:
        chosen = [t for t in trials if t.user_attrs.get("kind") == "predicted" and t.state == TrialState.COMPLETE]
    else:
        chosen = [t for t in trials if t.user_attrs.get("kind") == "eval" and token_finished(t)]
        chosen.sort(key=lambda t: (t.datetime_complete, t.number))
    records, seen = [], set()
    for t in chosen:
        if t.user_attrs.get("arch_hash") in seen:
            continue
        seen.add(t.user_attrs.get("arch_hash"))
        ok = t.state == TrialState.COMPLETE
        records.append(
            SearchRecord(
                arch=str(t.user_attrs.get("arch")),
                arch_hash=str(t.user_attrs.get("arch_hash")),
                trial=t.number,
                state=t.state.name,
                values=dict(zip(config.objectives, t.values)) if ok else {},
                measured=dict(t.user_attrs.get("measured") or {}),
                predicted=t.user_attrs.get("predicted"),
                uncertainty=t.user_attrs.get("uncertainty"),
                error=t.user_attrs.get("fail_reason"),
            )
        )
    records = [_with_known_costs(r, config) for r in records]
    complete = [r for r in records if r.state == "COMPLETE"]
    front = [complete[i] for i in pareto_indices([[r.values[o] for o in config.objectives] for r in complete],
                                                 config.directions)]  # fmt: skip
    front = [_with_costs(r, config) for r in _sorted(front, config.objectives)]
    if len(config.objectives) == 1:
        front = front[:1]
    return SearchResult(
        best=front[0] if front else None,
        pareto=front,
        history=[] if training_free else records,
        study=study,
        objectives=config.objectives,
        storage=url,
        study_name=name,
        output_dir=out,
        training_free=training_free,
        screened=records if training_free else [],
        _config=config,
    )


def _known(r: SearchRecord, config: SearchConfig, name: str) -> int | None:
    """``r``'s ``name`` (``params`` or ``flops``) from what is known without building its network: the
    evaluator's measurement, else the objective value, else the search's own measurement of the network."""
    for value in (r.measured.get(name), r.values.get(name), config.measures.cached(r.arch_hash, name)):
        if value is not None and math.isfinite(value) and value > 0:
            return int(value)
    return None


def _with_known_costs(r: SearchRecord, config: SearchConfig) -> SearchRecord:
    """``r`` with the ``params`` and ``flops`` that are known already (see :func:`_known`)."""
    return replace(r, params=_known(r, config, "params"), flops=_known(r, config, "flops"))


def _with_costs(r: SearchRecord, config: SearchConfig) -> SearchRecord:
    """``r`` with ``params`` and ``flops`` (known already, else measured on the built network)."""
    arch: Arch = config.space.from_string(r.arch)
    params = _known(r, config, "params") or config.measures.params(arch)
    flops = _known(r, config, "flops") or config.measures.flops(arch)
    return replace(r, params=int(params), flops=int(flops))


def write_json(path: Path, doc: dict[str, Any]) -> None:
    """Write ``doc`` to ``path`` atomically (a temporary file renamed over it)."""
    atomic_write_text(path, json.dumps(doc, indent=2, default=str))
