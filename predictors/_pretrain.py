"""Pretraining the weight encoder without labels: regress the costless targets of many architectures.

A trained architecture costs CPU-seconds to minutes; its zero-cost proxies (:data:`ZERO_COST_PROXIES`:
synflow, NASWOT, SNIP, grad-norm, Jacobian covariance, params, FLOPs) cost a tenth of a second. So the
encoder first learns, on as many architectures as the space offers (all 15,625 NB201 cells), to predict
those proxies from the parameter graph of the generated weights; the labelled fit then starts from that
encoder and reads the predicted proxies beside the pooled state (``EncoderConfig.aux_outputs``).

Targets are made comparable by a rank-Gaussian transform of each proxy over the pretraining set
(:func:`gaussianise`): a proxy's scale, sign conventions and ``-inf`` of broken networks stop mattering.
"""

from __future__ import annotations

import copy
import dataclasses
import math
import os
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
import torch.nn.functional as F

from wsnas.encoding import ParamGraph, batch_graphs
from wsnas.predictors._encoder import WeightEncoder
from wsnas.predictors._proxy_cache import ProxyCache
from wsnas.predictors._training import check_positive, finite_or_none, progress_bar, spearman

if TYPE_CHECKING:
    from wsnas._arch import Arch
    from wsnas.predictors._predictor import WeightPredictor
    from wsnas.search_spaces import SearchSpace
    from wsnas.training import Task

__all__ = [
    "gaussianise", "costless_targets", "proxy_key", "train_auxiliary", "pretrain", "start_state", "param_groups",
    "space_sets",
]  # fmt: skip


def gaussianise(values: np.ndarray, names: Sequence[str]) -> tuple[np.ndarray, list[str]]:
    """``[n, P]`` raw proxy values -> ``([n, P'], names')``: each column's ranks mapped to standard normal
    quantiles (ties share their mean rank; ``-inf`` ranks lowest), constant columns dropped.

    Raises:
        ValueError: not a 2-D matrix with a name per column, a NaN, fewer than 3 rows, no varying column.
    """
    from scipy.stats import norm, rankdata

    m = np.asarray(values, dtype=np.float64)
    if m.ndim != 2 or m.shape[1] != len(names):
        raise ValueError(f"targets must be [n, {len(names)}] (a column per name), got shape {list(m.shape)}")
    if np.isnan(m).any():
        raise ValueError("pretraining targets must not be NaN (-inf and +inf are ranked)")
    if m.shape[0] < 3:
        raise ValueError(f"pretraining needs at least 3 architectures, got {m.shape[0]}")
    m = np.nan_to_num(m, neginf=-np.finfo(np.float64).max, posinf=np.finfo(np.float64).max)
    cols, kept = [], []
    for j, name in enumerate(names):
        if np.ptp(m[:, j]) == 0:
            continue
        cols.append(norm.ppf((rankdata(m[:, j]) - 0.5) / m.shape[0]))
        kept.append(str(name))
    if not cols:
        raise ValueError(f"every pretraining target is constant over the {m.shape[0]} architectures: nothing to learn")
    return np.stack(cols, axis=1), kept


def costless_targets(
    space: SearchSpace,
    archs: Sequence[Arch],
    *,
    task: Task | None = None,
    size: dict[str, Any] | None = None,
    batch_size: int = 64,
    seed: int = 0,
    progress: bool = True,
    cache: ProxyCache | None = None,
) -> tuple[np.ndarray, list[str]]:
    """``([n, P], names)``: every zero-cost proxy of each architecture, raw (before :func:`gaussianise`).

    The setting of :class:`~wsnas.predictors.ZeroCostScores`: the network built at ``size`` (default: the
    space's proxy size) with weights generated from ``seed``, one fixed batch of ``task`` (default
    :func:`wsnas.synthetic`). About 0.1 CPU-s an architecture for NB201 at C=8 (26 minutes for all 15,625).
    With ``cache`` (made with :func:`proxy_key` of the same settings), rows it holds are not computed again
    and new ones are added to it; it is written if the computation stops.
    """
    import json

    from tqdm import tqdm

    from wsnas.predictors._zc_gbm import ZeroCostScores

    scores = ZeroCostScores(space, task=task, batch_size=batch_size, size=size, seed=seed)
    where = f"{space.name}:{json.dumps(dict(space.proxy_size if size is None else size), sort_keys=True)}:"
    rows = []
    try:
        for a in tqdm(archs, desc="costless targets", unit="arch", disable=not progress):
            row = None if cache is None else cache.get(where + a.hash)
            if row is None:
                row = scores.matrix([a])[0]
                if cache is not None:
                    cache.put(where + a.hash, row)
            rows.append(row)
    finally:
        if cache is not None:
            cache.save()
    return (np.stack(rows) if rows else np.zeros((0, len(scores.names)))), list(scores.names)


