"""Transfer: a predictor trained on one search space, used zero-shot or fine-tuned on another.

>>> pred = load("nb201").transfer(get_space("nb101"))   # zero-shot; warns about layer types NB201 never had
>>> pred.predict(archs).score                            # [n]
>>> pred.fine_tune(archs[:25], accs[:25])                # few-shot, targets re-standardised on the new space

The weight encoder reads the parameter graph of any network made of supported layers (kernels are
re-padded or centre-cropped to its ``kernel_size``), so a trained ensemble can score networks of a space it
never saw. What carries over is the ensemble's weights and its target statistics; what changes is the space
and the **encoding width** the networks are built at. :data:`TRANSFER_SIZES` holds a measured default per
built-in space (a small width, as NB201's ``C=2``); other spaces use their ``proxy_size``.

**Layer types.** A predictor records the layer types of the networks it was trained on
(:func:`layer_types`: module classes such as ``"Conv2d 3x3"``, ``"MaxPool2d 3x3"``, ``"Conv2d 5x5
depthwise"``, plus the parameter-graph node, edge and activation types it met, such as ``"edge:max_pool"``).
:meth:`WeightPredictor.transfer` checks a seeded sample of the new space and issues an
:class:`UnseenLayerWarning` (a ``UserWarning``) naming the types the predictor never saw: its scores for
networks using them extrapolate (the encoder has weights for them that training never moved).
"""

from __future__ import annotations

import copy
import warnings
from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    import torch.nn as nn

    from wsnas._arch import Arch
    from wsnas.encoding import CandidateGraphs, GraphTemplate
    from wsnas.predictors._predictor import WeightPredictor
    from wsnas.search_spaces import SearchSpace

__all__ = [
    "ALIASES",
    "TRANSFER_SIZES",
    "UnseenLayerWarning",
    "adapt_unseen",
    "default_transfer_size",
    "layer_types",
    "module_layer_types",
    "seen_layer_types",
    "transfer",
]

#: default encoding width per target space: the smallest that builds every architecture (as NB201's C=2), and
#: the best zero-shot Spearman of the shipped NB201 predictor on the pool half of each in-house zoo (never its
#: test half; ``benchmarks/transfer.py --select widths``): NB101 C=5/6/8 0.36/0.33/0.30, MacroCNN
#: width_mult=0.0625/0.125/0.25 -0.07/-0.11/-0.09. NB101 needs ``C >= 5`` (a cell splits C over up to 5 nodes).
TRANSFER_SIZES: dict[str, dict[str, Any]] = {
    "nb201": {"C": 2, "N": 1},
    "nb101": {"C": 5, "stacks": 3, "cells_per_stack": 1},
    "macro": {"width_mult": 0.0625},
    "graph": {"C": 2},
}
#: how many architectures of a new space :func:`transfer` checks for unseen layer types
CHECK_SAMPLE = 32
#: with ``adapt=True`` an unseen parameter-graph type borrows the learnt weights of the first seen type listed
#: (training never moved the weights of a type it never met: they are still at their random initialisation).
#: Off by default: from NB201 to NB101, max_pool borrowing avg_pool lowered the zero-shot Spearman on the zoo's
#: pool from 0.36 to 0.27; on MacroCNN, reading 5x5/7x7 kernels through their centre 3x3 changed it by < 0.02.
ALIASES: dict[str, tuple[str, ...]] = {
    "edge:max_pool": ("edge:avg_pool",),
    "edge:avg_pool": ("edge:max_pool",),
    "act:gelu": ("act:relu", "act:silu"),
    "act:silu": ("act:relu", "act:gelu"),
}


class UnseenLayerWarning(UserWarning):
    """A search space uses layer types a predictor never saw in training (its scores there extrapolate)."""


def default_transfer_size(space: SearchSpace) -> dict[str, Any]:
    """The encoding width :func:`transfer` uses for ``space``: :data:`TRANSFER_SIZES` by name, else
    ``space.proxy_size``."""
    return dict(TRANSFER_SIZES.get(space.name, space.proxy_size))


