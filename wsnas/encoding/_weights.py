"""Seeded batched weight generation, and loading weights into a network.

:func:`generate` turns a batch of (spec, seed) pairs (specs: :mod:`wsnas.encoding._weight_spec`) into one flat
float32 buffer in one kernel launch; candidate ``i``'s weights are the slice
``flat[offsets[i]:offsets[i+1]]``, its tensors laid out back to back in spec order, which is the order
:func:`load_into` (and the parameter-graph builder) reads them in.

A weight is a pure function of (seed, tensor index, element index) and the tensor's rule: it does not
depend on the batch it was generated in nor on the device (see :mod:`wsnas.kernels._weight_gen_ref`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import torch

from wsnas.encoding._weight_spec import INIT_RULES, ROLES, TensorSpec, WeightSpec, weight_spec

if TYPE_CHECKING:
    import torch.nn as nn

__all__ = [
    "INIT_RULES",
    "ROLES",
    "TensorSpec",
    "WeightSpec",
    "weight_spec",
    "GeneratedWeights",
    "generate",
    "load_into",
]


# -- generation -------------------------------------------------------------------------------------------
@dataclass(frozen=True, eq=False)
class GeneratedWeights:
    """Weights of a batch of ``B`` candidates in one flat buffer.

    Attributes:
        flat: ``[total]`` float32, candidate after candidate, each in its spec's tensor order.
        offsets: ``[B + 1]`` int64 start of each candidate in ``flat``, then ``total``.
        tensor_offsets: ``[R + 1]`` int64 start of every tensor in ``flat`` (``R`` = tensors of all
            candidates, candidate-major), then ``total``.
        tensor_ptr: ``[B + 1]`` int64: candidate ``i``'s tensors are rows ``tensor_ptr[i]:tensor_ptr[i+1]``
            of ``tensor_offsets``.
        specs: the spec of each candidate.
        seeds: the seed of each candidate.
    """

    flat: torch.Tensor
    offsets: torch.Tensor
    tensor_offsets: torch.Tensor
    tensor_ptr: torch.Tensor
    specs: tuple[WeightSpec, ...]
    seeds: tuple[int, ...]
    _starts: tuple[int, ...] = field(repr=False)

    def __len__(self) -> int:
        return len(self.specs)

    def _index(self, i: int) -> int:
        n = len(self.specs)
        if not -n <= i < n:
            raise IndexError(f"candidate index must be in [{-n}, {n}), got {i}")
        return i % n

    def candidate(self, i: int) -> torch.Tensor:
        """``[specs[i].numel]`` view of candidate ``i``'s flat weights."""
        i = self._index(i)
        return self.flat[self._starts[i] : self._starts[i + 1]]

    def tensors(self, i: int) -> dict[str, torch.Tensor]:
        """Candidate ``i``'s weights as ``{parameter name: view shaped like the parameter}``."""
        flat, spec = self.candidate(i), self.specs[self._index(i)]
        offs = spec.offsets
        return {t.name: flat[offs[k] : offs[k + 1]].view(t.shape) for k, t in enumerate(spec.tensors)}


def _seed_tensor(seeds: Sequence[int] | torch.Tensor) -> torch.Tensor:
    if isinstance(seeds, torch.Tensor):
        if seeds.dtype.is_floating_point or seeds.dtype.is_complex or seeds.dtype == torch.bool or seeds.dim() != 1:
            raise ValueError(f"seeds must be a 1-D integer tensor, got {seeds.dtype} {tuple(seeds.shape)}")
        out = seeds.detach().to("cpu", torch.int64)
    else:
        values = list(seeds)
        if not all(isinstance(s, int) and not isinstance(s, bool) for s in values):
            raise ValueError(f"seeds must be ints, got {[type(s).__name__ for s in values[:5]]}...")
        bad = [s for s in values if not 0 <= s < 1 << 63]
        if bad:
            raise ValueError(f"seeds must be in [0, 2**63), got {bad[:5]}")
        out = torch.tensor(values, dtype=torch.int64)
    if len(out) and int(out.min()) < 0:
        raise ValueError(f"seeds must be in [0, 2**63), got {int(out.min())}")
    return out


