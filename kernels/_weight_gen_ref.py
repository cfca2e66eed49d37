"""Seeded weight generation in plain PyTorch: the reference of :mod:`wsnas.kernels._weight_gen`.

This file is the documentation of the generator, the oracle the Triton kernel is tested against and the
path that runs on the CPU. Both paths produce the same float32 bits.

The generator is counter-based: the value of element ``e`` of a tensor is a pure function of the
tensor's 32-bit key (mixed from the candidate's seed and the tensor's index in its spec, see
:func:`mix_keys`), of ``e``, and of the tensor's rule. One 32-bit hash per element::

    h = fmix32(key ^ (e * 0x9E3779B1 mod 2**32))        # murmur3's finaliser, a bijection of its input

* ``KIND_UNIFORM`` (``scale = bound * 2**-23``): ``float((h >> 8) - 2**23) * scale`` in ``[-bound, bound)``;
  the int->float conversion is exact, so there is one rounding.
* ``KIND_NORMAL`` (``scale = std``): an inverse-CDF table lookup without transcendental functions (``log``
  and ``cos`` differ in the last bit between libraries). ``i = h >> 16`` indexes a table of quantiles
  ``table[i] = ndtri(i / 2**16)`` (ends clamped to ``ndtri(2**-25) = -5.42`` and ``+5.42``), the next 8
  bits ``f`` give the fraction ``r = (2f + 1) / 512``, and ``z = table[i] + r * slope[i]``; then ``z * std``.
  ``slope[i]`` is ``table[i+1] - table[i]`` rounded to 15 significant bits, so that ``r * slope[i]``
  (9 x 15 <= 24 bits) is exact in float32: a fused multiply-add then gives the same bits as a multiply
  and an add, whatever a compiler contracts.
* ``KIND_CONSTANT`` (``scale = value``): ``scale``.

Integer arithmetic is done on int32 tensors holding uint32 bits: logical right shifts are an arithmetic
shift and a mask, and 32x32-bit products are taken modulo 2**32 by int32 multiplication where a probe
shows that it wraps (CPU, CUDA), or else split into 16-bit halves in int64 so that every product stays
below 2**63.
"""

from __future__ import annotations

import torch

__all__ = [
    "KIND_CONSTANT",
    "KIND_UNIFORM",
    "KIND_NORMAL",
    "UNIFORM_STEP",
    "TABLE_BITS",
    "mix_keys",
    "normal_tables",
    "weight_gen_reference",
]

#: rule kinds in the ``kind`` column of a row table
KIND_CONSTANT, KIND_UNIFORM, KIND_NORMAL = 0, 1, 2
#: a uniform row stores ``bound * UNIFORM_STEP`` as its scale (the step between 24-bit levels)
UNIFORM_STEP = 2.0**-23
#: the normal table has ``2**TABLE_BITS`` cells
TABLE_BITS = 16

_M32 = 0xFFFFFFFF
FMIX_C1, FMIX_C2 = 0x85EBCA6B, 0xC2B2AE35  # murmur3 fmix32 multipliers
ELEM_MULT = 0x9E3779B1  # odd, ~2**32 / golden ratio: spreads consecutive element indices
TENSOR_MULT = 0x9E3779B9
SEED_SALT_HI, SEED_SALT_LO = 0x6A09E667, 0xBB67AE85  # sqrt(2), sqrt(3) fractions: arbitrary, fixed forever

# Elements are hashed in blocks of at most 2**16: each int32 temporary (256 KiB) stays in L2, and the ~25
# in-place ops of a block amortise their dispatch cost. (Measured on the former element-wise loop, NB201
# C=8 N=1, 1 thread: 2**14: 1,105, 2**15: 1,354-1,517, 2**16: 1,712-1,772, 2**17: 1,752, 2**18: 1,293
# candidates/s.) A tensor longer than this is cut into pieces of this length.
_CHUNK = 1 << 16