def _kernel(k: Any) -> str:
    ks = (k, k) if isinstance(k, int) else tuple(k)
    return "x".join(str(int(v)) for v in ks)


def module_layer_types(net: nn.Module) -> set[str]:
    """The layer types of ``net``'s leaf modules: the class name, with the kernel for convolutions and
    pooling and ``depthwise``/``grouped`` for grouped convolutions (``"Conv2d 5x5 depthwise"``)."""
    import torch.nn as nn

    out = set()
    for m in net.modules():
        if next(m.children(), None) is not None or isinstance(m, (nn.Sequential, nn.ModuleList, nn.ModuleDict)):
            continue  # a container (even an empty one): its leaves are counted
        name = type(m).__name__
        if isinstance(m, nn.modules.conv._ConvNd):
            name = f"{name} {_kernel(m.kernel_size)}"
            if m.groups > 1:
                name += " depthwise" if m.groups == m.in_channels else " grouped"
        elif isinstance(m, (nn.MaxPool2d, nn.AvgPool2d)):
            name = f"{name} {_kernel(m.kernel_size)}"
        out.add(name)
    return out


def graph_layer_types(template: GraphTemplate) -> set[str]:
    """The parameter-graph vocabulary of one network: ``node:TYPE``, ``edge:TYPE`` and ``act:NAME``."""
    from wsnas.encoding import EDGE_TYPES, NODE_FEATURES, NODE_TYPES

    out = {f"node:{NODE_TYPES[int(i)]}" for i in template.node_type.unique().tolist()}
    out |= {f"edge:{EDGE_TYPES[int(i)]}" for i in template.edge_type.unique().tolist()}
    first = NODE_FEATURES.index("relu")
    used = (template.node_static[:, first:] != 0).any(dim=0).tolist() if template.num_nodes else []
    out |= {f"act:{NODE_FEATURES[first + j]}" for j, u in enumerate(used) if u}
    return out


def _subsample(archs: Sequence[Arch], n: int, seed: int) -> list[Arch]:
    if len(archs) <= n:
        return list(archs)
    idx = np.sort(np.random.default_rng([seed, 7]).choice(len(archs), n, replace=False))
    return [archs[i] for i in idx]


def layer_types(
    candidates: CandidateGraphs, archs: Sequence[Arch] | None = None, *, n: int = CHECK_SAMPLE, seed: int = 0
) -> list[str]:
    """Sorted layer types (:func:`module_layer_types` and :func:`graph_layer_types`) of the networks of
    ``archs`` built at ``candidates.size``; at most ``n`` of them, drawn with ``seed``. ``archs=None``
    draws ``n`` distinct architectures of ``candidates.space`` with ``seed``.

    Raises:
        ValueError: the space cannot build its networks at ``candidates.size``.
    """
    from wsnas.encoding import skip_reset_parameters
    from wsnas.training import sample_distinct

    space = candidates.space
    if archs is None:
        chosen = sample_distinct(space, n if space.size is None else min(n, space.size), seed)
    else:
        chosen = _subsample(archs, n, seed)
    out: set[str] = set()
    for arch in chosen:
        try:
            with skip_reset_parameters():
                net = space.build(arch, **candidates.size)
        except (TypeError, ValueError) as exc:
            raise ValueError(f"space {space.name!r} cannot build networks at size {candidates.size}: {exc}") from None
        out |= module_layer_types(net)
        out |= graph_layer_types(candidates.entry(arch)[1])
    return sorted(out)


def seen_layer_types(pred: WeightPredictor) -> list[str]:
    """The layer types ``pred`` was trained on: its card's record, or (a file written before the record
    existed) those of a seeded sample of the space its training targets come from, at its encoding width."""
    if pred.layer_types is not None:
        return list(pred.layer_types)
    from wsnas.encoding import CandidateGraphs
    from wsnas.search_spaces import get_space

    name = pred.target.get("space", pred.space.name)
    space = pred.space if name == pred.space.name else get_space(name)
    size = pred.candidates.size if space is pred.space else default_transfer_size(space)
    return layer_types(CandidateGraphs(space, size=size, init=pred.candidates.init), seed=pred.seed)


