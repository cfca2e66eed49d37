"""Zero-cost proxies: training-free scores of an untrained network, the baselines of the weight encoder.

Each proxy takes a built network and one batch of data and returns a float where higher predicts a
better network. All are computed on a deep copy, so the caller's network (and its generated weights)
is left as it was. Definitions follow the papers that introduced them:

* ``synflow`` (Tanaka et al., 2020): sum over weights of ``|theta * dR/dtheta|`` where ``R`` is the sum of
  the output of the network with all weights replaced by their absolute values, on an all-ones input,
  in float64, with batch norm in eval mode (its running statistics are the identity at initialisation).
* ``naswot`` (Mellor et al., 2021): log-determinant of the Hamming-similarity kernel of the binary ReLU
  activation codes of the batch.
* ``snip`` (Lee et al., 2019): sum of ``|theta * dL/dtheta|`` over conv and linear weights, cross-entropy loss.
* ``grad_norm`` (Abdelfattah et al., 2021): sum over conv and linear weights of ``||dL/dtheta||_2``.
* ``jacob_cov`` (Mellor et al., 2020, v1): ``-sum(log(v + k) + 1/(v + k))`` over the eigenvalues ``v`` of
  the correlation matrix of the input Jacobians of the batch, ``k = 1e-5``.
* ``params`` and ``flops``: size of the network (FLOPs of one input).
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable

import torch
import torch.nn as nn
import torch.nn.functional as F

from wsnas._netstats import count_flops, count_params

__all__ = ["ZERO_COST_PROXIES", "zero_cost", "zero_cost_all"]


def _weights(net: nn.Module) -> list[torch.Tensor]:
    return [m.weight for m in net.modules() if isinstance(m, (nn.Conv2d, nn.Linear))]


def _loss_grads(net: nn.Module, x: torch.Tensor, y: torch.Tensor) -> list[tuple[torch.Tensor, torch.Tensor]]:
    net.train()
    net.zero_grad(set_to_none=True)
    loss = F.cross_entropy(net(x), y)
    weights = _weights(net)
    grads = torch.autograd.grad(loss, weights, allow_unused=True)
    return [(w, torch.zeros_like(w) if g is None else g) for w, g in zip(weights, grads)]


def synflow(net: nn.Module, x: torch.Tensor, y: torch.Tensor) -> float:
    """``sum |theta * dR/dtheta|`` with ``R = sum(f_|theta|(ones))``, in float64. ``x [B, C, H, W]`` gives the shape."""
    net = net.double().eval()
    with torch.no_grad():
        for p in net.parameters():
            p.abs_()
    params = [p for p in net.parameters() if p.requires_grad]
    out = net(torch.ones(1, *x.shape[1:], dtype=torch.float64))
    grads = torch.autograd.grad(out.sum(), params, allow_unused=True)
    total = sum(float((p.detach() * g).abs().sum()) for p, g in zip(params, grads) if g is not None)
    return math.log(total) if total > 0 else -math.inf


def naswot(net: nn.Module, x: torch.Tensor, y: torch.Tensor) -> float:
    """``log|det K|`` with ``K_ij`` = number of ReLUs on which samples i and j agree. ``x [B, C, H, W]``."""
    codes: list[torch.Tensor] = []

    def hook(_module: nn.Module, _inputs: tuple, output: torch.Tensor) -> None:
        codes.append((output.detach().flatten(1) > 0).double())

    handles = [m.register_forward_hook(hook) for m in net.modules() if isinstance(m, nn.ReLU)]
    try:
        net.train()
        with torch.no_grad():
            net(x)
    finally:
        for h in handles:
            h.remove()
    if not codes:
        return 0.0
    c = torch.cat(codes, dim=1)  # [B, total ReLU units]
    k = c @ c.T + (1 - c) @ (1 - c).T  # [B, B]
    sign, logdet = torch.linalg.slogdet(k)
    return float(logdet) if sign > 0 else -math.inf


def snip(net: nn.Module, x: torch.Tensor, y: torch.Tensor) -> float:
    """``sum |theta * dL/dtheta|`` over conv and linear weights (cross-entropy on ``x [B, C, H, W]``, ``y [B]``)."""
    return float(sum((w.detach() * g).abs().sum() for w, g in _loss_grads(net, x, y)))


def grad_norm(net: nn.Module, x: torch.Tensor, y: torch.Tensor) -> float:
    """``sum ||dL/dtheta||_2`` over conv and linear weights."""
    return float(sum(g.norm() for _, g in _loss_grads(net, x, y)))


def jacob_cov(net: nn.Module, x: torch.Tensor, y: torch.Tensor) -> float:
    """Score of the correlation of input Jacobians ``d sum(f(x_b)) / d x_b`` across the batch.

    A network whose output does not depend on its input (an NB201 cell of ``none`` ops) has a zero
    Jacobian and gets the lowest score the formula gives (every eigenvalue 0).
    """
    net.train()
    x = x.detach().clone().requires_grad_(True)
    out = net(x).sum()
    (jac,) = torch.autograd.grad(out, x, allow_unused=True) if out.requires_grad else (None,)
    j = (torch.zeros_like(x) if jac is None else jac).flatten(1).double()  # [B, C*H*W]
    corr = torch.corrcoef(j)
    corr = torch.nan_to_num(corr, nan=0.0)
    v = torch.linalg.eigvalsh(corr)
    k = 1e-5
    return float(-(torch.log(v.clamp_min(0) + k) + 1.0 / (v.clamp_min(0) + k)).sum())


def params(net: nn.Module, x: torch.Tensor, y: torch.Tensor) -> float:
    """Number of parameters."""
    return float(count_params(net))


def flops(net: nn.Module, x: torch.Tensor, y: torch.Tensor) -> float:
    """FLOPs of one input of ``x``'s shape."""
    return float(count_flops(net, tuple(x.shape[1:])))


#: name -> proxy ``(net, x [B, C, H, W], y [B]) -> float`` (higher predicts better)
ZERO_COST_PROXIES: dict[str, Callable[[nn.Module, torch.Tensor, torch.Tensor], float]] = {
    "synflow": synflow,
    "naswot": naswot,
    "snip": snip,
    "grad_norm": grad_norm,
    "jacob_cov": jacob_cov,
    "params": params,
    "flops": flops,
}


def zero_cost(name: str, net: nn.Module, x: torch.Tensor, y: torch.Tensor) -> float:
    """Compute one proxy on a copy of ``net``; ``x [B, C, H, W]`` float inputs, ``y [B]`` int64 labels.

    Raises:
        KeyError: unknown proxy name (the message lists the known ones).
    """
    if name not in ZERO_COST_PROXIES:
        raise KeyError(f"unknown zero-cost proxy {name!r}; known proxies: {', '.join(ZERO_COST_PROXIES)}")
    if x.ndim < 2 or y.ndim != 1 or x.shape[0] != y.shape[0]:
        raise ValueError(f"zero_cost expects x [B, ...] and y [B], got {tuple(x.shape)} and {tuple(y.shape)}")
    return ZERO_COST_PROXIES[name](copy.deepcopy(net), x, y)


def zero_cost_all(net: nn.Module, x: torch.Tensor, y: torch.Tensor) -> dict[str, float]:
    """Every proxy of :data:`ZERO_COST_PROXIES` on ``net`` (each on its own copy)."""
    return {name: zero_cost(name, net, x, y) for name in ZERO_COST_PROXIES}