# -- uint32 arithmetic on int32 tensors -------------------------------------------------------------------
def _probe_int32_wrap(device_type: str) -> bool:
    """Whether int32 multiplication on this device wraps modulo 2**32 (the low bits of the exact product)."""
    try:
        x = torch.tensor([-1, 123456789, 2**31 - 1], dtype=torch.int32, device=device_type)
        got = (x * _signed(FMIX_C1)).tolist()
    except Exception:  # pragma: no cover - a device without int32 multiplication
        return False
    want = [((v & _M32) * FMIX_C1) & _M32 for v in (-1, 123456789, 2**31 - 1)]
    return [g & _M32 for g in got] == want


#: per device type, whether int32 multiplication wraps (else the exact int64 16-bit split is used). It
#: wraps on CPU (vectorised ``mullo``) and CUDA; int32 products are ~15x faster than ``torch.uint32``
#: ones on the CPU (not vectorised) and gave 1,517 vs 1,176 NB201 C=8 candidates/s on one thread,
#: with identical bits. The tests compare every path bit for bit with Triton's, so a platform where
#: the probe passes but wrapping differs elsewhere would fail them.
_INT32_WRAPS: dict[str, bool] = {}


def _signed(c: int) -> int:
    """The int32 value with the bits of the uint32 constant ``c``."""
    return c - (1 << 32) if c >= 1 << 31 else c


def _to_i32(x: torch.Tensor) -> torch.Tensor:
    """int64 values in ``[0, 2**32)`` -> int32 with the same low 32 bits (no out-of-range casts)."""
    return (x - ((x >> 31) << 32)).to(torch.int32)


def _wraps(device_type: str) -> bool:
    """:data:`_INT32_WRAPS` of a device type, probed on first use."""
    if device_type not in _INT32_WRAPS:
        _INT32_WRAPS[device_type] = _probe_int32_wrap(device_type)
    return _INT32_WRAPS[device_type]


def _mul32(x: torch.Tensor, c: int) -> torch.Tensor:
    """``x * c mod 2**32`` for int32 ``x`` holding uint32 bits and a constant ``0 <= c < 2**32``."""
    if _wraps(x.device.type):
        return x * _signed(c)
    x64 = x.to(torch.int64) & _M32  # < 2**32; each product below is < 2**48
    return _to_i32((x64 * (c & 0xFFFF) + (((x64 * (c >> 16)) & 0xFFFF) << 16)) & _M32)


def _fmix32_(h: torch.Tensor) -> torch.Tensor:
    """murmur3's 32-bit finaliser (a bijection) in place on ``h`` (int32 holding uint32 bits), with one
    temporary; returns ``h``. Logical right shifts are an arithmetic shift and a mask."""
    wraps = _wraps(h.device.type)
    t = torch.empty_like(h)
    for shift, mult in ((16, FMIX_C1), (13, FMIX_C2), (16, None)):
        torch.bitwise_right_shift(h, shift, out=t).bitwise_and_((1 << (32 - shift)) - 1)  # logical shift
        h.bitwise_xor_(t)
        if mult is not None:
            if wraps:
                h.mul_(_signed(mult))
            else:
                h.copy_(_mul32(h, mult))
    return h


def _fmix32(h: torch.Tensor) -> torch.Tensor:
    """:func:`_fmix32_` on a copy of ``h``."""
    return _fmix32_(h.clone())


# -- public helpers shared with the Triton path ----------------------------------------------------------
def mix_keys(seeds: torch.Tensor, tensor_index: torch.Tensor) -> torch.Tensor:
    """The 32-bit key of each (seed, tensor index) pair.

    Args:
        seeds: ``[R]`` int64, each in ``[0, 2**63)``.
        tensor_index: ``[R]`` int64, the tensor's position in its spec, in ``[0, 2**31)``.

    Returns:
        ``[R]`` int64 keys in ``[0, 2**32)``.
    """
    lo = _to_i32(seeds & _M32)
    hi = _to_i32(seeds >> 32)
    k = _fmix32(hi ^ _signed(SEED_SALT_HI))
    k = _fmix32(k ^ lo)
    k = _fmix32(k ^ _mul32(_to_i32(tensor_index), TENSOR_MULT) ^ _signed(SEED_SALT_LO))
    return k.to(torch.int64) & _M32


_TABLES: dict[str, tuple[torch.Tensor, torch.Tensor]] = {}


