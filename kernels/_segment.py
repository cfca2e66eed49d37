"""CSR segment reductions (sum, mean, max) over rows of ``x [E, F]``: the dispatching API.

Segment ``s`` is rows ``ptr[s] : ptr[s + 1]`` (``ptr [S + 1]``, the ``dst_ptr`` of a parameter graph, so
these are the aggregations of message passing). Empty segments give 0 and zero gradient; max's gradient
goes to the first arg-max row. Each function dispatches with :func:`wsnas.kernels.use_triton` between the
Triton kernels (:mod:`wsnas.kernels._segment_triton`, imported on first use) and the PyTorch reference
(:mod:`wsnas.kernels._segment_ref`).
"""

from __future__ import annotations

import torch

from wsnas.kernels._dispatch import use_triton
from wsnas.kernels._segment_ref import segment_max_ref, segment_mean_ref, segment_sum_ref

__all__ = ["segment_max", "segment_mean", "segment_sum"]


def _triton():  # noqa: ANN202 - the Triton module, imported when first needed
    from wsnas.kernels import _segment_triton

    return _segment_triton


def _check(x: torch.Tensor, ptr: torch.Tensor, op: str) -> tuple[torch.Tensor, torch.Tensor]:
    if ptr.dim() != 1 or ptr.numel() < 1 or ptr.dtype not in (torch.int32, torch.int64):
        raise ValueError(f"{op}: ptr must be a 1-D int tensor [S + 1], got shape {tuple(ptr.shape)} {ptr.dtype}")
    if x.dim() not in (1, 2):
        raise ValueError(f"{op}: x must be [E] or [E, F], got shape {tuple(x.shape)}")
    if int(ptr[0]) != 0 or int(ptr[-1]) != x.shape[0]:
        raise ValueError(f"{op}: ptr must run from 0 to E={x.shape[0]}, got {int(ptr[0])} .. {int(ptr[-1])}")
    return (x if x.dim() == 2 else x[:, None]), ptr


def segment_sum(x: torch.Tensor, ptr: torch.Tensor) -> torch.Tensor:
    """Sum of rows ``ptr[s] : ptr[s + 1]`` of ``x [E, F]`` (or ``[E]``) -> ``[S, F]`` (or ``[S]``); empty -> 0."""
    x2, ptr = _check(x, ptr, "segment_sum")
    if not use_triton(x2, ptr, op="segment_sum"):
        return segment_sum_ref(x, ptr)
    out = _triton().SegmentSumMean.apply(x2.contiguous(), ptr.long().contiguous(), False)
    return out if x.dim() == 2 else out[:, 0]


def segment_mean(x: torch.Tensor, ptr: torch.Tensor) -> torch.Tensor:
    """Mean of rows ``ptr[s] : ptr[s + 1]`` of ``x [E, F]`` (or ``[E]``) -> ``[S, F]`` (or ``[S]``); empty -> 0."""
    x2, ptr = _check(x, ptr, "segment_mean")
    if not use_triton(x2, ptr, op="segment_mean"):
        return segment_mean_ref(x, ptr)
    out = _triton().SegmentSumMean.apply(x2.contiguous(), ptr.long().contiguous(), True)
    return out if x.dim() == 2 else out[:, 0]


def segment_max(x: torch.Tensor, ptr: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Column-wise max of rows ``ptr[s] : ptr[s + 1]`` of ``x [E, F]`` (or ``[E]``).

    Returns ``(out [S, F], arg [S, F])`` (``[S]`` each for 1-D ``x``): ``arg`` is the first row reaching the
    max (-1 for an empty segment, whose ``out`` is 0); the gradient flows to that row only.
    """
    x2, ptr = _check(x, ptr, "segment_max")
    if not use_triton(x2, ptr, op="segment_max"):
        return segment_max_ref(x, ptr)
    out, arg = _triton().SegmentMax.apply(x2.contiguous(), ptr.long().contiguous())
    return (out, arg) if x.dim() == 2 else (out[:, 0], arg[:, 0])
