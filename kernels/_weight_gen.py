"""Seeded weight generation as one Triton launch for a whole batch of candidates.

The generator is documented in :mod:`wsnas.kernels._weight_gen_ref`, whose float32 bits this kernel
reproduces exactly. The grid has one program per (tensor, block of ``BLOCK`` elements), read from a block
table built on the host, so a program knows its tensor's offset, numel, key and rule without searching.

Bit-identity notes:

* the hash is uint32 arithmetic (wrapping multiplies, logical shifts), exact on every backend;
* the uniform value is one int->float conversion (exact) and one multiply;
* the normal value is ``(table[i] + r * slope[i]) * std`` where ``r * slope[i]`` is exact by construction
  of the tables, so contracting it into a fused multiply-add cannot change the result. The launch also
  passes ``enable_fp_fusion=False`` (Triton >= 3.0 accepts it; 3.9 otherwise defaults to fusing): if a
  later change breaks the exact-product property, the kernel still rounds like the reference.
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

from ._weight_gen_ref import (
    ELEM_MULT,
    FMIX_C1,
    FMIX_C2,
    KIND_NORMAL,
    KIND_UNIFORM,
    _check_rows,
    normal_tables,
)

__all__ = ["DEFAULT_BLOCK", "block_table", "weight_gen_triton"]

_C1 = tl.constexpr(FMIX_C1)
_C2 = tl.constexpr(FMIX_C2)
_EMUL = tl.constexpr(ELEM_MULT)
_NORMAL = tl.constexpr(KIND_NORMAL)
_UNIFORM = tl.constexpr(KIND_UNIFORM)

# BLOCK = 1024 elements per program. NB201 at C=8, N=1 has up to 75 tensors of 8..9,216 elements (about
# half are 8..32-element BN/bias vectors): 1024-element blocks give 150 programs per (all-conv) candidate at 60% lane
# use, 256-element blocks 411 programs at 87%. The kernel only writes 4 bytes per element, so per-program
# overhead dominates at small blocks; the Triton interpreter (CPU tests) is ~5x faster per element with the
# larger block (131,072 elements: 1.8 s at 256, 0.35 s at 1024). Not yet timed on a GPU (none was lent to
# this task): revisit with benchmarks/bench_generation.py.
DEFAULT_BLOCK = 1024


# -- Triton kernels ---------------------------------------------------------------------------------------
@triton.jit
def _fmix32(h):
    h ^= h >> 16
    h *= _C1
    h ^= h >> 13
    h *= _C2
    h ^= h >> 16
    return h


@triton.jit
def _weight_gen_kernel(
    out_ptr,  # [total] float32
    rows_ptr,  # [R, 4] int64: offset, numel, key, kind
    scales_ptr,  # [R] float32
    blocks_ptr,  # [NB, 2] int64: row, first element of the block
    table_ptr,  # [2**16] float32 quantiles
    slope_ptr,  # [2**16] float32 slopes
    BLOCK: tl.constexpr,
):
    pid = tl.program_id(0).to(tl.int64)
    row = tl.load(blocks_ptr + 2 * pid)
    first = tl.load(blocks_ptr + 2 * pid + 1)
    base = tl.load(rows_ptr + 4 * row)
    numel = tl.load(rows_ptr + 4 * row + 1)
    key = tl.load(rows_ptr + 4 * row + 2).to(tl.uint32)
    kind = tl.load(rows_ptr + 4 * row + 3)
    scale = tl.load(scales_ptr + row)

    elem = first + tl.arange(0, BLOCK)  # [BLOCK] int64
    mask = elem < numel
    h = _fmix32(key ^ (elem.to(tl.uint32) * _EMUL))  # [BLOCK] uint32
    if kind == _NORMAL:
        idx = (h >> 16).to(tl.int32)
        frac = (((h >> 8) & 0xFF).to(tl.int32) * 2 + 1).to(tl.float32) * 0.001953125  # (2f+1)/512, exact
        t0 = tl.load(table_ptr + idx, mask=mask, other=0.0)
        dt = tl.load(slope_ptr + idx, mask=mask, other=0.0)
        val = (t0 + frac * dt) * scale
    elif kind == _UNIFORM:
        val = ((h >> 8).to(tl.int32) - 8388608).to(tl.float32) * scale
    else:
        val = tl.zeros([BLOCK], dtype=tl.float32) + scale
    tl.store(out_ptr + base + elem, val, mask=mask)


# -- launchers --------------------------------------------------------------------------------------------
def block_table(rows: torch.Tensor, block: int = DEFAULT_BLOCK) -> torch.Tensor:
    """One entry per (tensor, block of ``block`` elements) of a row table.

    Args:
        rows: ``[R, 4]`` int64 row table (see :func:`weight_gen_triton`).
        block: elements per block.

    Returns:
        ``[NB, 2]`` int64 on ``rows.device``: ``(row index, first element of the block in its tensor)``.
    """
    nblocks = (rows[:, 1] + (block - 1)) // block  # [R]; 0 for empty tensors
    row = torch.repeat_interleave(torch.arange(len(rows), device=rows.device), nblocks)  # [NB]
    first_block = torch.cumsum(nblocks, 0) - nblocks  # [R]
    within = torch.arange(len(row), device=rows.device) - first_block[row]  # [NB]
    return torch.stack([row, within * block], dim=1).contiguous()


def weight_gen_triton(
    rows: torch.Tensor, scales: torch.Tensor, out: torch.Tensor, *, block: int = DEFAULT_BLOCK
) -> torch.Tensor:
    """Fill ``out`` with generated weights in one kernel launch (bit-identical to the reference).

    Args:
        rows: ``[R, 4]`` int64, one row per tensor: ``(offset in out, numel, key, kind)``; any device (the
            block table is built on the host and copied to ``out.device``).
        scales: ``[R]`` float32: the constant, ``bound * UNIFORM_STEP`` or the normal std of each row.
        out: ``[total]`` float32 on a CUDA device (or the CPU under ``TRITON_INTERPRET=1``), written in place.
        block: elements per program, a power of two.

    Returns:
        ``out``.
    """
    _check_rows(rows, scales, out)
    if block <= 0 or block & (block - 1):
        raise ValueError(f"block must be a positive power of two, got {block}")
    blocks = block_table(rows.cpu(), block).to(out.device)
    if len(blocks) == 0:
        return out
    dev = out.device
    table, slope = normal_tables(dev)
    _weight_gen_kernel[(len(blocks),)](
        out,
        rows.to(dev).contiguous(),
        scales.to(dev).contiguous(),
        blocks,
        table,
        slope,
        BLOCK=block,
        enable_fp_fusion=False,
    )
    return out