def _row_table(
    spec_list: list[WeightSpec], seed_t: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Host-side preparation, vectorised over all tensors of all candidates (no loop over elements).

    Returns:
        ``rows [R, 4]`` int64 ``(offset, numel, key, kind)``, ``scales [R]`` float32, candidate
        ``offsets [B + 1]`` and ``tensor_ptr [B + 1]``, all on the CPU.
    """
    from wsnas.kernels import mix_keys

    n_cand = len(spec_list)
    n_tensors = torch.tensor([len(s) for s in spec_list], dtype=torch.int64)  # [B]
    cand_numel = torch.tensor([s.numel for s in spec_list], dtype=torch.int64)  # [B]
    packed = torch.cat([s._packed for s in spec_list]) if n_cand else torch.zeros(0, 3, dtype=torch.int64)  # [R, 3]
    n_rows = len(packed)
    cand_of_row = torch.repeat_interleave(torch.arange(n_cand), n_tensors, output_size=n_rows)  # [R]
    tensor_ptr = torch.cat([torch.zeros(1, dtype=torch.int64), torch.cumsum(n_tensors, 0)])  # [B + 1]
    tensor_index = torch.arange(n_rows) - tensor_ptr[cand_of_row]  # [R], position in its spec
    numel, kind = packed[:, 0], packed[:, 1]
    scales = packed[:, 2].to(torch.int32).view(torch.float32)  # [R]
    ends = torch.cumsum(numel, 0)  # [R]
    keys = mix_keys(seed_t[cand_of_row], tensor_index)  # [R]
    rows = torch.stack([ends - numel, numel, keys, kind], dim=1)  # [R, 4]
    offsets = torch.cat([torch.zeros(1, dtype=torch.int64), torch.cumsum(cand_numel, 0)])  # [B + 1]
    return rows, scales, offsets, tensor_ptr


def generate(
    specs: WeightSpec | Sequence[WeightSpec],
    seeds: Sequence[int] | torch.Tensor,
    device: torch.device | str | None = None,
) -> GeneratedWeights:
    """Generate the weights of a batch of (spec, seed) candidates in one kernel launch.

    Args:
        specs: ``B`` specs, or one spec used for every seed.
        seeds: ``B`` seeds in ``[0, 2**63)``.
        device: where ``flat`` lives; ``None``: torch's default device. The Triton kernel runs on CUDA
            devices, the PyTorch reference elsewhere (``WSNAS_KERNELS`` overrides, see
            :mod:`wsnas.kernels._dispatch`); both give the same bits.

    Returns:
        The batch; candidate ``i``'s weights depend only on ``specs[i]`` and ``seeds[i]``.

    Raises:
        ValueError: lengths differ or a seed is out of range.
        wsnas.kernels.KernelUnavailable: ``WSNAS_KERNELS=triton`` where Triton cannot run.
    """
    from wsnas.kernels import use_triton, weight_gen_reference

    seed_t = _seed_tensor(seeds)  # [B]
    spec_list = [specs] * len(seed_t) if isinstance(specs, WeightSpec) else list(specs)
    if len(spec_list) != len(seed_t):
        raise ValueError(f"generate needs one seed per spec, got {len(spec_list)} specs and {len(seed_t)} seeds")
    if not all(isinstance(s, WeightSpec) for s in spec_list):
        raise ValueError(f"specs must be WeightSpec objects, got {sorted({type(s).__name__ for s in spec_list})}")
    dev = torch.device(device) if device is not None else torch.get_default_device()
    rows, scales, offsets, tensor_ptr = _row_table(spec_list, seed_t)
    total = int(offsets[-1])
    out = torch.empty(total, dtype=torch.float32, device=dev)
    if use_triton(out, op="weight generation"):
        from wsnas.kernels import weight_gen_triton

        weight_gen_triton(rows, scales, out)
    elif total:
        weight_gen_reference(rows, scales, out)
    return GeneratedWeights(
        flat=out,
        offsets=offsets.to(dev),
        tensor_offsets=torch.cat([rows[:, 0], offsets[-1:]]).to(dev),
        tensor_ptr=tensor_ptr.to(dev),
        specs=tuple(spec_list),
        seeds=tuple(seed_t.tolist()),
        _starts=tuple(offsets.tolist()),
    )


def load_into(module: nn.Module, flat_weights: torch.Tensor) -> nn.Module:
    """Copy one candidate's flat weights into ``module``'s parameters and reset batch-norm running stats.

    Args:
        module: the network the weights were generated for (same parameter order as its spec).
        flat_weights: ``[numel]`` one candidate's weights, e.g. ``GeneratedWeights.candidate(i)``; any
            device and floating dtype (copied into each parameter's own device and dtype).

    Returns:
        ``module``, now using the weights.

    Raises:
        ValueError: ``flat_weights`` is not a vector of the module's parameter count.
    """
    from torch.nn.modules.batchnorm import _BatchNorm

    params = list(module.parameters())
    count = sum(p.numel() for p in params)
    if flat_weights.dim() != 1 or flat_weights.numel() != count:
        raise ValueError(
            f"load_into needs a vector of the module's {count} parameters ({len(params)} tensors), "
            f"got shape {list(flat_weights.shape)}"
        )
    with torch.no_grad():
        start = 0
        for p in params:
            p.copy_(flat_weights[start : start + p.numel()].view(p.shape))
            start += p.numel()
    for m in module.modules():
        if isinstance(m, _BatchNorm) and m.track_running_stats:
            m.reset_running_stats()
    return module