def proxy_key(task: Task | None, seed: int, batch_size: int = 64, init: str = "kaiming_normal") -> str:
    """The settings a :class:`~wsnas.predictors._proxy_cache.ProxyCache` of :func:`costless_targets` rows
    is bound to: the task's fingerprint (default :func:`wsnas.synthetic`), the batch size, the seed, the init."""
    from wsnas.training import synthetic

    fingerprint = (task if task is not None else synthetic()).fingerprint
    return f"task={fingerprint};batch={batch_size};seed={seed};init={init}"


def train_auxiliary(
    member: WeightEncoder,
    graphs: list[ParamGraph],
    targets: np.ndarray,
    *,
    epochs: int,
    batch_size: int,
    lr: float,
    seed: int,
    device: torch.device,
    held_out: int = 500,
    progress: bool = True,
) -> dict[str, Any]:
    """Train ``member``'s trunk and pretraining head to regress ``targets [n, A]`` (MSE) from ``graphs``.

    ``held_out`` graphs (at most a fifth, drawn with ``seed``) are kept out to report, per target, the
    Spearman correlation of prediction and target; the state of the best epoch (mean held-out Spearman)
    is kept. Returns the report: epochs, per-epoch mean Spearman, the best epoch's per-target Spearman.
    """
    check_positive(epochs=epochs, batch_size=batch_size)
    y = torch.as_tensor(targets, dtype=torch.float32)
    n = len(graphs)
    rng = np.random.default_rng(seed)
    perm = rng.permutation(n)
    n_val = min(held_out, n // 5)
    val_idx, train_idx = perm[:n_val], perm[n_val:]
    opt = torch.optim.AdamW(member.parameters(), lr=lr, weight_decay=1e-4)
    sched = torch.optim.lr_scheduler.OneCycleLR(
        opt, max_lr=lr, total_steps=epochs * math.ceil(len(train_idx) / batch_size), pct_start=0.1
    )
    bar = progress_bar(epochs, "pretrain", progress)
    best, best_state, best_rhos, curve = -math.inf, None, [], []
    for _ in range(epochs):
        member.train()
        order = rng.permutation(train_idx)
        for i in range(0, len(order), batch_size):
            idx = order[i : i + batch_size]
            g = batch_graphs([graphs[j] for j in idx]).to(device)
            loss = F.mse_loss(member.auxiliary(g), y[torch.as_tensor(idx)].to(device))
            opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(member.parameters(), 1.0)
            opt.step()
            sched.step()
        rhos = _held_out_spearman(member, graphs, val_idx, targets, device) if n_val else []
        score = float(np.nanmean(rhos)) if rhos and not np.isnan(rhos).all() else -float(loss.detach())
        curve.append(score)
        if best_state is None or score > best:
            best, best_state, best_rhos = score, copy.deepcopy(member.state_dict()), rhos
        bar.update(1)
        bar.set_postfix(held_out_spearman=f"{score:.3f}")
    bar.close()
    if best_state is not None:
        member.load_state_dict(best_state)
    # cards are strict JSON: an undefined correlation (a tiny or constant held-out set) is recorded as null
    return {"n": n, "n_held_out": int(n_val), "epochs": epochs, "lr": lr, "batch_size": batch_size,
            "curve": [finite_or_none(c) for c in curve],
            "held_out_spearman": [finite_or_none(r) for r in best_rhos]}  # fmt: skip


def _held_out_spearman(
    member: WeightEncoder, graphs: list[ParamGraph], idx: np.ndarray, targets: np.ndarray, device: torch.device
) -> list[float]:
    member.eval()
    out = []
    with torch.inference_mode():
        for i in range(0, len(idx), 128):
            g = batch_graphs([graphs[j] for j in idx[i : i + 128]]).to(device)
            out.append(member.auxiliary(g).double().cpu().numpy())
    pred = np.concatenate(out)
    return [float(spearman(pred[:, j], targets[idx, j])) for j in range(targets.shape[1])]  # nan: undefined


def space_sets(
    other_spaces: Mapping[Any, Any], *, labelled: bool, own: str | None = None
) -> list[tuple[SearchSpace, list[Arch], np.ndarray | None]]:
    """``other_spaces`` of :meth:`WeightPredictor.fit` (space or name -> ``(archs, targets)``) or of
    :meth:`~WeightPredictor.pretrain` (-> archs, or ``(archs, targets [m, P])``) as validated
    ``(space, archs, targets or None)``.

    Raises:
        ValueError: a space named twice (``own`` counts), targets of another length.
        wsnas.InvalidArchitecture: an architecture that is not one of its space's.
    """
    from wsnas._arch import Arch
    from wsnas.predictors._training import as_targets
    from wsnas.search_spaces import get_space

    out: list[tuple[SearchSpace, list[Arch], np.ndarray | None]] = []
    seen = {own} if own else set()
    for name, value in other_spaces.items():
        space = get_space(name) if isinstance(name, str) else name
        if space.name in seen:
            raise ValueError(f"other_spaces names {space.name!r} twice (the predictor's own space counts)")
        seen.add(space.name)
        paired = labelled or (isinstance(value, tuple) and len(value) == 2 and not isinstance(value[0], (str, Arch)))
        archs, targets = value if paired else (value, None)
        valid = [space.from_string(a) if isinstance(a, str) else space.validate(a) for a in archs]
        if targets is not None:
            targets = as_targets(targets, len(valid)) if labelled else np.asarray(targets, dtype=np.float64)
        out.append((space, valid, targets))
    return out


def _gaussianise_as(raw: np.ndarray, names: Sequence[str], kept: Sequence[str]) -> np.ndarray:
    """``raw [n, P]`` (columns ``names``) -> ``[n, len(kept)]`` rank-Gaussian in the columns ``kept``; a column
    constant over these rows (or missing) is all zeros (its mean)."""
    m = np.asarray(raw, dtype=np.float64)
    out = np.zeros((m.shape[0], len(kept)))
    for j, name in enumerate(kept):
        if name in names and np.ptp(np.nan_to_num(m[:, list(names).index(name)], neginf=-1e308, posinf=1e308)):
            col = m[:, [list(names).index(name)]]
            out[:, j] = gaussianise(col, [name])[0][:, 0]
    return out


def pretrain(
    pred: WeightPredictor,
    arch_list: list[Arch],
    targets: np.ndarray | None,
    target_names: Sequence[str] | None,
    *,
    task: Task | None,
    epochs: int,
    batch_size: int,
    lr: float,
    progress: bool,
    other_spaces: Sequence[tuple[SearchSpace, list[Arch], np.ndarray | None]] = (),
    other_sizes: dict[str, dict[str, Any]] | None = None,
    checkpoint: str | os.PathLike[str] | None = None,
) -> WeightPredictor:
    """:meth:`WeightPredictor.pretrain` on validated architectures (``checkpoint``: the proxies computed so far,
    see :mod:`wsnas.predictors._proxy_cache`; removed when pretraining completes).

    ``targets`` ``None``: :func:`costless_targets` on ``task``. The varying columns, rank-Gaussian
    (:func:`gaussianise`), become the outputs of a pretraining head; member 0's encoder and head are
    trained on them (:func:`train_auxiliary`), its best state is kept as ``pred._pretrained`` (where every
    fit starts, :func:`start_state`) and each member gets it with a score head drawn with its own seed.
    """
    cache = None
    if checkpoint is not None and (targets is None or any(o is None for *_, o in other_spaces)):
        cache = ProxyCache(checkpoint, proxy_key(task, pred.seed))
    if targets is None:
        raw, names = costless_targets(pred.space, arch_list, task=task, seed=pred.seed, progress=progress,
                                      cache=cache)  # fmt: skip
        source = {"source": "zero-cost proxies", "task": task.name if task is not None else "synthetic"}
    else:
        raw = np.asarray(targets, dtype=np.float64)
        names = list(target_names) if target_names is not None else [f"t{j}" for j in range(raw.shape[-1])]
        source = {"source": "given"}
    if len(raw) != len(arch_list):
        raise ValueError(f"one row of targets per architecture is needed, got {len(arch_list)} and {len(raw)}")
    z, kept = gaussianise(raw, names)
    pred.encoder = dataclasses.replace(pred.encoder, aux_outputs=len(kept))
    for i in range(pred.ensemble):
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(pred.seed + i)
            pred.members[i] = WeightEncoder(pred.encoder).to(pred.device)
    graphs = pred._single_graphs(arch_list)
    spaces: dict[str, Any] = {}
    if other_spaces:  # each space's targets ranked on their own; its networks at its transfer width
        from wsnas.encoding import CandidateGraphs
        from wsnas.predictors._training import space_graphs
        from wsnas.predictors._transfer import default_transfer_size

        spaces[pred.space.name] = {"n": len(arch_list), "size": dict(pred.candidates.size)}
        parts = [z]
        for space, archs, other in other_spaces:
            size = (other_sizes or {}).get(space.name) or default_transfer_size(space)
            if other is None:
                if targets is not None:
                    raise ValueError(f"{space.name!r} has no targets: with targets given, give every space's")
                other, other_names = costless_targets(space, archs, task=task, seed=pred.seed, progress=progress,
                                                      cache=cache)  # fmt: skip
            else:
                other_names = list(names)
            if len(other) != len(archs) or np.asarray(other).shape[-1] != len(other_names):
                raise ValueError(f"{space.name!r}: one row of {len(names)} targets per architecture is needed")
            parts.append(_gaussianise_as(other, other_names, kept))
            graphs += space_graphs(CandidateGraphs(space, size=size, init=pred.candidates.init), archs, pred.seed)
            spaces[space.name] = {"n": len(archs), "size": dict(size)}
        z = np.concatenate(parts)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(pred.seed)
        report = train_auxiliary(pred.members[0], graphs, z, epochs=epochs, batch_size=batch_size, lr=lr,
                                 seed=pred.seed, device=pred.device, progress=progress)  # fmt: skip
    pred._pretrained = {k: v.detach().cpu().clone() for k, v in pred.members[0].state_dict().items()}
    for i, member in enumerate(pred.members):
        member.load_state_dict(start_state(pred, i))
    pred.pretraining = {**source, "targets": kept, "space": pred.space.name, **report}
    if spaces:
        pred.pretraining["spaces"] = spaces
    pred.fitted = False
    pred.history = []
    if cache is not None:
        cache.remove()
    return pred


def start_state(pred: WeightPredictor, i: int) -> dict[str, torch.Tensor]:
    """Where member ``i``'s fit starts: the pretrained encoder (if any) with a fresh score head drawn
    with ``seed + i``, else a fresh encoder drawn with ``seed + i``."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(pred.seed + i)
        fresh = WeightEncoder(pred.encoder).state_dict()
    if pred._pretrained is None:
        return fresh
    return {k: (v if k.startswith("head.") else pred._pretrained[k]) for k, v in fresh.items()}


def param_groups(pred: WeightPredictor, member: WeightEncoder, lr: float, scale: float) -> list[dict[str, Any]]:
    """The score head at ``lr``; the rest at ``lr * scale`` when pretrained (frozen at 0), else all at ``lr``."""
    if pred._pretrained is None:
        return [{"params": list(member.parameters()), "lr": lr}]
    head = [p for n, p in member.named_parameters() if n.startswith("head.")]
    trunk = [p for n, p in member.named_parameters() if not n.startswith("head.")]
    for p in trunk:
        p.requires_grad_(scale > 0)
    return [{"params": head, "lr": lr}] + ([{"params": trunk, "lr": lr * scale}] if scale > 0 else [])
