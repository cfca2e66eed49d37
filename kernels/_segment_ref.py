"""PyTorch reference of the CSR segment reductions (sum, mean, max): oracle, documentation and CPU path.

Rows ``ptr[s] : ptr[s + 1]`` of ``x [E, F]`` form segment ``s``; ``ptr [S + 1]`` is non-decreasing with
``ptr[0] = 0`` and ``ptr[S] = E``. An empty segment gives 0 and passes no gradient. The gradient of max
goes to the first arg-max row of each (segment, column). Gradients come from autograd on these ops.
"""

from __future__ import annotations

import torch

__all__ = ["segment_max_ref", "segment_mean_ref", "segment_sum_ref"]


def _ids(ptr: torch.Tensor, rows: int) -> torch.Tensor:
    """``[E]`` the segment of each row."""
    counts = ptr[1:] - ptr[:-1]
    return torch.repeat_interleave(torch.arange(counts.numel(), device=ptr.device), counts, output_size=rows)


def segment_sum_ref(x: torch.Tensor, ptr: torch.Tensor) -> torch.Tensor:
    """``[S, F]``: the sum of each segment's rows of ``x [E, F]``."""
    ids = _ids(ptr, x.shape[0])
    return torch.zeros(ptr.numel() - 1, *x.shape[1:], dtype=x.dtype, device=x.device).index_add(0, ids, x)


def segment_mean_ref(x: torch.Tensor, ptr: torch.Tensor) -> torch.Tensor:
    """``[S, F]``: the mean of each segment's rows (0 for an empty segment)."""
    counts = (ptr[1:] - ptr[:-1]).clamp(min=1).to(x.dtype)
    return segment_sum_ref(x, ptr) / counts.view(-1, *([1] * (x.dim() - 1)))


def segment_max_ref(x: torch.Tensor, ptr: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``(out [S, F], arg [S, F])``: each segment's column-wise max and the first row reaching it
    (``arg`` is -1 and ``out`` 0 for an empty segment)."""
    rows, s = x.shape[0], ptr.numel() - 1
    ids = _ids(ptr, rows).view(-1, *([1] * (x.dim() - 1))).expand_as(x)
    top = torch.full((s, *x.shape[1:]), float("-inf"), dtype=x.dtype, device=x.device)
    top = top.scatter_reduce(0, ids, x.detach(), "amax", include_self=True)
    row = torch.arange(rows, device=x.device).view(-1, *([1] * (x.dim() - 1))).expand_as(x)
    cand = torch.where(x.detach() == top.gather(0, ids), row, rows)
    arg = torch.full((s, *x.shape[1:]), rows, dtype=torch.long, device=x.device)
    arg = arg.scatter_reduce(0, ids, cand, "amin", include_self=True)
    empty = arg == rows
    arg = arg.masked_fill(empty, -1)
    # no rows: zeros still tied to x, so that autograd gives x its (empty) zero gradient
    out = x.gather(0, arg.clamp(min=0)) if rows else torch.zeros_like(top) + x.sum() * 0
    return out.masked_fill(empty, 0.0), arg
