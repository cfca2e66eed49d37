"""The size prior: a predictor's score blended with each architecture's parameter count.

Within one search space, a bigger network usually trains to a better accuracy, and the parameter count is
the strongest single signal on a new space (on the NB101 zoo's held-out half, params rank at 0.786 and the
multi-space predictor trained on NB101 labels at 0.720). The encoder learns this relation only partly, so a
predictor's score is

    score = mean + std * (s + w * p) / (1 + w)

where ``s`` is the ensemble's mean standardised score, ``p = (log numel - mu) / sigma`` is the standardised
log parameter count of the network at the encoding width (``mu`` and ``sigma`` from a seeded sample of
:data:`STATS_SAMPLE` architectures of the space; the count at a small width ranks like the count at full
width: Spearman 1.000 on NB201 and NB101's zoos, 0.979 on MacroCNN's) and ``w`` is the space's weight.

* After :meth:`~wsnas.predictors.WeightPredictor.fit`, each trained space's ``w`` is the one of
  :data:`WEIGHTS` with the best Spearman on that space's validation set (ties: the smaller weight), so a
  space where the encoder already ranks well keeps ``w`` near 0.
* A space the predictor was never trained on (:meth:`~wsnas.predictors.WeightPredictor.transfer`) gets
  :data:`UNSEEN_WEIGHT`: the encoder and the parameter count count equally.
* A predictor written before the prior existed has none (``w = 0``): its scores do not change.

The card's ``prior`` records ``{"feature": "log_params", "unseen_weight": ..., "spaces": {name: {"weight",
"mean", "std", "size", "seen"}}}``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from wsnas.predictors._training import spearman

if TYPE_CHECKING:
    from wsnas._arch import Arch
    from wsnas.encoding import CandidateGraphs

__all__ = [
    "WEIGHTS", "UNSEEN_WEIGHT", "STATS_SAMPLE", "log_params", "space_prior", "choose_weight", "blend", "checked_prior",
]  # fmt: skip

#: the weights a fit chooses among, on each space's validation set
WEIGHTS = (0.0, 0.1, 0.2, 0.3, 0.5, 0.75, 1.0, 1.5, 2.0, 3.0)
#: the weight of a space the predictor never saw labels of
UNSEEN_WEIGHT = 1.0
#: architectures drawn (seeded) to standardise a space's log parameter counts
STATS_SAMPLE = 256


def log_params(candidates: CandidateGraphs, archs: Sequence[Arch]) -> np.ndarray:
    """``[n]`` float64: the log parameter count of each network at ``candidates.size`` (no network is run;
    the weight spec is the one the encoding builds and caches anyway)."""
    return np.log(np.asarray([max(candidates.entry(a)[0].numel, 1) for a in archs], dtype=np.float64))


def space_prior(candidates: CandidateGraphs, seed: int, weight: float, *, seen: bool) -> dict[str, Any]:
    """The prior entry of ``candidates.space`` at ``candidates.size``: ``weight`` and the mean and std of the
    log parameter counts of :data:`STATS_SAMPLE` distinct architectures drawn with ``seed``."""
    from wsnas.training import sample_distinct

    space = candidates.space
    n = STATS_SAMPLE if space.size is None else min(STATS_SAMPLE, space.size)
    values = log_params(candidates, sample_distinct(space, n, seed))
    std = float(values.std())
    return {"weight": float(weight), "mean": float(values.mean()), "std": std if std > 0 else 1.0,
            "size": dict(candidates.size), "seen": seen}  # fmt: skip


def choose_weight(scores: np.ndarray, sizes: np.ndarray, targets: np.ndarray) -> float:
    """The weight of :data:`WEIGHTS` whose blend of ``scores [n]`` (standardised) and ``sizes [n]``
    (standardised log parameter counts) has the best Spearman with ``targets [n]``; 0 with fewer than 3
    architectures or when no blend ranks them (all ties)."""
    if len(targets) < 3:
        return 0.0
    best, best_rho = 0.0, -np.inf
    for w in WEIGHTS:
        rho = spearman(scores + w * sizes, targets)
        if np.isfinite(rho) and rho > best_rho + 1e-12:
            best, best_rho = w, rho
    return best


def blend(scores: np.ndarray, sizes: np.ndarray, entry: dict[str, Any] | None) -> np.ndarray:
    """``(scores + w * p) / (1 + w)`` for ``scores [..., n]`` and log parameter counts ``sizes [n]``,
    ``p`` standardised by ``entry`` (``None`` or ``w = 0``: ``scores`` unchanged)."""
    if entry is None or not entry["weight"]:
        return scores
    w = float(entry["weight"])
    p = (sizes - entry["mean"]) / entry["std"]
    return (scores + w * p) / (1.0 + w)


def checked_prior(prior: Any) -> dict[str, Any] | None:
    """A card's ``prior`` checked and with plain floats (``None`` stays ``None``).

    Raises:
        TypeError, ValueError: it is not a prior record (a missing key, a weight that is negative or not
            finite, a std that is not positive).
    """
    if prior is None:
        return None
    if not isinstance(prior, dict) or not isinstance(prior.get("spaces"), dict):
        raise TypeError(f"'prior' must be an object with a 'spaces' object, got {prior!r:.80}")
    spaces = {}
    for name, entry in prior["spaces"].items():
        if not isinstance(entry, dict):
            raise TypeError(f"'prior' of space {name!r} must be an object, got {type(entry).__name__}")
        w, mean, std = (float(entry[k]) for k in ("weight", "mean", "std"))
        if not (np.isfinite(w) and w >= 0 and np.isfinite(mean) and np.isfinite(std) and std > 0):
            raise ValueError(f"'prior' of space {name!r} needs a finite weight >= 0, mean and std > 0, got {entry}")
        spaces[str(name)] = {**entry, "weight": w, "mean": mean, "std": std}
    unseen = float(prior.get("unseen_weight", UNSEEN_WEIGHT))
    if not (np.isfinite(unseen) and unseen >= 0):
        raise ValueError(f"'prior' unseen_weight must be a finite number >= 0, got {unseen}")
    return {**prior, "unseen_weight": unseen, "spaces": spaces}
