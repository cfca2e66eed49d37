"""Tracing a network with ``torch.fx`` into a :class:`~wsnas._paramgraph.GraphTemplate`.

The module is traced once per structure (a key made of every submodule's type, hyperparameters and plain
attributes, and the parameter shapes) and the template is cached, so a candidate costs one gather.
Supported: Conv2d (any groups), Linear, BatchNorm1d/2d, ReLU/GELU/SiLU/Tanh (modules or functions),
MaxPool2d/AvgPool2d, AdaptiveAvgPool2d, Identity, Dropout, Flatten, ``Zero``, ``+`` (sums), ``torch.cat``
on channels, channel slicing ``x[:, a:b]``, multiplication by a Python scalar (``* 0`` and
``zeros_like`` are the zero op: no edges, so a part of the graph may be disconnected).

Channel-wise ops (identity, pooling, sums, scalars, zero) stay *pending* as a list of terms until a layer
reads them; then one set of ``sum`` nodes gathers the terms through typed edges (a single plain term
is no node at all). BatchNorm right after a Conv2d/Linear whose output nothing else reads folds onto
that layer's nodes; any other BatchNorm gets ``norm`` nodes fed by ``norm`` edges. AdaptiveAvgPool2d and a
flatten of a ``1 x 1`` map keep the channel nodes (channels become neurons); a flatten of an ``H x W`` map
makes ``H*W`` ``flatten`` nodes per channel, in ``torch.flatten`` order.
"""

from __future__ import annotations

import math
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass, field

import torch
import torch.fx as fx
import torch.nn as nn
import torch.nn.functional as F

from wsnas._errors import UnsupportedLayer
from wsnas._paramgraph import EDGE_TYPES, NODE_FEATURES, NODE_TYPES, GraphTemplate
from wsnas.search_spaces._ops import Zero

__all__ = ["SUPPORTED_LAYERS", "clear_template_cache", "graph_template", "trace_template"]

SUPPORTED_LAYERS: tuple[type[nn.Module], ...] = (
    nn.Conv2d, nn.Linear, nn.BatchNorm1d, nn.BatchNorm2d, nn.ReLU, nn.GELU, nn.SiLU, nn.Tanh,
    nn.MaxPool2d, nn.AvgPool2d, nn.AdaptiveAvgPool2d, nn.Identity, nn.Dropout, nn.Flatten, Zero,
)  # fmt: skip
_ACTS = {nn.ReLU: 1, nn.GELU: 2, nn.SiLU: 3, nn.Tanh: 4}
_ACT_FUNCS = {F.relu: 1, torch.relu: 1, F.gelu: 2, F.silu: 3, torch.tanh: 4, F.tanh: 4}
_ACT_METHODS = {"relu": 1, "tanh": 4}
_NT = {name: i for i, name in enumerate(NODE_TYPES)}
_ET = {name: i for i, name in enumerate(EDGE_TYPES)}
_FN = len(NODE_FEATURES)
_COL = {name: i for i, name in enumerate(NODE_FEATURES)}
_CACHE: OrderedDict[tuple, GraphTemplate] = OrderedDict()
#: templates kept; an NB201 C=8 template is ~0.5 MB, so 512 of them are ~250 MB
_CACHE_SIZE = 512


@dataclass
class _Value:
    """A traced tensor: materialised channel ``nodes [C]``, or pending ``terms`` (src nodes, edge type,
    value, act [C]) summed channel by channel; ``spatial`` is the shape after the channel dim."""

    channels: int
    spatial: tuple[int, ...]
    nodes: torch.Tensor | None = None
    act: torch.Tensor | None = None  # [C] activation code per channel (0: none), with ``nodes``
    terms: list[tuple[torch.Tensor, str, float, torch.Tensor]] = field(default_factory=list)
    producer: fx.Node | None = None  # the Conv2d/Linear node that made ``nodes``, for BN folding


