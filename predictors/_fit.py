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
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from wsnas.encoding import ParamGraph, batch_graphs
from wsnas.predictors._checkpoint import FitCheckpoint, FitState
from wsnas.predictors._pretrain import param_groups, start_state
from wsnas.predictors._training import ranking_loss, spearman

if TYPE_CHECKING:
    from wsnas.predictors._encoder import WeightEncoder
    from wsnas.predictors._predictor import WeightPredictor

__all__ = ["fit_members", "train_epoch"]


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
    val_g: list[ParamGraph],
    y_val: np.ndarray,
    *,
    epochs: int,
    batch_size: int,
    lr: float,
    weight_decay: float,
    patience: int,
    regression_weight: float,
    pretrained_lr_scale: float,
    bar: Any,
    checkpoint: FitCheckpoint | None = None,
) -> list[float | None]:
    """Train every member of ``pred`` on ``(train_g, z [n_train])``, early-stopping on the Spearman of
    ``val_g`` against ``y_val [n_val]`` (none: ``epochs`` epochs each); each keeps its best epoch. With
    ``checkpoint``, progress is saved as the fit goes and a saved state (``checkpoint.resumed``) is
    resumed. Returns each member's best validation Spearman (``None`` without validation)."""
    state = checkpoint.resumed if checkpoint is not None and checkpoint.resumed is not None else FitState(member=0)
    for i, done in enumerate(state.done):
        pred.members[i].load_state_dict(done)
        bar.update(epochs)
    member_best = list(state.member_best)
    for i in range(state.member, pred.ensemble):
        member = pred.members[i]
        member.load_state_dict(start_state(pred, i))  # fit starts from scratch (or the pretrained encoder)
        opt = torch.optim.AdamW(param_groups(pred, member, lr, pretrained_lr_scale), weight_decay=weight_decay)
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
            train_epoch(pred, member, opt, train_g, z, rng, batch_size, regression_weight)
            bar.update(1)
            if val_g:
                rho = spearman(pred._raw_scores(member, val_g), y_val)
                rho = -1.0 if math.isnan(rho) else rho
                if rho > best:
                    best, best_state, waited = rho, copy.deepcopy(member.state_dict()), 0
                else:
                    waited += 1
                bar.set_postfix(member=i, val_spearman=f"{best:.3f}")
                stopped = waited >= patience
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
        member_best.append(best if val_g else None)
        state = FitState(member=i + 1, done=[*state.done, copy.deepcopy(member.state_dict())], member_best=member_best)
        if checkpoint is not None and i + 1 < pred.ensemble:
            checkpoint.save(state, force=True)
    return member_best
