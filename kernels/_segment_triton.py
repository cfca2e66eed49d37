"""CSR segment reductions (sum, mean, max) over rows of ``x [E, F]``: Triton kernels, launchers, autograd.

Imported only when the Triton path runs (see :mod:`wsnas.kernels._segment` for the dispatching API).

Segment ``s`` is rows ``ptr[s] : ptr[s + 1]`` (``ptr [S + 1]``, the ``dst_ptr`` of a parameter graph, so
these are the aggregations of message passing). Empty segments give 0 and zero gradient; max's gradient
goes to the first arg-max row. :func:`segment_sum`/:func:`segment_mean`/:func:`segment_max` dispatch with
:func:`wsnas.kernels.use_triton` (the reference is :mod:`wsnas.kernels._segment_ref`).
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

__all__ = ["SegmentMax", "SegmentSumMean"]

# One program per (segment, BLOCK_F columns) walking its rows BLOCK_E at a time: parameter-graph
# segments are short (median in-degree 8-32 for NB201 C=8, max 32), so 16 rows x 32 columns keeps a
# tile in registers without wasting most lanes on short segments.
_BLOCK_E = 16
_BLOCK_F = 32


@triton.jit
def _segment_reduce_kernel(x_ptr, ptr_ptr, out_ptr, arg_ptr, F, IS_MAX: tl.constexpr, IS_MEAN: tl.constexpr,
                           BLOCK_E: tl.constexpr, BLOCK_F: tl.constexpr):  # fmt: skip
    seg = tl.program_id(0)
    cols = tl.program_id(1) * BLOCK_F + tl.arange(0, BLOCK_F)
    cmask = cols < F
    start = tl.load(ptr_ptr + seg)
    end = tl.load(ptr_ptr + seg + 1)
    dtype = out_ptr.dtype.element_ty
    acc = tl.zeros((BLOCK_F,), dtype=dtype)
    best = tl.full((BLOCK_F,), float("-inf"), dtype=dtype)
    best_row = tl.full((BLOCK_F,), -1, dtype=tl.int64)
    for e0 in range(start, end, BLOCK_E):
        rows = e0 + tl.arange(0, BLOCK_E)
        m = (rows < end)[:, None] & cmask[None, :]
        offs = rows.to(tl.int64)[:, None] * F + cols[None, :]
        if IS_MAX:
            tile = tl.load(x_ptr + offs, mask=m, other=float("-inf")).to(dtype)
            top = tl.max(tile, axis=0)
            hit = (tile == top[None, :]) & m
            first = tl.min(tl.where(hit, rows.to(tl.int64)[:, None], 2**62), axis=0)
            better = top > best  # strict: an earlier chunk keeps a tie, so the first arg-max wins
            best_row = tl.where(better, first, best_row)
            best = tl.where(better, top, best)
        else:
            tile = tl.load(x_ptr + offs, mask=m, other=0.0).to(dtype)
            acc += tl.sum(tile, axis=0)
    if IS_MAX:
        acc = tl.where(best_row >= 0, best, 0.0)
        tl.store(arg_ptr + seg.to(tl.int64) * F + cols, best_row, mask=cmask)
    if IS_MEAN:
        acc = acc / tl.maximum(end - start, 1).to(dtype)
    tl.store(out_ptr + seg.to(tl.int64) * F + cols, acc, mask=cmask)


@triton.jit
def _segment_broadcast_kernel(g_ptr, ptr_ptr, gx_ptr, F, IS_MEAN: tl.constexpr,
                              BLOCK_E: tl.constexpr, BLOCK_F: tl.constexpr):  # fmt: skip
    """Backward of sum/mean: every row of segment ``s`` gets ``grad_out[s]`` (divided by the count for mean)."""
    seg = tl.program_id(0)
    cols = tl.program_id(1) * BLOCK_F + tl.arange(0, BLOCK_F)
    cmask = cols < F
    start = tl.load(ptr_ptr + seg)
    end = tl.load(ptr_ptr + seg + 1)
    g = tl.load(g_ptr + seg.to(tl.int64) * F + cols, mask=cmask, other=0.0)
    if IS_MEAN:
        g = g / tl.maximum(end - start, 1).to(g.dtype)
    for e0 in range(start, end, BLOCK_E):
        rows = e0 + tl.arange(0, BLOCK_E)
        m = (rows < end)[:, None] & cmask[None, :]
        offs = rows.to(tl.int64)[:, None] * F + cols[None, :]
        tl.store(gx_ptr + offs, tl.broadcast_to(g[None, :], (BLOCK_E, BLOCK_F)), mask=m)


@triton.jit
def _segment_max_backward_kernel(g_ptr, arg_ptr, gx_ptr, F, BLOCK_F: tl.constexpr):
    """Backward of max: ``grad_x[arg[s, f], f] = grad_out[s, f]`` (rows of one segment never collide)."""
    seg = tl.program_id(0)
    cols = tl.program_id(1) * BLOCK_F + tl.arange(0, BLOCK_F)
    cmask = cols < F
    arg = tl.load(arg_ptr + seg.to(tl.int64) * F + cols, mask=cmask, other=-1)
    g = tl.load(g_ptr + seg.to(tl.int64) * F + cols, mask=cmask, other=0.0)
    tl.store(gx_ptr + arg * F + cols, g, mask=cmask & (arg >= 0))


def _grid(ptr: torch.Tensor, f: int) -> tuple[int, int]:
    return (ptr.numel() - 1, triton.cdiv(max(f, 1), _BLOCK_F))


def _grid_from(g: torch.Tensor) -> tuple[int, int]:
    return (g.shape[0], triton.cdiv(g.shape[1], _BLOCK_F))


def segment_reduce_triton(x: torch.Tensor, ptr: torch.Tensor, reduce: str) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Launch the forward kernel on contiguous ``x [E, F]``; returns ``(out [S, F], arg [S, F] or None)``."""
    s, f = ptr.numel() - 1, x.shape[1]
    out = torch.empty(s, f, dtype=x.dtype, device=x.device)
    arg = torch.empty(s, f, dtype=torch.long, device=x.device) if reduce == "max" else out
    if s and f:
        _segment_reduce_kernel[_grid(ptr, f)](x, ptr, out, arg, f, IS_MAX=reduce == "max", IS_MEAN=reduce == "mean",
                                              BLOCK_E=_BLOCK_E, BLOCK_F=_BLOCK_F)  # fmt: skip
    return out, (arg if reduce == "max" else None)


