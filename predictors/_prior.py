"""The size prior: a predictor's score blended with each architecture's parameter count.

Within one search space, a bigger network usually trains to a better accuracy, and the parameter count is
the strongest single signal on a new space (on the NB101 zoo's held-out half, params rank at 0.786 and the
multi-space predictor trained on NB101 labels at 0.720). The encoder learns this relation only partly, so a
predictor's score is

    score = mean + std * (s + w * sd * p) / (1 + w)

where ``s`` is the ensemble's mean standardised score, ``p = (log numel - mu) / sigma`` is the standardised
log parameter count of the network at the encoding width, ``sd`` the spread of ``s`` over the space (so the
two terms count on one scale, whatever the ensemble's spread), and ``w`` the space's weight. ``mu``,
``sigma`` and ``sd`` come from the architectures a fit was given (each trained space), else from a seeded
sample of :data:`STATS_SAMPLE` architectures of the space (transfer, fine-tuning). The count
at a small width ranks like the count at full width (Spearman 1.000 on the NB201 and NB101 zoos, 0.979 on
MacroCNN's).

* After :meth:`~wsnas.predictors.WeightPredictor.fit`, each trained space's ``w`` is :func:`choose_weight`'s:
  the weight that makes the blend correlate best with the target, from the ensemble's Spearman on the
  space's validation set, the parameter count's on all its labelled architectures and theirs with each
  other on all its architectures. A space where the encoder already ranks well keeps ``w`` near 0.
* A space the predictor was never trained on (:meth:`~wsnas.predictors.WeightPredictor.transfer`) gets
  :data:`UNSEEN_WEIGHT`: the encoder and the parameter count count equally. Without labels nothing tells which
  of the two ranks the space better, and for ``r_scores = r_sizes`` :func:`choose_weight` gives 1 whatever
  ``r_both``.
* :meth:`~wsnas.predictors.WeightPredictor.fine_tune` with at least :data:`MIN_CHOICE` labels, and more than the
  weight was chosen from (the entry's ``labels``: a fit's labelled architectures of the space, 0 for the
  unseen default), chooses ``w`` again on them, from the scores the ensemble gave them before it trained on
  them (out of sample when the labels are new to it). Measured on the NB101 zoo's held-out half, 25 of its cells
  (5 draws) and the other 130 scored: the shipped multi-space predictor (``w`` 1.32 from its fit's 145 labels)
  ranks them at 0.789 zero-shot, 0.788 fine-tuned keeping its weight, 0.771 choosing again from the 25 (params
  0.782, medians). With its earlier weight (0.3, a grid search on 29 validation cells) choosing again had
  helped: 0.782 against 0.734.
* A predictor written before the prior existed has none (``w = 0``): its scores do not change.

The card's ``prior`` records ``{"feature": "log_params", "unseen_weight": ..., "spaces": {name: {"weight",
"mean", "std", "score_std", "size", "seen", "chosen_on", "labels"}}}``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from wsnas.predictors._training import spearman

if TYPE_CHECKING:
    from wsnas._arch import Arch
    from wsnas.encoding import CandidateGraphs, ParamGraph
    from wsnas.predictors._predictor import WeightPredictor

__all__ = [
    "MAX_WEIGHT", "UNSEEN_WEIGHT", "STATS_SAMPLE", "MIN_CHOICE", "log_params", "space_prior", "standardised_sizes",
    "fine_tune_weight", "fine_tuned_prior", "choose_weight", "correlations", "blend",
    "checked_prior",
]  # fmt: skip

#: the largest weight a choice gives (the blend is then three parts parameter count, one part ensemble)
MAX_WEIGHT = 3.0
#: the weight of a space the predictor never saw labels of
UNSEEN_WEIGHT = 1.0
#: architectures drawn (seeded) to standardise a space's log parameter counts and the ensemble's scores
STATS_SAMPLE = 64
#: the fewest labels a fine-tuning chooses the weight from
MIN_CHOICE = 10


def log_params(candidates: CandidateGraphs, archs: Sequence[Arch]) -> np.ndarray:
    """``[n]`` float64: the log parameter count of each network at ``candidates.size`` (no network is run;
    the weight spec is the one the encoding builds and caches anyway)."""
    return np.log(np.asarray([max(candidates.entry(a)[0].numel, 1) for a in archs], dtype=np.float64))


def space_prior(
    pred: WeightPredictor,
    candidates: CandidateGraphs,
    weight: float,
    *,
    seen: bool,
    chosen_on: str,
    scores_only: dict[str, Any] | None = None,
    sample: tuple[Sequence[Arch], list[ParamGraph]] | None = None,
    sample_scores: np.ndarray | None = None,
    labels: int = 0,
) -> dict[str, Any]:
    """The prior entry of ``candidates.space`` at ``candidates.size``: ``weight``, the mean and std of the log
    parameter counts of :data:`STATS_SAMPLE` distinct architectures drawn with ``pred.seed`` (or of
    ``sample``'s architectures, with their graphs: a fit's data) and the std of ``pred``'s ensemble mean
    standardised score over them. ``scores_only``: an entry whose count statistics are kept (the ensemble
    changed, the width did not). ``sample_scores``: the ensemble's mean scores over ``sample``'s graphs, when
    the caller has them. ``labels``: how many labels the weight was chosen from (0: none, a default)."""
    from wsnas.predictors._training import space_graphs
    from wsnas.training import sample_distinct

    space = candidates.space
    if sample is None:
        n = STATS_SAMPLE if space.size is None else min(STATS_SAMPLE, space.size)
        archs = sample_distinct(space, n, pred.seed)
        graphs = space_graphs(candidates, archs, pred.seed)
    else:
        archs, graphs = sample
    if sample_scores is None:
        sample_scores = np.mean([pred._raw_scores(m, graphs) for m in pred.members], 0)
    score_std = float(np.asarray(sample_scores).std())
    entry = {"weight": float(weight), "score_std": score_std if score_std > 0 else 1.0, "size": dict(candidates.size),
             "seen": seen, "chosen_on": chosen_on, "labels": int(labels)}  # fmt: skip
    if scores_only is not None:
        return {**entry, "mean": scores_only["mean"], "std": scores_only["std"]}
    values = log_params(candidates, archs)
    std = float(values.std())
    return {**entry, "mean": float(values.mean()), "std": std if std > 0 else 1.0}


def standardised_sizes(
    candidates: CandidateGraphs, archs: Sequence[Arch], entry: dict[str, Any], *, logs: np.ndarray | None = None
) -> np.ndarray:
    """``[n]``: ``p``, the log parameter counts standardised by ``entry`` (``logs [n]``: the counts' logs
    when the caller has them, :func:`log_params` of ``archs`` otherwise)."""
    return ((log_params(candidates, archs) if logs is None else logs) - entry["mean"]) / entry["std"]


def choose_weight(r_scores: float, r_sizes: float, r_both: float) -> float:
    """The weight ``w`` whose blend ``s + w * p`` correlates best with the target, for ``s`` and ``p`` of unit
    spread, ``r_scores`` and ``r_sizes`` their correlations with the target and ``r_both`` theirs with each
    other: ``w = (r_sizes - r_scores * r_both) / (r_scores - r_sizes * r_both)``, the zero of the derivative of
    ``(r_scores + w * r_sizes) / sqrt(1 + w**2 + 2 * w * r_both)``. 0 when the sizes add nothing to the scores
    (numerator <= 0) or a correlation is not finite, :data:`MAX_WEIGHT` when the scores add nothing to the
    sizes (denominator <= 0); never above it.

    Each correlation is estimated where it is least biased and most numerous: a parameter count is never
    fitted, so ``r_sizes`` takes every labelled architecture, and ``r_both`` needs no labels. Measured against
    the grid search it replaces (the best of ten fixed weights on the validation set alone) on the shipped
    multi-space predictor's held-out halves: NB101 0.756 -> 0.796 (params 0.786), NB201 0.841 -> 0.838,
    MacroCNN 0.398 -> 0.398; the validation set's 29 NB101 cells ranked params at 0.586, the 145 labelled
    ones at 0.713.
    """
    r = np.asarray([r_scores, r_sizes, r_both], dtype=np.float64)
    if not np.isfinite(r).all():
        return 0.0
    numerator, denominator = r[1] - r[0] * r[2], r[0] - r[1] * r[2]
    if numerator <= 0:
        return 0.0
    if denominator <= 0:
        return MAX_WEIGHT
    return float(min(round(numerator / denominator, 4), MAX_WEIGHT))


def correlations(
    scores: np.ndarray,
    targets: np.ndarray,
    sizes: np.ndarray,
    *,
    labelled_sizes: np.ndarray | None = None,
    labelled_targets: np.ndarray | None = None,
    space_scores: np.ndarray | None = None,
    space_sizes: np.ndarray | None = None,
) -> tuple[float, float, float]:
    """``(r_scores, r_sizes, r_both)`` for :func:`choose_weight`: Spearman of out-of-sample ``scores [n]``
    with ``targets [n]``, of the sizes with the targets (over ``labelled_sizes``/``labelled_targets [m]``
    when given, else ``sizes [n]``) and of scores with sizes (over ``space_scores``/``space_sizes [k]`` when
    given, else the ``n``); ``nan`` with fewer than 3."""

    def rho(a: np.ndarray, b: np.ndarray) -> float:
        return spearman(a, b) if len(a) >= 3 else float("nan")

    ls, lt = (sizes, targets) if labelled_sizes is None else (labelled_sizes, labelled_targets)
    ss, sz = (scores, sizes) if space_scores is None else (space_scores, space_sizes)
    return rho(scores, targets), rho(ls, lt), rho(ss, sz)


def blend(scores: np.ndarray, p: np.ndarray, entry: dict[str, Any] | None) -> np.ndarray:
    """``(scores + w * sd * p) / (1 + w)`` for ``scores [..., n]`` and the :func:`standardised_sizes` ``p [n]``,
    ``sd`` the entry's ``score_std`` (``None`` or ``w = 0``: ``scores`` unchanged)."""
    if entry is None or not entry["weight"]:
        return scores
    w = float(entry["weight"])
    return (scores + w * entry["score_std"] * p) / (1.0 + w)


