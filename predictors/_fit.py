"""The training loops of :class:`~wsnas.predictors.WeightPredictor`: one epoch of a member, and every member
of a fit with early stopping and (optionally) a checkpoint that a stopped fit resumes from.

Member ``i`` starts from :func:`~wsnas.predictors._pretrain.start_state`, draws its data order from
``numpy.random.default_rng([seed, i])``, keeps the epoch of best validation Spearman and stops after
``patience`` epochs without one. Nothing else is random (the encoder has no dropout), so a fit resumed
from a checkpoint taken at an epoch boundary ends with the same members as one that never stopped.
"""

from __future__ import annotations

import copy
import math
import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from wsnas.encoding import ParamGraph, batch_graphs
from wsnas.predictors._checkpoint import FitCheckpoint, FitState, fit_key, open_checkpoint
from wsnas.predictors._pretrain import param_groups, start_state
from wsnas.predictors._training import finite_or_none, progress_bar, ranking_loss, space_graphs, spearman

if TYPE_CHECKING:
    from wsnas._arch import Arch
    from wsnas.encoding import CandidateGraphs
    from wsnas.predictors._encoder import WeightEncoder
    from wsnas.predictors._predictor import WeightPredictor
    from wsnas.search_spaces import SearchSpace

__all__ = ["FitOptions", "fit_members", "fit_spaces", "train_epoch"]


@dataclass(frozen=True)
class FitOptions:
    """The training options of :meth:`WeightPredictor.fit` (defaults and meaning there), checked there and
    passed on as one."""

    val_fraction: float
    epochs: int
    batch_size: int
    lr: float
    weight_decay: float
    patience: int
    regression_weight: float
    pretrained_lr_scale: float


def train_epoch(
    pred: WeightPredictor,
    member: WeightEncoder,
    opt: torch.optim.Optimizer,
    graphs: list[ParamGraph],
    z: torch.Tensor,
    rng: np.random.Generator,
    batch_size: int,
    regression_weight: float,
) -> None:
    """One pass of ``member`` over ``graphs`` in ``rng``'s order; ``z [n]`` are the standardised targets."""
    member.train()
    order = rng.permutation(len(graphs))
    for i in range(0, len(order), batch_size):
        idx = order[i : i + batch_size]
        if len(idx) < 2:  # a lone straggler has no pairs to rank
            continue
        g = batch_graphs([graphs[j] for j in idx]).to(pred.device)
        zb = z[torch.as_tensor(idx)].to(pred.device)  # [b]
        s = member(g)  # [b]
        loss = ranking_loss(s, zb, regression_weight)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(member.parameters(), 1.0)
        opt.step()


def _opt_tensors(opt: torch.optim.Optimizer) -> dict[int, dict[str, torch.Tensor]]:
    """The per-parameter state of ``opt`` (AdamW: step, exp_avg, exp_avg_sq), every value a tensor."""
    out: dict[int, dict[str, torch.Tensor]] = {}
    for p, state in opt.state_dict()["state"].items():
        out[int(p)] = {k: v if torch.is_tensor(v) else torch.tensor(v) for k, v in state.items()}
    return out


def fit_members(
    pred: WeightPredictor,
    train_g: list[ParamGraph],
    z: torch.Tensor,
    validate: Callable[[WeightEncoder], float] | None,
    options: FitOptions,
    *,
    bar: Any,
    checkpoint: FitCheckpoint | None = None,
) -> list[float | None]:
    """Train every member of ``pred`` on ``(train_g, z [n_train])``, early-stopping on ``validate(member)``
    (higher is better: a validation Spearman; ``None``: ``epochs`` epochs each); each keeps its best epoch. With
    ``checkpoint``, progress is saved as the fit goes and a saved state (``checkpoint.resumed``) is
    resumed. Returns each member's best validation score (``None`` without ``validate``)."""
    o, epochs = options, options.epochs
    state = checkpoint.resumed if checkpoint is not None and checkpoint.resumed is not None else FitState(member=0)
    for i, done in enumerate(state.done):
        pred.members[i].load_state_dict(done)
        bar.update(epochs)
    member_best = list(state.member_best)
    for i in range(state.member, pred.ensemble):
        member = pred.members[i]
        member.load_state_dict(start_state(pred, i))  # fit starts from scratch (or the pretrained encoder)
        opt = torch.optim.AdamW(param_groups(pred, member, o.lr, o.pretrained_lr_scale), weight_decay=o.weight_decay)
        rng = np.random.default_rng([pred.seed, i])
        best, best_state, waited, start = -math.inf, None, 0, 0
        if i == state.member and state.weights is not None:  # resume this member mid-way
            member.load_state_dict(state.weights)
            opt.load_state_dict({"state": state.optimizer or {}, "param_groups": opt.state_dict()["param_groups"]})
            rng.bit_generator.state = state.rng
            best, best_state, waited, start = state.best, state.best_weights, state.waited, state.epoch
            bar.update(start)
        stopped = False
        for epoch in range(start, epochs):
            train_epoch(pred, member, opt, train_g, z, rng, o.batch_size, o.regression_weight)
            bar.update(1)
            if validate is not None:
                rho = validate(member)
                rho = -1.0 if math.isnan(rho) else rho
                if rho > best:
                    best, best_state, waited = rho, copy.deepcopy(member.state_dict()), 0
                else:
                    waited += 1
                bar.set_postfix(member=i, val_spearman=f"{best:.3f}")
                stopped = waited >= o.patience
            if checkpoint is not None and not stopped and epoch + 1 < epochs and checkpoint.due():
                current = FitState(i, epoch + 1, best, waited, rng.bit_generator.state, state.done, member_best)
                current.weights, current.best_weights = member.state_dict(), best_state
                current.optimizer = _opt_tensors(opt)
                checkpoint.save(current, force=True)
            if stopped:
                bar.update(epochs - 1 - epoch)
                break
        if best_state is not None:
            member.load_state_dict(best_state)
        member_best.append(best if validate is not None else None)
        state = FitState(member=i + 1, done=[*state.done, copy.deepcopy(member.state_dict())], member_best=member_best)
        if checkpoint is not None and i + 1 < pred.ensemble:
            checkpoint.save(state, force=True)
    return member_best


