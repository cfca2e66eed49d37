"""Size and cost of a built network: parameter count and FLOPs."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import torch.nn as nn

__all__ = ["count_params", "count_flops"]


def count_params(module: nn.Module, *, trainable_only: bool = False) -> int:
    """Number of parameter elements of ``module`` (shared parameters counted once)."""
    seen: set[int] = set()
    total = 0
    for p in module.parameters():
        if id(p) in seen or (trainable_only and not p.requires_grad):
            continue
        seen.add(id(p))
        total += p.numel()
    return total


def count_flops(module: nn.Module, input_shape: tuple[int, ...] = (3, 32, 32), *, batch_size: int = 1) -> int:
    """FLOPs of one forward pass on a batch ``[batch_size, *input_shape]``, by torch's flop counter.

    A multiply-accumulate counts as two FLOPs (torch's convention). The module is run in eval mode
    without gradients and put back in the mode it was in.
    """
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    if batch_size < 1 or any(int(d) < 1 for d in input_shape):
        raise ValueError(f"count_flops: input_shape and batch_size must be positive, got {input_shape}, {batch_size}")
    try:
        param = next(module.parameters())
        device, dtype = param.device, param.dtype
    except StopIteration:
        device, dtype = torch.device("cpu"), torch.float32
    was_training = module.training
    module.eval()
    try:
        with torch.no_grad(), FlopCounterMode(display=False) as counter:
            module(torch.zeros(batch_size, *input_shape, device=device, dtype=dtype))
    finally:
        module.train(was_training)
    return int(counter.get_total_flops())
