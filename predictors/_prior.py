"""The size prior: a predictor's score blended with each architecture's parameter count.

Within one search space, a bigger network usually trains to a better accuracy, and the parameter count is
the strongest single signal on a new space (on the NB101 zoo's held-out half, params rank at 0.786 and the
multi-space predictor trained on NB101 labels at 0.720). The encoder learns this relation only partly, so a
predictor's score is

    score = mean + std * (s + w * sd * p) / (1 + w)

where ``s`` is the ensemble's mean standardised score, ``p = (x - mu) / sigma`` is the network's standardised
size feature at the encoding width, ``sd`` the spread of ``s`` over the space (so the two terms count on one
scale, whatever the ensemble's spread), and ``w`` the space's weight. The size feature ``x`` is the log
parameter count, or, where a space's labels choose it (:func:`choose_coef`), a combination ``a * log numel +
b * depth`` with the network's depth in weight layers (:func:`layer_depth`). ``mu``, ``sigma`` and ``sd`` come
from the architectures a fit was given (each trained space), else from a seeded sample of :data:`STATS_SAMPLE`
architectures of the space (transfer, fine-tuning). The count at a small width ranks like the count at full
width (Spearman 1.000 on the NB201 and NB101 zoos, 0.979 on MacroCNN's).

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
  (5 draws) and the other 130 scored: the shipped multi-space predictor (``w`` 1.16 from its fit's 145 labels)
  ranks them at 0.781 zero-shot, 0.788 fine-tuned keeping its weight, 0.768 choosing again from the 25 (params
  0.782, medians); on MacroCNN's (two-seed labels) 0.775, 0.774 and 0.797 (params 0.032). With an earlier
  weight (0.3, a grid search on 29 validation cells) choosing again had helped on NB101: 0.782 against 0.734.
* The combination is chosen with the weight, from the same labels (a fit's labelled architectures of each
  space, a fine-tuning's labels), and kept by a transfer to a trained space; a space never trained on has the
  log parameter count alone (the depth's sign differs between spaces: on the faithful MacroCNN zoo shallower
  networks train better at one size, on NB201 deeper ones).
* A predictor written before the prior existed has none (``w = 0``): its scores do not change.

The card's ``prior`` records ``{"feature": "log_params", "unseen_weight": ..., "spaces": {name: {"weight",
"mean", "std", "score_std", "size", "seen", "chosen_on", "labels"[, "coef"]}}}``; ``coef`` (the combination's
``[a, b]``) is absent where the feature is the log parameter count alone (an entry written before it existed
reads the same).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from wsnas.predictors._training import spearman

if TYPE_CHECKING:
    from wsnas._arch import Arch
    from wsnas.encoding import CandidateGraphs, GraphTemplate, ParamGraph
    from wsnas.predictors._predictor import WeightPredictor

__all__ = [
    "MAX_WEIGHT", "UNSEEN_WEIGHT", "STATS_SAMPLE", "MIN_CHOICE", "FEATURES", "log_params", "layer_depth",
    "arch_features", "size_values", "choose_coef", "space_prior", "standardised_sizes",
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


#: the costless architecture statistics the size feature combines: the log parameter count and the depth
FEATURES = ("log_params", "depth")
#: the combination of a space whose labels chose none: the log parameter count alone
PARAMS_ONLY = (1.0, 0.0)
#: folds of the cross-validation that decides whether the depth joins the parameter count
COEF_FOLDS = 5


def log_params(candidates: CandidateGraphs, archs: Sequence[Arch]) -> np.ndarray:
    """``[n]`` float64: the log parameter count of each network at ``candidates.size`` (no network is run;
    the weight spec is the one the encoding builds and caches anyway). ``archs`` are validated architectures
    of ``candidates.space`` (as :class:`~wsnas.predictors.WeightPredictor` passes them: validating each
    again cost 0.25-0.4 ms an NB201 cell, about 5% of ``predict``)."""
    return np.log(np.asarray([max(candidates._entry(a)[0].numel, 1) for a in archs], dtype=np.float64))


def layer_depth(template: GraphTemplate) -> int:
    """The most Conv2d/Linear layers on one path from an input to an output of a network's parameter graph
    (its longest path, counting only weight layers' edges; the graph is acyclic). Computed by relaxing every
    edge until no node's depth grows: about 0.3-0.8 ms a network at the encoding widths."""
    from wsnas.encoding import EDGE_TYPES

    src, dst = (template.edge_index[i].long().numpy() for i in (0, 1))
    weighted = np.isin(template.edge_type.long().numpy(), [EDGE_TYPES.index("conv"), EDGE_TYPES.index("linear")])
    step = weighted.astype(np.int64)
    depth = np.zeros(template.num_nodes, dtype=np.int64)
    for _ in range(template.num_nodes + 1):
        grown = depth.copy()
        np.maximum.at(grown, dst, depth[src] + step)
        if np.array_equal(grown, depth):
            break
        depth = grown
    return int(depth.max(initial=0))


def arch_features(candidates: CandidateGraphs, archs: Sequence[Arch]) -> np.ndarray:
    """``[n, 2]`` float64: each network's :data:`FEATURES` (log parameter count, :func:`layer_depth`) at
    ``candidates.size``; ``archs`` validated, as for :func:`log_params`."""
    depth = np.asarray([layer_depth(candidates._entry(a)[1]) for a in archs], dtype=np.float64)
    return np.column_stack([log_params(candidates, archs), depth]) if len(archs) else np.zeros((0, 2))


def size_values(candidates: CandidateGraphs, archs: Sequence[Arch], coef: Sequence[float] | None) -> np.ndarray:
    """``[n]``: the size feature before standardising, ``coef[0] * log params + coef[1] * depth``
    (``coef`` ``None``: :data:`PARAMS_ONLY`; the depth is only computed when its coefficient is not 0)."""
    c = PARAMS_ONLY if coef is None else tuple(float(v) for v in coef)
    if c[1]:
        return arch_features(candidates, archs) @ np.asarray(c)
    return c[0] * log_params(candidates, archs)


def _regression(features: np.ndarray, targets: np.ndarray) -> tuple[float, float] | None:
    """The coefficients of :data:`FEATURES` whose combination correlates best with ``targets`` (the
    standardised regression on their Spearman correlations, back on the features' own scale); ``None`` when
    a feature is constant or the two move as one."""
    from scipy.stats import rankdata

    scale = features.std(0)
    if len(targets) < 3 or not (scale > 0).all():
        return None
    ranks = np.column_stack([rankdata(f) for f in features.T])
    both = float(np.corrcoef(ranks, rowvar=False)[0, 1])
    r = np.asarray([spearman(f, targets) for f in features.T])
    if not (np.isfinite(both) and np.isfinite(r).all()) or abs(both) > 0.99:
        return None
    beta = np.linalg.solve(np.asarray([[1.0, both], [both, 1.0]]), r)
    total = float(np.abs(beta).sum())
    if total == 0:
        return None
    return float(beta[0] / total / scale[0]), float(beta[1] / total / scale[1])


def choose_coef(features: np.ndarray, targets: np.ndarray, seed: int = 0) -> tuple[float, float]:
    """How the size feature combines a space's :data:`FEATURES` ``[n, 2]``, from ``n`` labelled architectures'
    ``targets [n]``: the regression on both (:func:`_regression`) when its :data:`COEF_FOLDS`-fold
    cross-validated Spearman (folds drawn with ``seed``; each fold's values centred and scaled as its fit's)
    beats the parameter count's on the same labels by more than ``1 / sqrt(n)`` (about one standard error of a
    Spearman on ``n`` labels), else :data:`PARAMS_ONLY`; :data:`PARAMS_ONLY` under :data:`MIN_CHOICE` labels too.

    Measured on the faithful zoos' pools (the transfer benchmark's hash split), the cross-validated gain of the
    combination over the count: MacroCNN +0.47 on its 160 labels (+0.27 to +0.95 on 25-label draws), NB101
    +0.05 on 145 (whose test half then ranked the combination at 0.737 against the count's 0.780), NB201 +0.006
    on 515.

    Within a space the depth can count either way: on the faithful MacroCNN zoo (3 epochs at 16x16) shallower
    networks train better at the same size (Spearman of the depth with the accuracy -0.48, of the log
    parameter count 0.10), on NB201 deeper ones (0.52). The labels say which, and the cross-validation keeps
    a combination only where it ranks held-out labels better than the count alone."""
    features, targets = np.asarray(features, dtype=np.float64), np.asarray(targets, dtype=np.float64)
    n = len(targets)
    full = _regression(features, targets) if n >= MIN_CHOICE else None
    if full is None:
        return PARAMS_ONLY
    folds = np.array_split(np.random.default_rng(seed).permutation(n), min(COEF_FOLDS, n // 2))
    held = np.full(n, np.nan)
    for fold in folds:
        rest = np.setdiff1d(np.arange(n), fold)
        c = _regression(features[rest], targets[rest])
        if c is None:
            return PARAMS_ONLY
        fitted = features[rest] @ np.asarray(c)  # the folds' values on one scale: centred and scaled as fitted
        held[fold] = (features[fold] @ np.asarray(c) - fitted.mean()) / (fitted.std() or 1.0)
    if not spearman(held, targets) > spearman(features[:, 0], targets) + 1.0 / np.sqrt(n):
        return PARAMS_ONLY
    return full


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
    coef: Sequence[float] | None = None,
    sample_values: np.ndarray | None = None,
) -> dict[str, Any]:
    """The prior entry of ``candidates.space`` at ``candidates.size``: ``weight``, the mean and std of the log
    parameter counts of :data:`STATS_SAMPLE` distinct architectures drawn with ``pred.seed`` (or of
    ``sample``'s architectures, with their graphs: a fit's data) and the std of ``pred``'s ensemble mean
    standardised score over them. ``scores_only``: an entry whose count statistics are kept (the ensemble
    changed, the width did not). ``sample_scores``: the ensemble's mean scores over ``sample``'s graphs, when
    the caller has them. ``labels``: how many labels the weight was chosen from (0: none, a default).
    ``coef``: how the size feature combines the :data:`FEATURES` (:func:`choose_coef`; ``None``: the log
    parameter count alone), recorded in the entry unless it is that. ``sample_values``: the size feature of
    ``sample``'s architectures (:func:`size_values` with ``coef``), when the caller has them."""
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
    if coef is not None and tuple(float(c) for c in coef) != PARAMS_ONLY:
        entry["coef"] = [float(c) for c in coef]
    if scores_only is not None:
        return {**entry, "mean": scores_only["mean"], "std": scores_only["std"]}
    values = size_values(candidates, archs, entry.get("coef")) if sample_values is None else sample_values
    std = float(values.std())
    return {**entry, "mean": float(values.mean()), "std": std if std > 0 else 1.0}


def standardised_sizes(
    candidates: CandidateGraphs, archs: Sequence[Arch], entry: dict[str, Any], *, logs: np.ndarray | None = None
) -> np.ndarray:
    """``[n]``: ``p``, the size feature (:func:`size_values` with the entry's ``coef``) standardised by ``entry``
    (``logs [n]``: those values when the caller has them)."""
    values = size_values(candidates, archs, entry.get("coef")) if logs is None else logs
    return (values - entry["mean"]) / entry["std"]


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


def fine_tune_weight(
    pred: WeightPredictor, archs: Sequence[Arch], scores: np.ndarray, targets: np.ndarray
) -> tuple[float, tuple[float, float]] | None:
    """Before :meth:`~wsnas.predictors.WeightPredictor.fine_tune` trains: the weight and size-feature combination
    its labels choose (:func:`choose_coef` on their features, then :func:`choose_weight` on their correlations,
    with ``scores [n]``, the ensemble's mean raw scores of ``archs`` now) when they are at least
    :data:`MIN_CHOICE` and more than the weight was chosen from (the entry's ``labels``); ``None``: both stay."""
    entry = None if pred.prior is None else pred.prior["spaces"].get(pred.space.name)
    if entry is None or len(archs) < MIN_CHOICE or len(archs) <= int(entry.get("labels", 0)):
        return None
    features = arch_features(pred.candidates, archs)
    coef = choose_coef(features, targets, pred.seed)
    values = features @ np.asarray(coef)
    return choose_weight(*correlations(scores, targets, values)), coef


def fine_tuned_prior(
    pred: WeightPredictor, choice: tuple[float, tuple[float, float]] | None, labels: int
) -> dict[str, Any] | None:
    """After :meth:`~wsnas.predictors.WeightPredictor.fine_tune` on ``labels`` labels: the prior with the space's
    entry given, unless ``choice`` is ``None``, the weight and combination chosen from those labels; when the
    weight is not 0, the new ensemble's score spread (and, for a new combination, the feature's statistics)."""
    entry = None if pred.prior is None else pred.prior["spaces"].get(pred.space.name)
    if entry is None:
        return pred.prior
    how = entry.get("chosen_on", "validation") if choice is None else "fine_tune"
    w = entry["weight"] if choice is None else choice[0]
    old = tuple(entry.get("coef", PARAMS_ONLY))
    coef = old if choice is None else tuple(choice[1])
    n = int(entry.get("labels", 0)) if choice is None else labels
    if coef != old:  # a new combination: its statistics over a sample of the space
        new = space_prior(pred, pred.candidates, w, seen=entry["seen"], chosen_on=how, labels=n, coef=coef)
    elif w:
        new = space_prior(pred, pred.candidates, w, seen=entry["seen"], chosen_on=how, scores_only=entry, labels=n,
                          coef=coef)  # fmt: skip
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
        checked = {**entry, "weight": w, "mean": mean, "std": std, "score_std": sd, "labels": labels}
        if "coef" in entry:
            coef = entry["coef"]
            if not (isinstance(coef, list) and len(coef) == len(FEATURES)
                    and all(isinstance(c, (int, float)) and not isinstance(c, bool) and np.isfinite(c) for c in coef)):
                raise ValueError(f"'prior' of space {name!r}: 'coef' must be two finite numbers, got {coef}")
            checked["coef"] = [float(c) for c in coef]
        spaces[str(name)] = checked
    unseen = float(prior.get("unseen_weight", UNSEEN_WEIGHT))
    if not (np.isfinite(unseen) and unseen >= 0):
        raise ValueError(f"'prior' unseen_weight must be a finite number >= 0, got {unseen}")
    return {**prior, "unseen_weight": unseen, "spaces": spaces}