def fit_spaces(
    pred: WeightPredictor,
    data: Sequence[tuple[SearchSpace, list[Arch], np.ndarray]],
    *,
    sizes: Mapping[str, dict[str, Any]],
    options: FitOptions,
    target_name: str,
    progress: bool,
    checkpoint: str | os.PathLike[str] | None,
    size_prior: bool = True,
) -> None:
    """:meth:`WeightPredictor.fit` on validated ``(space, archs, targets [n])`` sets, ``pred.space``'s first.

    Each set holds out its own ``val_fraction`` (at least 3; set ``k``'s split drawn with
    ``default_rng(seed)`` for ``k = 0``, ``default_rng([seed, k])`` after) and has its targets standardised
    by its own training mean and std, so every space contributes ranks on one scale; set 0's statistics
    become ``pred.target``. Other spaces' networks are encoded at ``sizes[name]`` (default
    :func:`~wsnas.predictors.default_transfer_size`). Early stopping reads the mean over sets of the
    validation Spearman. With several sets the card's ``training_data["spaces"]`` records each one's size,
    counts and target statistics (what :meth:`~WeightPredictor.transfer` to that space uses). With
    ``size_prior`` each space's weight of the size prior is chosen on its validation set (see
    :mod:`wsnas.predictors._prior`).
    """
    from wsnas.encoding import CandidateGraphs
    from wsnas.predictors._transfer import default_transfer_size, layer_types

    val_fraction, epochs, regression_weight = options.val_fraction, options.epochs, options.regression_weight

    sets, train_g, z_parts, types, val_sets, train_sets = [], [], [], set(), [], []
    for k, (space, archs, y) in enumerate(data):
        if k == 0:
            candidates = pred.candidates
        else:
            size = sizes.get(space.name) or default_transfer_size(space)
            candidates = CandidateGraphs(space, size=size, init=pred.candidates.init)
        n_val = max(round(val_fraction * len(archs)), 3) if val_fraction > 0 else 0
        if len(archs) < 4 or len(archs) - n_val < 2:
            raise ValueError(
                f"fit needs at least 4 architectures of {space.name!r} and 2 more than the {n_val} it holds out "
                f"for validation (val_fraction={val_fraction}, at least 3), got {len(archs)}"
            )
        perm = np.random.default_rng(pred.seed if k == 0 else [pred.seed, k]).permutation(len(archs))
        val_idx, train_idx = np.sort(perm[:n_val]), np.sort(perm[n_val:])
        std = float(y[train_idx].std())
        stats = {"mean": float(y[train_idx].mean()), "std": std if std > 0 else 1.0}
        graphs = space_graphs(candidates, archs, pred.seed)
        train_g += [graphs[i] for i in train_idx]
        z_parts.append((y[train_idx] - stats["mean"]) / stats["std"])
        sets.append({"space": space.name, "size": dict(candidates.size), "n": len(archs), "n_val": len(val_idx),
                     **stats, "val": ([graphs[i] for i in val_idx], y[val_idx])})  # fmt: skip
        val_sets.append((candidates, val_idx, archs, graphs, y))
        train_sets.append(train_idx)
        types.update(layer_types(candidates, archs, seed=pred.seed))
    pred.target = {"name": target_name, "mean": sets[0]["mean"], "std": sets[0]["std"]}
    z = torch.as_tensor(np.concatenate(z_parts), dtype=torch.float32)
    validation = [s["val"] for s in sets if s["n_val"]]

    def validate(member: WeightEncoder) -> float:
        return float(np.mean([spearman(pred._raw_scores(member, g), yv) for g, yv in validation]))

    ckpt = None
    if checkpoint is not None:
        keyed = {**asdict(options), "sizes": [s["size"] for s in sets]}
        names = [f"{space.name}:{space.to_string(a)}" for space, archs, _ in data for a in archs]
        ckpt = open_checkpoint(checkpoint, fit_key(pred, names, np.concatenate([y for *_, y in data]), keyed))
    bar = progress_bar(pred.ensemble * epochs, "fit", progress)
    member_best = fit_members(
        pred, train_g, z, validate if validation else None, options, bar=bar, checkpoint=ckpt,
    )  # fmt: skip
    bar.close()
    pred.fitted = True
    # every member scores each set's graphs once: [K, n] per set, read for the record, the loss and the prior
    set_scores = [np.stack([pred._raw_scores(m, graphs) for m in pred.members]) for _, _, _, graphs, _ in val_sets]
    per_space = [
        spearman(ks[:, val_idx].mean(0), y[val_idx]) if len(val_idx) else None
        for ks, (_, val_idx, _, _, y) in zip(set_scores, val_sets)
    ]  # each set's validation Spearman
    n, n_val = sum(s["n"] for s in sets), sum(s["n_val"] for s in sets)
    pred.training_data = {"source": "arrays", "n": n, "n_val": n_val, "target": target_name}
    pred.layer_types = sorted(types)
    event = {"event": "fit", "space": pred.space.name, "size": dict(pred.candidates.size), "n": n, "n_val": n_val}
    event.update({"epochs": epochs, "lr": options.lr, "pretrained": pred._pretrained is not None})
    event["val_spearman"] = finite_or_none(per_space[0])
    event["member_val_spearman"] = [finite_or_none(b) for b in member_best]
    if len(sets) > 1:
        spaces = {s["space"]: {k: v for k, v in s.items() if k not in ("space", "val")} for s in sets}
        for entry, rho in zip(spaces.values(), per_space):
            entry["val_spearman"] = finite_or_none(rho)
        pred.training_data["spaces"] = spaces
        event["spaces"] = copy.deepcopy(spaces)
    train_scores = np.concatenate([ks[:, t] for ks, t in zip(set_scores, train_sets)], axis=1)  # [K, n_train]
    event["train_loss"] = pred._loss(train_g, z, regression_weight, scores=train_scores)
    if size_prior:
        pred.prior = fit_prior(pred, sets, val_sets, [ks.mean(0) for ks in set_scores])
        event["prior_weights"] = {name: e["weight"] for name, e in pred.prior["spaces"].items()}
    else:
        pred.prior = None
    pred.history = [event]
    if ckpt is not None:
        ckpt.remove()