def segment_broadcast_triton(g: torch.Tensor, ptr: torch.Tensor, rows: int, mean: bool) -> torch.Tensor:
    """Backward of sum/mean: ``[E, F]`` with each row holding its segment's gradient."""
    gx = torch.empty(rows, g.shape[1], dtype=g.dtype, device=g.device)
    if rows and g.shape[1]:
        _segment_broadcast_kernel[_grid(ptr, g.shape[1])](g, ptr, gx, g.shape[1], IS_MEAN=mean,
                                                          BLOCK_E=_BLOCK_E, BLOCK_F=_BLOCK_F)  # fmt: skip
    return gx


def segment_max_backward_triton(g: torch.Tensor, arg: torch.Tensor, rows: int) -> torch.Tensor:
    """Backward of max: ``[E, F]`` zeros except ``grad_out`` at each arg-max row."""
    gx = torch.zeros(rows, g.shape[1], dtype=g.dtype, device=g.device)
    if g.shape[0] and g.shape[1]:
        _segment_max_backward_kernel[_grid_from(g)](g, arg, gx, g.shape[1], BLOCK_F=_BLOCK_F)
    return gx


class SegmentSumMean(torch.autograd.Function):
    """Segment sum (``mean=False``) or mean of ``x [E, F]`` over CSR ``ptr [S + 1]`` -> ``[S, F]``."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, ptr: torch.Tensor, mean: bool) -> torch.Tensor:  # noqa: ANN001
        out, _ = segment_reduce_triton(x, ptr, "mean" if mean else "sum")
        ctx.save_for_backward(ptr)
        ctx.rows, ctx.mean = x.shape[0], mean
        return out

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> tuple[torch.Tensor, None, None]:  # noqa: ANN001
        (ptr,) = ctx.saved_tensors
        return segment_broadcast_triton(grad.contiguous(), ptr, ctx.rows, ctx.mean), None, None


class SegmentMax(torch.autograd.Function):
    """Segment max of ``x [E, F]`` over CSR ``ptr [S + 1]`` -> ``(out [S, F], arg [S, F])``."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, ptr: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:  # noqa: ANN001
        out, arg = segment_reduce_triton(x, ptr, "max")
        ctx.save_for_backward(arg)
        ctx.rows = x.shape[0]
        ctx.mark_non_differentiable(arg)
        return out, arg

    @staticmethod
    def backward(ctx, grad: torch.Tensor, _grad_arg: torch.Tensor | None) -> tuple[torch.Tensor, None]:  # noqa: ANN001
        (arg,) = ctx.saved_tensors
        return segment_max_backward_triton(grad.contiguous(), arg, ctx.rows), None