def warn_unseen(seen: Iterable[str], used: Iterable[str], where: str, *, stacklevel: int = 3) -> list[str]:
    """Issue an :class:`UnseenLayerWarning` when ``used`` holds types not in ``seen``; returns them sorted."""
    unseen = sorted(set(used) - set(seen))
    if unseen:
        warnings.warn(
            f"{where} uses layer types the predictor never saw in training: {', '.join(unseen)}; its scores "
            "for networks with them extrapolate (fine-tune on a few labelled architectures to adapt it)",
            UnseenLayerWarning,
            stacklevel=stacklevel,
        )
    return unseen


def _seen_kernel(seen: Iterable[str]) -> int:
    """The largest convolution kernel among the layer types ``seen`` (1 when there is none)."""
    sizes = [int(t.split()[1].split("x")[0]) for t in seen if t.startswith("Conv") and len(t.split()) > 1]
    return max(sizes, default=1)


def adapt_unseen(pred: WeightPredictor, seen: Sequence[str], used: Sequence[str]) -> dict[str, str]:
    """Give the types in ``used`` but not in ``seen`` the weights training would have given their nearest
    seen type, in every member of ``pred`` (in place); returns what was done.

    * an unseen edge type or activation listed in :data:`ALIASES` copies the embedding row (edges) or the
      ``node_in`` column (activations) of its first seen alias;
    * kernels larger than any seen convolution (``k_seen``) are read through their centre ``k_seen x
      k_seen`` only: the ``edge_in`` columns outside it, never trained, are zeroed.
    """
    import torch

    from wsnas.encoding import EDGE_TYPES
    from wsnas.predictors._encoder import _NUMERIC, NODE_FEATURES

    seen_set, unseen = set(seen), sorted(set(used) - set(seen))
    done: dict[str, str] = {}
    for token in unseen:
        alias = next((a for a in ALIASES.get(token, ()) if a in seen_set), None)
        if alias is not None:
            done[token] = alias
    k_seen, k_used = _seen_kernel(seen_set), _seen_kernel(used)
    k_enc = pred.encoder.kernel_size
    with torch.no_grad():
        for m in pred.members:
            for token, alias in done.items():
                kind, a, b = token.split(":")[0], token.split(":")[1], alias.split(":")[1]
                if kind == "edge":
                    m.edge_type.weight[EDGE_TYPES.index(a)] = m.edge_type.weight[EDGE_TYPES.index(b)]
                else:  # an activation: a column of the numeric node features
                    ia, ib = (_NUMERIC.index(NODE_FEATURES.index(x)) for x in (a, b))
                    m.node_in.weight[:, ia] = m.node_in.weight[:, ib]
            if k_used > k_seen and k_seen < k_enc:
                lo = (k_enc - k_seen) // 2
                keep = torch.zeros(k_enc, k_enc, dtype=torch.bool)
                keep[lo : lo + k_seen, lo : lo + k_seen] = True
                cols = m.edge_in.weight[:, : k_enc * k_enc]  # [H, K*K], a view
                cols[:, ~keep.reshape(-1)] = 0.0
    if k_used > k_seen and k_seen < k_enc:
        done["kernels"] = f"read through their centre {k_seen}x{k_seen}"
    return done