def fit_prior(
    pred: WeightPredictor,
    sets: Sequence[dict[str, Any]],
    val_sets: Sequence[tuple[CandidateGraphs, np.ndarray, list[Arch], list[ParamGraph], np.ndarray]],
    set_scores: Sequence[np.ndarray],
) -> dict[str, Any]:
    """The size prior of a fitted ``pred``: each set's size feature (:func:`~wsnas.predictors._prior.choose_coef`
    on all its labelled architectures) and weight (0 without a validation set) from the ensemble's Spearman on
    its validation set, the parameter count's on all its labelled architectures and theirs with
    each other on all its architectures (:func:`~wsnas.predictors._prior.choose_weight`); its statistics from
    all its architectures (their graphs are built already). ``val_sets``: each set's candidates, validation
    indices, architectures, graphs and targets; ``set_scores``: each set's ensemble mean score ``[n]`` of all
    its architectures."""
    from wsnas.predictors import _prior

    spaces = {}
    for s, (candidates, val_idx, every, every_g, every_y), every_scores in zip(sets, val_sets, set_scores):
        features = _prior.arch_features(candidates, every)  # [n, 2], read once for the choice and the statistics
        coef = _prior.choose_coef(features, every_y, pred.seed) if len(val_idx) else _prior.PARAMS_ONLY
        values = features @ np.asarray(coef)
        entry = _prior.space_prior(pred, candidates, 0.0, seen=True, chosen_on="validation", sample=(every, every_g),
                                   sample_scores=every_scores, labels=len(every) if len(val_idx) else 0, coef=coef,
                                   sample_values=values)  # fmt: skip
        if len(val_idx):  # the validation cells' scores and sizes are those of the whole set, indexed
            every_sizes = _prior.standardised_sizes(candidates, every, entry, logs=values)
            entry["weight"] = _prior.choose_weight(*_prior.correlations(
                every_scores[val_idx], every_y[val_idx], every_sizes[val_idx], labelled_sizes=every_sizes,
                labelled_targets=every_y, space_scores=every_scores, space_sizes=every_sizes,
            ))  # fmt: skip
        spaces[s["space"]] = entry
    return {"feature": "log_params", "unseen_weight": _prior.UNSEEN_WEIGHT, "spaces": spaces}