def normal_tables(device: torch.device | str = "cpu") -> tuple[torch.Tensor, torch.Tensor]:
    """The inverse normal CDF tables shared by both paths (built once, cached per device).

    Returns:
        ``(table, slope)``, each ``[2**16]`` float32: ``table[i]`` is ``ndtri(i / 2**16)`` (computed in
        float64, clamped to ``[2**-25, 1 - 2**-25]``, cast to float32) and ``slope[i]`` is
        ``table[i+1] - table[i]`` rounded to 15 significant bits (so ``r * slope[i]`` is exact for a
        9-bit fraction ``r``).
    """
    key = str(torch.device(device))
    if key not in _TABLES:
        if "cpu" not in _TABLES:
            n = 1 << TABLE_BITS
            p = (torch.arange(n + 1, dtype=torch.float64) / n).clamp(2.0**-25, 1 - 2.0**-25)
            quant = torch.special.ndtri(p).to(torch.float32)  # [n + 1]
            diff = quant[1:].double() - quant[:-1].double()  # [n], > 0
            mant, exp = torch.frexp(diff)  # diff = mant * 2**exp, mant in [0.5, 1)
            slope = torch.ldexp(torch.round(mant * 2.0**15), (exp - 15).double()).to(torch.float32)
            _TABLES["cpu"] = (quant[:-1].contiguous(), slope)
        _TABLES[key] = tuple(t.to(device) for t in _TABLES["cpu"])  # type: ignore[assignment]
    return _TABLES[key]


def _check_rows(rows: torch.Tensor, scales: torch.Tensor, out: torch.Tensor) -> None:
    if rows.dim() != 2 or rows.shape[1] != 4 or rows.dtype != torch.int64:
        raise ValueError(f"rows must be an int64 [R, 4] table, got {rows.dtype} {tuple(rows.shape)}")
    if scales.shape != (rows.shape[0],) or scales.dtype != torch.float32:
        raise ValueError(f"scales must be float32 [R={rows.shape[0]}], got {scales.dtype} {tuple(scales.shape)}")
    if out.dim() != 1 or out.dtype != torch.float32 or not out.is_contiguous():
        raise ValueError(f"out must be a contiguous float32 vector, got {out.dtype} {tuple(out.shape)}")


_ELEM_HASH: dict[tuple[int, str], torch.Tensor] = {}


def _elem_hash(n: int, device: torch.device) -> torch.Tensor:
    """``[n]`` int32: ``e * ELEM_MULT mod 2**32`` for ``e < n``, cached per (n, device) (n <= ``_CHUNK``)."""
    key = (n, str(device))
    got = _ELEM_HASH.get(key)
    if got is None:
        got = _mul32(torch.arange(n, dtype=torch.int32, device=device), ELEM_MULT)
        if len(_ELEM_HASH) >= 256:
            _ELEM_HASH.clear()
        _ELEM_HASH[key] = got
    return got


_PACKED: dict[str, torch.Tensor] = {}


def _packed_tables(device: torch.device) -> torch.Tensor:
    """``[2**16]`` int64 whose bits are the float32 pairs ``(table[i], slope[i])``: one 8-byte gather."""
    key = str(device)
    if key not in _PACKED:
        table, slope = normal_tables(device)
        _PACKED[key] = torch.stack([table, slope], dim=1).contiguous().view(torch.int64).reshape(-1)
    return _PACKED[key]


