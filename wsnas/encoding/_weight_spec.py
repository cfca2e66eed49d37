"""Weight specs: every parameter tensor of a built network, with what generation needs.

A :class:`WeightSpec` lists every parameter tensor of a built ``nn.Module`` in ``named_parameters()``
order, with its shape, fan-in/out, init rule and role; :func:`wsnas.generate` (:mod:`wsnas.encoding._weights`)
turns (spec, seed) pairs into weights. Nothing here is written per search space: roles come from the
layer types (Conv, Linear, BatchNorm), rules from :data:`INIT_RULES`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import cached_property
from typing import TYPE_CHECKING

import torch

from wsnas._errors import UnsupportedLayer

if TYPE_CHECKING:
    import torch.nn as nn

__all__ = ["INIT_RULES", "ROLES", "TensorSpec", "WeightSpec", "weight_spec"]

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


def preorder(module: nn.Module) -> list[tuple[str, nn.Module]]:
    """``(path, module)`` in ``module.named_modules()`` order, each module once: a hand-written pre-order
    walk (``named_modules``' nested generators cost a quarter of ``weight_spec``). Shared with the
    tracer's structure walk (:func:`wsnas.encoding._trace._walk`)."""
    seen: set[int] = set()
    out: list[tuple[str, nn.Module]] = []

    def visit(prefix: str, layer: nn.Module) -> None:
        seen.add(id(layer))
        out.append((prefix, layer))
        for name, child in layer._modules.items():
            if child is not None and id(child) not in seen:
                visit(f"{prefix}.{name}" if prefix else name, child)

    visit("", module)
    return out


def _named_parameters(module: nn.Module) -> list[tuple[str, nn.Module, str, torch.nn.Parameter]]:
    """``(layer path, layer, parameter name, parameter)`` in ``module.named_parameters()`` order, shared
    parameters once, without a ``get_submodule`` walk per parameter."""
    seen: set[int] = set()
    out: list[tuple[str, nn.Module, str, torch.nn.Parameter]] = []
    for prefix, layer in preorder(module):
        for pname, param in layer._parameters.items():
            if param is not None and id(param) not in seen:
                seen.add(id(param))
                out.append((prefix, layer, pname, param))
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
