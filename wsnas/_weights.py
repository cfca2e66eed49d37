"""Weight specs of built networks, seeded batched weight generation, and loading weights into a network.

A :class:`WeightSpec` lists every parameter tensor of a built ``nn.Module`` in ``named_parameters()``
order, with what generation needs (shape, fan-in/out, init rule, role). :func:`generate` turns a batch of
(spec, seed) pairs into one flat float32 buffer in one kernel launch; candidate ``i``'s weights are the
slice ``flat[offsets[i]:offsets[i+1]]``, its tensors laid out back to back in spec order, which is the
order :func:`load_into` (and the parameter-graph builder) reads them in.

A weight is a pure function of (seed, tensor index, element index) and the tensor's rule: it does not
depend on the batch it was generated in nor on the device (see :mod:`wsnas.kernels._weight_gen_ref`).
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from functools import cached_property
from typing import TYPE_CHECKING

import torch

from wsnas._errors import UnsupportedLayer

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

#: spec-level init rules for conv and linear weights (and, for ``torch_default``, their biases)
INIT_RULES: tuple[str, ...] = ("kaiming_normal", "kaiming_uniform", "xavier_normal", "xavier_uniform", "torch_default")
#: the role of a parameter tensor in its layer
ROLES: tuple[str, ...] = ("conv_weight", "linear_weight", "bias", "bn_weight", "bn_bias")
_DISTS = {"constant": 0, "uniform": 1, "normal": 2}  # = KIND_* of wsnas.kernels._weight_gen_ref
_MAX_NUMEL = (1 << 31) - 1  # element indices are hashed as 32-bit counters; int32 keeps them exact


@dataclass(frozen=True)
class TensorSpec:
    """One parameter tensor of a network.

    Attributes:
        name: its ``named_parameters()`` name, e.g. ``"cells.0.edges.1<-0.1.weight"``.
        shape: its shape.
        role: one of :data:`ROLES`.
        layer: the class name of the layer that owns it (``"Conv2d"``, ``"Linear"``, ``"BatchNorm2d"``).
        fan_in, fan_out: of the owning layer's weight, PyTorch's convention (conv: ``C_in/groups * k*k``
            and ``C_out * k*k``); 1 and 1 for batch-norm tensors.
        init: the rule that fills it: a name of :data:`INIT_RULES`, ``"torch_default_bias"``, ``"ones"``
            or ``"zeros"``.
        dist: ``"normal"`` (``scale`` is the std), ``"uniform"`` (on ``[-scale, scale)``) or
            ``"constant"`` (every element is ``scale``).
        scale: see ``dist``.
    """

    name: str
    shape: tuple[int, ...]
    role: str
    layer: str
    fan_in: int
    fan_out: int
    init: str
    dist: str
    scale: float

    @property
    def numel(self) -> int:
        """Number of elements."""
        return math.prod(self.shape)


@dataclass(frozen=True)
class WeightSpec:
    """Every parameter tensor of a built network, in ``named_parameters()`` order (see :func:`weight_spec`).

    Attributes:
        tensors: the tensors, in order.
        init: the spec-level init rule (one of :data:`INIT_RULES`).
    """

    tensors: tuple[TensorSpec, ...]
    init: str = "kaiming_normal"

    def __len__(self) -> int:
        return len(self.tensors)

    @cached_property
    def numel(self) -> int:
        """Number of weights of one candidate (the length of its flat buffer)."""
        return sum(t.numel for t in self.tensors)

    @cached_property
    def offsets(self) -> tuple[int, ...]:
        """``[len(self) + 1]`` start of each tensor in one candidate's flat buffer, then :attr:`numel`."""
        out = [0]
        for t in self.tensors:
            out.append(out[-1] + t.numel)
        return tuple(out)

    @cached_property
    def names(self) -> tuple[str, ...]:
        """Parameter names, in order."""
        return tuple(t.name for t in self.tensors)

    @cached_property
    def _packed(self) -> torch.Tensor:
        """``[len(self), 3]`` int64 ``(numel, kind, bits of the float32 row scale)``, built once per spec."""
        numel = torch.tensor([t.numel for t in self.tensors], dtype=torch.int64)
        kind = torch.tensor([_DISTS[t.dist] for t in self.tensors], dtype=torch.int64)
        scale = torch.tensor([t.scale for t in self.tensors], dtype=torch.float32)
        scale = torch.where(kind == _DISTS["uniform"], scale * 2.0**-23, scale)  # exact: a power of two
        return torch.stack([numel, kind, scale.view(torch.int32).to(torch.int64)], dim=1)


# -- building a spec --------------------------------------------------------------------------------------
def _role(layer: nn.Module, layer_name: str, pname: str, shape: tuple[int, ...]) -> tuple[str, int, int]:
    import torch.nn as nn
    from torch.nn.modules.batchnorm import _BatchNorm
    from torch.nn.modules.conv import _ConvNd

    where = f"layer {layer_name or '<root>'!r} of type {type(layer).__name__}"
    if isinstance(layer, _ConvNd) and not layer.transposed:
        w = tuple(layer.weight.shape)  # [C_out, C_in / groups, *kernel]
        rf = math.prod(w[2:])
        roles = {"weight": "conv_weight", "bias": "bias"}
        fans = (w[1] * rf, w[0] * rf)
    elif isinstance(layer, nn.Linear):
        w = tuple(layer.weight.shape)  # [out, in]
        roles = {"weight": "linear_weight", "bias": "bias"}
        fans = (w[1], w[0])
    elif isinstance(layer, _BatchNorm):
        roles = {"weight": "bn_weight", "bias": "bn_bias"}
        fans = (1, 1)
    else:
        raise UnsupportedLayer(
            f"cannot generate weights for {where} (parameter {pname!r}, shape {list(shape)}): supported "
            "parametered layers are Conv1d/2d/3d, Linear and BatchNorm1d/2d/3d"
        )
    if pname not in roles:
        raise UnsupportedLayer(f"cannot generate weights for parameter {pname!r} of {where}: expected weight or bias")
    return roles[pname], fans[0], fans[1]