class _Builder:
    """Accumulates nodes, edges and weight placements while the fx graph is interpreted."""

    def __init__(self, k: int, offsets: dict[int, int]) -> None:
        self.k, self.fe, self.offsets = k, k * k + 1, offsets
        self.centre = (k // 2) * k + k // 2
        self.n = 0
        self.node_type: list[torch.Tensor] = []
        self.node_static: dict[tuple[int, int], float] = {}
        self.static_rows: list[tuple[torch.Tensor, int, torch.Tensor | float]] = []
        self.node_w: list[tuple[torch.Tensor, int, torch.Tensor]] = []  # (nodes, col, weight index)
        self.src: list[torch.Tensor] = []
        self.dst: list[torch.Tensor] = []
        self.etype: list[torch.Tensor] = []
        self.e_val: list[tuple[torch.Tensor, torch.Tensor]] = []  # (local edge ids, centre value)
        self.e_act: list[torch.Tensor] = []  # local edge ids whose message passes the source's activation
        self.e_runs: list[tuple[int, int, int, int, int]] = []  # (first edge id, n, weight offset, kh, kw)
        self.e = 0
        self.acts: list[tuple[torch.Tensor, int]] = []  # (nodes, activation code 1..4), last one wins

    def nodes(self, count: int, ntype: str) -> torch.Tensor:
        ids = torch.arange(self.n, self.n + count)
        self.n += count
        self.node_type.append(torch.full((count,), _NT[ntype], dtype=torch.long))
        return ids

    def edges(self, src: torch.Tensor, dst: torch.Tensor, etype: str, act: torch.Tensor) -> torch.Tensor:
        """Add edges ``src[i] -> dst[i]``; ``act [E]`` is the source's activation code on each edge."""
        ids = torch.arange(self.e, self.e + src.numel())
        self.e += src.numel()
        self.src.append(src)
        self.dst.append(dst)
        self.etype.append(torch.full((src.numel(),), _ET[etype], dtype=torch.long))
        self.e_act.append(ids[act != 0])
        return ids

    def channelwise(self, src: torch.Tensor, dst: torch.Tensor, etype: str, value: float, act: torch.Tensor) -> None:
        ids = self.edges(src, dst, etype, act)
        if value != 0.0:
            self.e_val.append((ids, torch.full((ids.numel(),), float(value))))

    def weight(self, param: torch.Tensor) -> int:
        """The offset of ``param`` in the flat weight buffer."""
        return self.offsets[id(param)]


def _key(module: nn.Module, input_shape: Sequence[int] | None) -> tuple:
    parts: list[object] = [None if input_shape is None else tuple(input_shape)]
    for name, m in module.named_modules():
        plain = tuple(
            sorted(
                (k, v)
                for k, v in vars(m).items()
                if not k.startswith("_") and isinstance(v, (int, float, str, bool, tuple))
            )
        )
        parts.append((name, type(m).__qualname__, type(m).__module__, plain))
    parts.append(tuple((n, tuple(p.shape)) for n, p in module.named_parameters()))
    return tuple(parts)


def clear_template_cache() -> None:
    """Forget every cached template."""
    _CACHE.clear()


def graph_template(module: nn.Module, *, input_shape: Sequence[int] | None = None, cache: bool = True) -> GraphTemplate:
    """The (cached) template of ``module``; see :func:`trace_template`. ``cache=False`` always traces."""
    if not cache:
        return trace_template(module, input_shape=input_shape)
    key = _key(module, input_shape)
    hit = _CACHE.get(key)
    if hit is not None:
        _CACHE.move_to_end(key)
        return hit
    template = trace_template(module, input_shape=input_shape)
    _CACHE[key] = template
    if len(_CACHE) > _CACHE_SIZE:
        _CACHE.popitem(last=False)
    return template


class _Tracer(fx.Tracer):
    def is_leaf_module(self, m: nn.Module, qualname: str) -> bool:
        return isinstance(m, SUPPORTED_LAYERS) or super().is_leaf_module(m, qualname)


def _default_shape(module: nn.Module) -> tuple[int, ...]:
    for m in module.modules():
        if isinstance(m, nn.Conv2d):
            return (1, m.in_channels, 32, 32)
        if isinstance(m, nn.Linear):
            return (1, m.in_features)
        if isinstance(m, (nn.BatchNorm1d, nn.BatchNorm2d)):
            return (1, m.num_features, 32, 32) if isinstance(m, nn.BatchNorm2d) else (1, m.num_features)
    raise UnsupportedLayer(
        "param_graph: the module has no Conv2d/Linear/BatchNorm to infer the input shape; pass input_shape"
    )


def _pair(v: int | tuple[int, ...]) -> tuple[int, int]:
    return (v, v) if isinstance(v, int) else (int(v[0]), int(v[1]))


def _window(spatial: tuple[int, ...], k, s, p, d=1, ceil: bool = False) -> tuple[int, ...]:  # noqa: ANN001
    """The spatial shape after a conv/pool window (the usual floor((h + 2p - d(k-1) - 1)/s + 1))."""
    if len(spatial) != 2 or p == "same":
        return spatial
    if p == "valid":
        p = 0
    rnd = math.ceil if ceil else math.floor
    return tuple(
        int(rnd((h + 2 * pp - dd * (kk - 1) - 1) / ss + 1))
        for h, kk, ss, pp, dd in zip(spatial, _pair(k), _pair(s), _pair(p), _pair(d))
    )


def trace_template(module: nn.Module, *, input_shape: Sequence[int] | None = None) -> GraphTemplate:
    """Trace ``module`` with ``torch.fx`` and build its parameter-graph template (layout: :mod:`wsnas._paramgraph`).

    Raises:
        wsnas.UnsupportedLayer: a layer or function outside the supported set, named with its qualified
            name and type; or a forward ``torch.fx`` cannot trace.
    """
    try:
        graph = _Tracer().trace(module)
    except UnsupportedLayer:
        raise
    except Exception as exc:
        raise UnsupportedLayer(
            f"param_graph: torch.fx cannot trace {type(module).__name__}: {type(exc).__name__}: {exc}"
        ) from exc
    shape = tuple(input_shape) if input_shape is not None else _default_shape(module)
    offsets, pos = {}, 0
    for p in module.parameters():
        offsets[id(p)] = pos
        pos += p.numel()
    kernels = [max(_pair(m.kernel_size)) for m in module.modules() if isinstance(m, nn.Conv2d)]
    b = _Builder(max(kernels, default=1), offsets)
    from wsnas._trace_ops import interpret

    out = interpret(graph, module, b, shape)
    return _finish(b, out, pos)


def _finish(b: _Builder, out_nodes: torch.Tensor, num_weights: int) -> GraphTemplate:
    n = b.n
    node_type = torch.cat(b.node_type) if b.node_type else torch.zeros(0, dtype=torch.long)
    node_type[out_nodes] = _NT["output"]
    static = torch.zeros(n, _FN)
    for nodes, col, val in b.static_rows:
        static[nodes, col] = val
    static[out_nodes, _COL["is_output"]] = 1.0
    static[out_nodes, _COL["io_index"]] = torch.arange(out_nodes.numel(), dtype=torch.float32)
    for nodes, code in b.acts:
        static[nodes, _COL["relu"] : _COL["relu"] + 4] = 0.0
        static[nodes, _COL["relu"] - 1 + code] = 1.0
    node_pos = [nodes * _FN + col for nodes, col, _ in b.node_w]
    node_src = [w for _, _, w in b.node_w]
    empty = torch.zeros(0, dtype=torch.long)
    src = torch.cat(b.src) if b.src else empty
    dst = torch.cat(b.dst) if b.dst else empty
    etype = torch.cat(b.etype) if b.etype else empty
    order = torch.argsort(dst, stable=True)
    inv = torch.empty_like(order)
    inv[order] = torch.arange(order.numel())

    runs = []
    for first, count, w_off, kh, kw in b.e_runs:  # a layer's edges stay contiguous after the stable sort
        row = int(inv[first]) if count else 0
        if count and not torch.equal(inv[first : first + count], torch.arange(row, row + count)):
            raise RuntimeError("param_graph internal error: a layer's edges are not contiguous after sorting by dst")
        runs.append((row, count, w_off, kh, kw))
    e = dst.numel()
    value = torch.zeros(e)
    for ids, val in b.e_val:
        value[inv[ids]] = val
    act = torch.zeros(e, dtype=torch.bool)
    for ids in b.e_act:
        act[inv[ids]] = True
    return GraphTemplate(
        num_nodes=n,
        num_weights=num_weights,
        kernel_size=b.k,
        edge_index=torch.stack([src[order], dst[order]]).int(),
        node_type=node_type.to(torch.int8),
        edge_type=etype[order].to(torch.int8),
        in_degree=torch.bincount(dst, minlength=n).int(),
        node_static=static,
        edge_value=value,
        edge_act=act,
        edge_runs=tuple(runs),
        node_pos=(torch.cat(node_pos) if node_pos else empty).int(),
        node_src=(torch.cat(node_src) if node_src else empty).int(),
    )