def transferred_prior(pred: WeightPredictor, new: WeightPredictor, *, refresh: bool = False) -> dict[str, Any] | None:
    """``pred``'s size prior carried to ``new`` (bound to another space or width): a trained space keeps its
    weight and size feature, a space never trained on gets the prior's ``unseen_weight`` (and the count
    alone); the statistics are recomputed at ``new``'s width unless it is the one they were taken at and not
    ``refresh`` (adapted members). ``None`` stays ``None`` (no prior)."""
    from wsnas.predictors._prior import space_prior

    if pred.prior is None:
        return None
    prior = copy.deepcopy(pred.prior)
    old = prior["spaces"].get(new.space.name)
    if old is None or old.get("size") != dict(new.candidates.size) or refresh:
        weight, seen = (old["weight"], old.get("seen", True)) if old else (prior["unseen_weight"], False)
        how, labels = (old.get("chosen_on", "validation"), old.get("labels", 0)) if old else ("default", 0)
        prior["spaces"][new.space.name] = space_prior(new, new.candidates, weight, seen=seen, chosen_on=how,
                                                      labels=labels, coef=(old or {}).get("coef"))  # fmt: skip
    return prior


def transfer(
    pred: WeightPredictor,
    space: SearchSpace | str,
    *,
    size: dict[str, Any] | None = None,
    check: int = CHECK_SAMPLE,
    adapt: bool = False,
    cls: type[WeightPredictor],
) -> WeightPredictor:
    """A copy of ``pred`` bound to ``space``: the same trained members and target statistics, its networks
    encoded at ``size`` (``None``: :func:`default_transfer_size`). For a space the predictor was trained on
    (``fit(other_spaces=...)``), ``size=None`` is the width it was trained at and the target statistics are
    that space's. See :meth:`WeightPredictor.transfer`.
    ``cls`` is the class of the copy (the predictor passes its own base class: this module imports none)."""
    from wsnas.search_spaces import SearchSpace, get_space

    pred._require_fitted("transfer")
    space_obj = get_space(space) if isinstance(space, str) else space
    if not isinstance(space_obj, SearchSpace):
        raise TypeError(f"transfer needs a SearchSpace or a registered space name, got {type(space).__name__}")
    if size is not None and not isinstance(size, dict):
        raise TypeError(f"size must be a dict of {space_obj.name!r} build keywords or None, got {size!r}")
    if isinstance(check, bool) or not isinstance(check, int) or check < 1:
        raise ValueError(f"check must be an int >= 1, got {check!r}")
    # a space the predictor was trained on (fit with other_spaces): its training width and target statistics
    trained = ((pred.training_data or {}).get("spaces") or {}).get(space_obj.name)
    if size is None:
        enc_size = dict(trained["size"]) if trained else default_transfer_size(space_obj)
    else:
        enc_size = dict(size)
    seen = seen_layer_types(pred)
    new = cls(
        space_obj, encoder=pred.encoder, ensemble=pred.ensemble, seed=pred.seed, size=enc_size,
        init=pred.candidates.init, device=pred.device,
    )  # fmt: skip
    for dst, src in zip(new.members, pred.members):
        dst.load_state_dict(src.state_dict())
    used = layer_types(new.candidates, n=check, seed=pred.seed)  # also proves the space builds at this size
    new.target = {**pred.target, "space": pred.target.get("space", pred.space.name)}
    if trained:  # scores in that space's own units, and fine-tuning keeps them (no re-standardising)
        new.target.update(mean=trained["mean"], std=trained["std"], space=space_obj.name)
    new.training_data = copy.deepcopy(pred.training_data)
    # the pretrained encoder (if any) travels too: a fit on the new space starts from it
    new.pretraining = copy.deepcopy(getattr(pred, "pretraining", None))
    pretrained = getattr(pred, "_pretrained", None)
    new._pretrained = None if pretrained is None else {k: v.clone() for k, v in pretrained.items()}
    new.layer_types = list(seen)
    new.fitted = True
    adapted = adapt_unseen(new, seen, used) if adapt else {}
    new.prior = transferred_prior(pred, new, refresh=bool(adapted))
    unseen = warn_unseen(seen, used, f"search space {space_obj.name!r}", stacklevel=4)
    new.history = copy.deepcopy(pred.history) + [
        {
            "event": "transfer",
            "from_space": pred.space.name,
            "from_size": dict(pred.candidates.size),
            "space": space_obj.name,
            "size": dict(enc_size),
            "unseen_layer_types": unseen,
            "adapted": adapted,
        }
    ]
    return new