def _rule(init: str, role: str, fan_in: int, fan_out: int) -> tuple[str, str, float]:
    """``(init name, dist, scale)`` of one tensor; zero-size fans give scale 0 instead of dividing by 0."""
    if role == "bn_weight":
        return "ones", "constant", 1.0
    if role == "bn_bias":
        return "zeros", "constant", 0.0
    if role == "bias":
        if init == "torch_default":
            return "torch_default_bias", "uniform", 1.0 / math.sqrt(fan_in) if fan_in else 0.0
        return "zeros", "constant", 0.0

    def inv(n: int) -> float:
        return 1.0 / n if n else 0.0

    if init == "kaiming_normal":  # gain sqrt(2) (ReLU), std = gain / sqrt(fan_in)
        return init, "normal", math.sqrt(2.0 * inv(fan_in))
    if init == "kaiming_uniform":  # bound = gain * sqrt(3 / fan_in)
        return init, "uniform", math.sqrt(6.0 * inv(fan_in))
    if init == "xavier_normal":  # gain 1, PyTorch's default
        return init, "normal", math.sqrt(2.0 * inv(fan_in + fan_out))
    if init == "xavier_uniform":
        return init, "uniform", math.sqrt(6.0 * inv(fan_in + fan_out))
    # torch_default: kaiming_uniform with a=sqrt(5), i.e. bound = sqrt(6 / ((1 + 5) * fan_in))
    return init, "uniform", math.sqrt(inv(fan_in))


def _named_parameters(module: nn.Module) -> list[tuple[str, nn.Module, str, torch.nn.Parameter]]:
    """``(layer path, layer, parameter name, parameter)`` in ``module.named_parameters()`` order, shared
    modules and parameters once: a hand-written pre-order walk (``named_modules``' generators cost a
    quarter of ``weight_spec``), without a ``get_submodule`` walk per parameter."""
    seen: set[int] = set()
    out: list[tuple[str, nn.Module, str, torch.nn.Parameter]] = []

    def visit(prefix: str, layer: nn.Module) -> None:
        seen.add(id(layer))
        for pname, param in layer._parameters.items():
            if param is not None and id(param) not in seen:
                seen.add(id(param))
                out.append((prefix, layer, pname, param))
        for name, child in layer._modules.items():
            if child is not None and id(child) not in seen:
                visit(f"{prefix}.{name}" if prefix else name, child)

    visit("", module)
    return out


#: TensorSpec by everything it depends on; NB201 networks repeat the same (name, layer, shape) triples
_TENSOR_SPECS: dict[tuple, TensorSpec] = {}


def _tensor_spec(init: str, layer_name: str, layer: nn.Module, pname: str, shape: tuple[int, ...]) -> TensorSpec:
    weight = layer._parameters.get("weight")
    key = (init, layer_name, type(layer), pname, shape, getattr(layer, "transposed", None),
           None if weight is None else tuple(weight.shape))  # fmt: skip
    hit = _TENSOR_SPECS.get(key)
    if hit is not None:
        return hit
    name = f"{layer_name}.{pname}" if layer_name else pname
    role, fan_in, fan_out = _role(layer, layer_name, pname, shape)
    rule, dist, scale = _rule(init, role, fan_in, fan_out)
    spec = TensorSpec(name, shape, role, type(layer).__name__, fan_in, fan_out, rule, dist, scale)
    if len(_TENSOR_SPECS) >= 65536:
        _TENSOR_SPECS.clear()
    _TENSOR_SPECS[key] = spec
    return spec


def weight_spec(module: nn.Module, *, init: str = "kaiming_normal") -> WeightSpec:
    """The :class:`WeightSpec` of a built network (any device, ``meta`` included).

    Args:
        module: the network; its parametered layers must be Conv1d/2d/3d, Linear or BatchNorm1d/2d/3d.
        init: rule for conv and linear weights, one of :data:`INIT_RULES`. Batch-norm weights are 1 and
            biases 0 whatever the rule; conv/linear biases are 0 except under ``torch_default`` (uniform
            on ``+-1/sqrt(fan_in)``, as PyTorch initialises them).

    Raises:
        UnsupportedLayer: a parameter belongs to another kind of layer (the message names it and its type).
        ValueError: ``init`` is unknown, or a tensor has 2**31 elements or more.
    """
    if init not in INIT_RULES:
        raise ValueError(f"init must be one of {list(INIT_RULES)}, got {init!r}")
    tensors = []
    for layer_name, layer, pname, param in _named_parameters(module):
        if isinstance(param, torch.nn.parameter.UninitializedParameter):
            name = f"{layer_name}.{pname}" if layer_name else pname
            raise UnsupportedLayer(f"parameter {name!r} of {type(layer).__name__} is uninitialised (a lazy module)")
        shape = tuple(int(s) for s in param.shape)
        if math.prod(shape) > _MAX_NUMEL:
            name = f"{layer_name}.{pname}" if layer_name else pname
            raise ValueError(f"a generated tensor must have < 2**31 elements, {name!r} has {math.prod(shape)}")
        tensors.append(_tensor_spec(init, layer_name, layer, pname, shape))
    return WeightSpec(tuple(tensors), init)


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
    from wsnas.kernels._weight_gen_ref import mix_keys

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
    from wsnas.kernels._dispatch import use_triton
    from wsnas.kernels._weight_gen_ref import weight_gen_reference

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
        from wsnas.kernels._weight_gen import weight_gen_triton

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