def _pieces(host: torch.Tensor, chunk: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Cut the rows ``[R, 4]`` (on the CPU) into pieces of at most ``chunk`` elements.

    Returns ``(row, first, length)``, each ``[Q]`` int64: piece ``q`` is elements ``first[q] :
    first[q] + length[q]`` of row ``row[q]``; empty rows have no piece.
    """
    numel = host[:, 1]
    count = (numel + chunk - 1) // chunk  # [R], 0 for empty rows
    row = torch.repeat_interleave(torch.arange(len(host)), count)
    first_piece = torch.cumsum(count, 0) - count
    first = (torch.arange(len(row)) - first_piece[row]) * chunk
    return row, first, (numel[row] - first).clamp(max=chunk)


def weight_gen_reference(rows: torch.Tensor, scales: torch.Tensor, out: torch.Tensor) -> torch.Tensor:
    """Fill ``out`` with generated weights (the PyTorch path).

    Pieces of rows (whole tensors, or ``_CHUNK``-long slices of longer ones) of equal length and kind are
    hashed together as one ``[pieces, length]`` block, so that keys, scales and element hashes broadcast
    instead of being gathered per element; each block lands in ``out`` with one row-wise ``index_copy_``.

    Args:
        rows: ``[R, 4]`` int64, one row per tensor: ``(offset in out, numel, key, kind)``. The rows tile
            ``out`` in order: row ``r`` starts where row ``r - 1`` ends, the first at 0, the last ends at
            ``out.numel()``.
        scales: ``[R]`` float32: the constant, ``bound * UNIFORM_STEP`` or the normal std of each row.
        out: ``[total]`` float32, written in place.

    Returns:
        ``out``.
    """
    _check_rows(rows, scales, out)
    total = out.numel()
    host = rows.cpu()
    starts, ends = host[:, 0].contiguous(), (host[:, 0] + host[:, 1]).contiguous()
    if len(host) and (int(starts[0]) != 0 or int(ends[-1]) != total or not torch.equal(starts[1:], ends[:-1])):
        raise ValueError(f"rows must tile out ([{total}]) in order; got starts {starts[:4].tolist()}...")
    if len(host) == 0 and total:
        raise ValueError(f"no rows for an out of {total} elements")
    bad = host[:, 3][(host[:, 3] < KIND_CONSTANT) | (host[:, 3] > KIND_NORMAL)]
    if len(bad):
        raise ValueError(f"row kind must be 0 (constant), 1 (uniform) or 2 (normal), got {int(bad[0])}")
    if total == 0:
        return out
    dev = out.device
    scales = scales.to(dev)
    keys = _to_i32(rows[:, 2].to(dev))  # [R] int32 bits
    row, first, length = _pieces(host, _CHUNK)  # [Q] each, on the CPU
    kind = host[row, 3]
    group = length * 4 + kind  # pieces of one (length, kind) form a group
    order = torch.argsort(group, stable=True)
    bounds = torch.cumsum(torch.unique_consecutive(group[order], return_counts=True)[1], 0).tolist()
    packed = _packed_tables(dev)
    g0 = 0
    for g1 in bounds:
        sel = order[g0:g1]
        n, k = int(length[sel[0]]), int(kind[sel[0]])
        step = max(1, _CHUNK // n)  # pieces per block
        view = out.as_strided((total - n + 1, n), (1, 1))  # row p is out[p : p + n]
        for b0 in range(0, len(sel), step):
            q = sel[b0 : b0 + step]
            r = row[q].to(dev)
            dest = (host[row[q], 0] + first[q]).to(dev)  # [m] where each piece starts in out
            if k == KIND_CONSTANT:
                view.index_copy_(0, dest, scales.index_select(0, r)[:, None].expand(len(q), n))
                continue
            if bool((first[q] == 0).all()):
                h = keys.index_select(0, r)[:, None] ^ _elem_hash(n, dev)[None, :]  # [m, n]
            else:  # slices of long tensors
                elem = (first[q].to(dev)[:, None] + torch.arange(n, device=dev)[None, :]).to(torch.int32)
                h = keys.index_select(0, r)[:, None] ^ _mul32(elem, ELEM_MULT)
            _fmix32_(h)
            scale = scales.index_select(0, r)[:, None]  # [m, 1]
            if k == KIND_NORMAL:
                idx = torch.bitwise_right_shift(h, 16).bitwise_and_(0xFFFF)
                frac = h.bitwise_and_(0xFF00).to(torch.float32).mul_(2.0**-16).add_(2.0**-9)  # (2f + 1) / 512
                pair = packed.index_select(0, idx.view(-1)).view(torch.float32).view(*h.shape, 2)
                val = frac.mul_(pair[..., 1]).add_(pair[..., 0]).mul_(scale)  # exact product, one rounding
            else:
                val = h.bitwise_right_shift_(8).bitwise_and_(0xFFFFFF).sub_(1 << 23).to(torch.float32).mul_(scale)
            view.index_copy_(0, dest, val)
        g0 = g1
    return out