def fine_tune_weight(pred: WeightPredictor, archs: Sequence[Arch], graphs: list, targets: np.ndarray) -> float | None:
    """Before :meth:`~wsnas.predictors.WeightPredictor.fine_tune` trains: the weight its labels choose
    (:func:`choose_weight` on their correlations, the scores the ensemble gives them now) when they are at least
    :data:`MIN_CHOICE` and more than the weight was chosen from (the entry's ``labels``); ``None``: the weight
    stays."""
    entry = None if pred.prior is None else pred.prior["spaces"].get(pred.space.name)
    if entry is None or len(archs) < MIN_CHOICE or len(archs) <= int(entry.get("labels", 0)):
        return None
    scores = np.mean([pred._raw_scores(m, graphs) for m in pred.members], 0)
    return choose_weight(*correlations(scores, targets, standardised_sizes(pred.candidates, archs, entry)))


def fine_tuned_prior(pred: WeightPredictor, weight: float | None, labels: int) -> dict[str, Any] | None:
    """After :meth:`~wsnas.predictors.WeightPredictor.fine_tune` on ``labels`` labels: the prior with the space's
    entry given, unless ``weight`` is ``None``, that weight (chosen from those labels) and, when the weight is
    not 0, the new ensemble's score spread."""
    entry = None if pred.prior is None else pred.prior["spaces"].get(pred.space.name)
    if entry is None:
        return pred.prior
    how = entry.get("chosen_on", "validation") if weight is None else "fine_tune"
    w = entry["weight"] if weight is None else weight
    n = int(entry.get("labels", 0)) if weight is None else labels
    if w:
        new = space_prior(pred, pred.candidates, w, seen=entry["seen"], chosen_on=how, scores_only=entry, labels=n)
    else:  # the blend is off: its spread is not used
        new = {**entry, "weight": 0.0, "chosen_on": how, "labels": n}
    return {**pred.prior, "spaces": {**pred.prior["spaces"], pred.space.name: new}}


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
        w, mean, std, sd = (float(entry[k]) for k in ("weight", "mean", "std", "score_std"))
        if not (np.isfinite(w) and w >= 0 and np.isfinite(mean) and np.isfinite(std) and std > 0 and np.isfinite(sd)
                and sd > 0):  # fmt: skip
            raise ValueError(
                f"'prior' of space {name!r} needs a finite weight >= 0, mean, std > 0 and score_std > 0, got {entry}"
            )
        labels = entry.get("labels", 0)
        if isinstance(labels, bool) or not isinstance(labels, int) or labels < 0:
            raise ValueError(f"'prior' of space {name!r}: 'labels' must be an int >= 0, got {labels!r}")
        spaces[str(name)] = {**entry, "weight": w, "mean": mean, "std": std, "score_std": sd, "labels": labels}
    unseen = float(prior.get("unseen_weight", UNSEEN_WEIGHT))
    if not (np.isfinite(unseen) and unseen >= 0):
        raise ValueError(f"'prior' unseen_weight must be a finite number >= 0, got {unseen}")
    return {**prior, "unseen_weight": unseen, "spaces": spaces}
