"""Tracing a network with ``torch.fx`` into a :class:`~wsnas._paramgraph.GraphTemplate`.

Tracing is hierarchical (:mod:`wsnas._trace_cache`): each non-leaf module's own forward is traced once
per module structure (class, plain attributes, submodule NAMES) with its submodule calls kept whole, and
the interpreter recurses into them, so a new architecture built from known blocks costs no ``torch.fx``
trace at all, only the interpretation (NB201 C=8: ~8 ms for a full trace, well under 1 ms this way).
This adds one assumption: a module's forward must not branch on the types or attributes of its
submodules; ``graph_template(..., cache=False)`` traces the whole network afresh in one piece (the
reference the fast path is tested against). Templates are then cached per whole-network structure.
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
from functools import lru_cache
from typing import NamedTuple

import numpy as np
import torch
import torch.fx as fx
import torch.nn as nn
import torch.nn.functional as F

from wsnas._errors import UnsupportedLayer
from wsnas._paramgraph import EDGE_TYPES, NODE_FEATURES, NODE_TYPES, GraphTemplate
from wsnas._weight_spec import preorder
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
    value, act [C]) summed channel by channel; ``spatial`` is the shape after the channel dim.
    Index arrays are int64 numpy arrays (numpy's small-op overhead is ~5x below torch's; see _Builder)."""

    channels: int
    spatial: tuple[int, ...]
    nodes: np.ndarray | None = None
    act: np.ndarray | None = None  # [C] activation code per channel (0: none), with ``nodes``
    terms: list[tuple[np.ndarray, str, float, np.ndarray]] = field(default_factory=list)
    producer: tuple | None = None  # (frame, fx node) of the Conv2d/Linear that made ``nodes``, for BN folding


class _Builder:
    """Accumulates nodes, edges and weight placements while the fx graph is interpreted.

    Bookkeeping is numpy and per call, not per element: node and edge types are (count, code) runs,
    channel-wise edge values are (count, value) runs, and activation flags per-call masks, all expanded
    once in :func:`_finish` (NB201 C=8: interpretation + finish fell from ~2.5 ms with torch ops per
    call to a few hundred us).
    """

    def __init__(self, k: int, offsets: dict[int, int]) -> None:
        self.k, self.fe, self.offsets = k, k * k + 1, offsets
        self.n = 0
        self.node_runs: list[tuple[int, int]] = []  # (count, node type code)
        self.static_rows: list[tuple[np.ndarray, int, np.ndarray | float]] = []
        self.node_w: list[tuple[np.ndarray, int, np.ndarray]] = []  # (nodes, col, weight index)
        self.src: list[np.ndarray] = []
        self.dst: list[np.ndarray] = []
        self.edge_runs: list[tuple[int, int, float]] = []  # (count, edge type code, centre value)
        self.e_act: list[np.ndarray] = []  # per call: whether each edge's message passes the source's act
        self.e_runs: list[tuple[int, int, int, int, int]] = []  # (first edge id, n, weight offset, kh, kw)
        self.e = 0
        self.acts: list[tuple[np.ndarray, int]] = []  # (nodes, activation code 1..4), last one wins

    def nodes(self, count: int, ntype: str) -> np.ndarray:
        ids = np.arange(self.n, self.n + count)
        self.n += count
        self.node_runs.append((count, _NT[ntype]))
        return ids

    def edges(self, src: np.ndarray, dst: np.ndarray, etype: str, act: np.ndarray, value: float = 0.0) -> int:
        """Add edges ``src[i] -> dst[i]``; ``act [E]`` is the source's activation code on each edge.
        Returns the id of the first new edge."""
        first = self.e
        self.e += src.size
        self.src.append(src)
        self.dst.append(dst)
        self.edge_runs.append((src.size, _ET[etype], value))
        self.e_act.append(act != 0)
        return first

    def channelwise(self, src: np.ndarray, dst: np.ndarray, etype: str, value: float, act: np.ndarray) -> None:
        self.edges(src, dst, etype, act, float(value))

    def weight(self, param: torch.Tensor) -> int:
        """The offset of ``param`` in the flat weight buffer."""
        return self.offsets[id(param)]


def clear_template_cache() -> None:
    """Forget every cached template and one-level graph."""
    from wsnas._trace_cache import clear_level_cache

    _CACHE.clear()
    clear_level_cache()


def graph_template(
    module: nn.Module, *, input_shape: Sequence[int] | None = None, cache: bool = True, memo: bool = True
) -> GraphTemplate:
    """The (cached) template of ``module``; see :func:`trace_template`.

    ``cache=False`` traces the whole network afresh in one piece and caches nothing (the reference path).
    ``memo=False`` keeps the one-level graph cache but skips the whole-template cache and the structure
    key it needs (for callers that keep their own cache, such as :class:`wsnas.CandidateGraphs`).
    """
    if not cache:
        return trace_template(module, input_shape=input_shape, cache=False)
    walk = _walk(module, keyed=memo)
    if walk.key is None:
        return _template(module, walk, input_shape, True)
    key = (None if input_shape is None else tuple(input_shape), walk.key)
    hit = _CACHE.get(key)
    if hit is not None:
        _CACHE.move_to_end(key)
        return hit
    template = _template(module, walk, input_shape, True)
    _CACHE[key] = template
    if len(_CACHE) > _CACHE_SIZE:
        _CACHE.popitem(last=False)
    return template


class _Tracer(fx.Tracer):
    def is_leaf_module(self, m: nn.Module, qualname: str) -> bool:
        return isinstance(m, SUPPORTED_LAYERS) or super().is_leaf_module(m, qualname)


_INTERNAL = frozenset(vars(nn.Module())) - {"training"}  # nn.Module's bookkeeping: not structure
_PLAIN = (int, float, str, bool, tuple, type(None))


class _Walk(NamedTuple):
    """One pass over a network's modules (see :func:`_walk`)."""

    key: tuple | None  # the structure key of the template cache (None: an attribute is not hashable)
    offsets: dict[int, int]  # id(parameter) -> offset in the flat buffer, ``parameters()`` order
    num_weights: int
    kernel: int  # the largest Conv2d kernel size (1 without any)
    shape: tuple[int, ...] | None  # the default input shape, from the first Conv2d/Linear/BatchNorm


def _walk(module: nn.Module, keyed: bool = True) -> _Walk:
    """One hand-written pre-order pass over ``module.modules()`` order: the template cache key (every
    module's name, class, plain attributes and parameter shapes; ``None`` unless ``keyed``), the
    parameter offsets, the largest kernel and the default input shape (NB201 C=8: ~0.1 ms, 4x cheaper
    than ``named_modules`` + ``named_parameters`` with a generic key, which cost as much as
    interpreting the network)."""
    offsets: dict[int, int] = {}
    parts: list[object] = []
    weights, kernel, shape = 0, 1, None
    for prefix, m in preorder(module):
        d = m.__dict__
        if keyed:
            names = sorted(d.keys() - _INTERNAL)  # a C-level set difference: ~3x cheaper than testing each key
            parts.append((prefix, m.__class__, tuple((k, d[k]) for k in names if isinstance(d[k], _PLAIN))))
        for name, p in d["_parameters"].items():
            if p is not None and id(p) not in offsets:
                offsets[id(p)] = weights
                weights += p.numel()
                if keyed:
                    parts.append((name, p.shape))
        if isinstance(m, nn.Conv2d):
            kernel = max(kernel, *_pair(m.kernel_size))
            shape = shape or (1, m.in_channels, 32, 32)
        elif isinstance(m, nn.Linear):
            shape = shape or (1, m.in_features)
        elif isinstance(m, (nn.BatchNorm1d, nn.BatchNorm2d)):
            c = m.num_features
            shape = shape or ((1, c, 32, 32) if isinstance(m, nn.BatchNorm2d) else (1, c))
    if not keyed:
        return _Walk(None, offsets, weights, kernel, shape)
    key: tuple | None = tuple(parts)
    try:
        hash(key)
    except TypeError:  # e.g. a tuple attribute holding a list
        key = None
    return _Walk(key, offsets, weights, kernel, shape)


def _pair(v: int | tuple[int, ...]) -> tuple[int, int]:
    return (v, v) if isinstance(v, int) else (int(v[0]), int(v[1]))


@lru_cache(maxsize=4096)  # ~5k calls per 250 NB201 nets with a handful of distinct arguments
def _window_cached(spatial: tuple[int, ...], k, s, p, d=1, ceil: bool = False) -> tuple[int, ...]:  # noqa: ANN001
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


def _window(spatial: tuple[int, ...], k, s, p, d=1, ceil: bool = False) -> tuple[int, ...]:  # noqa: ANN001
    """The spatial shape after a conv/pool window (the usual floor((h + 2p - d(k-1) - 1)/s + 1))."""
    try:
        return _window_cached(spatial, k, s, p, d, ceil)
    except TypeError:  # a list argument (F.avg_pool2d(x, [2, 2])): not hashable
        return _window_cached.__wrapped__(spatial, k, s, p, d, ceil)


def trace_template(
    module: nn.Module, *, input_shape: Sequence[int] | None = None, cache: bool = True
) -> GraphTemplate:
    """Trace ``module`` with ``torch.fx`` and build its parameter-graph template (layout: :mod:`wsnas._paramgraph`).

    With ``cache`` (the default) each non-leaf module's one-level graph comes from the structure cache of
    :mod:`wsnas._trace_cache` (a module's forward must not branch on its submodules' types or
    attributes); ``cache=False`` traces the whole network afresh in one piece.

    Raises:
        wsnas.UnsupportedLayer: a layer or function outside the supported set, named with its qualified
            name and type; or a forward ``torch.fx`` cannot trace.
    """
    return _template(module, _walk(module), input_shape, cache)


def _template(module: nn.Module, walk: _Walk, input_shape: Sequence[int] | None, cache: bool) -> GraphTemplate:
    from wsnas._trace_cache import Frame, full_graph, one_level
    from wsnas._trace_ops import interpret

    graph = one_level(module) if cache else full_graph(module)
    if input_shape is None and walk.shape is None:
        raise UnsupportedLayer(
            "param_graph: the module has no Conv2d/Linear/BatchNorm to infer the input shape; pass input_shape"
        )
    shape = tuple(input_shape) if input_shape is not None else walk.shape
    b = _Builder(walk.kernel, walk.offsets)
    out = interpret(Frame(module, graph, cache=cache), b, shape)
    return _finish(b, out, walk.num_weights)


def _finish(b: _Builder, out_nodes: np.ndarray, num_weights: int) -> GraphTemplate:
    n = b.n
    empty = np.zeros(0, dtype=np.int64)
    if b.node_runs:
        counts, codes = zip(*b.node_runs)
        node_type = np.repeat(np.array(codes, dtype=np.int8), counts)
    else:
        node_type = np.zeros(0, dtype=np.int8)
    node_type[out_nodes] = _NT["output"]
    static = np.zeros((n, _FN), dtype=np.float32)
    for nodes, col, val in b.static_rows:
        static[nodes, col] = val
    static[out_nodes, _COL["is_output"]] = 1.0
    static[out_nodes, _COL["io_index"]] = np.arange(out_nodes.size, dtype=np.float32)
    for nodes, code in b.acts:
        static[nodes, _COL["relu"] : _COL["relu"] + 4] = 0.0
        static[nodes, _COL["relu"] - 1 + code] = 1.0
    node_pos = np.concatenate([nodes * _FN + col for nodes, col, _ in b.node_w]) if b.node_w else empty
    node_src = np.concatenate([w for _, _, w in b.node_w]) if b.node_w else empty
    src = np.concatenate(b.src) if b.src else empty
    dst = np.concatenate(b.dst) if b.dst else empty
    if b.edge_runs:
        counts, codes, values = zip(*b.edge_runs)
        etype = np.repeat(np.array(codes, dtype=np.int8), counts)
        value = np.repeat(np.array(values, dtype=np.float32), counts)
        act = np.concatenate(b.e_act)
    else:
        etype, value, act = np.zeros(0, np.int8), np.zeros(0, np.float32), np.zeros(0, bool)
    order = np.argsort(dst, kind="stable")
    inv = np.empty_like(order)
    inv[order] = np.arange(order.size)

    runs = []
    for first, count, w_off, kh, kw in b.e_runs:  # a layer's edges stay contiguous after the stable sort
        row = int(inv[first]) if count else 0
        if count and not np.array_equal(inv[first : first + count], np.arange(row, row + count)):
            raise RuntimeError("param_graph internal error: a layer's edges are not contiguous after sorting by dst")
        runs.append((row, count, w_off, kh, kw))
    t = torch.from_numpy
    return GraphTemplate(
        num_nodes=n,
        num_weights=num_weights,
        kernel_size=b.k,
        edge_index=t(np.stack([src[order], dst[order]]).astype(np.int32)),
        node_type=t(node_type),
        edge_type=t(etype[order]),
        in_degree=t(np.bincount(dst, minlength=n).astype(np.int32)),
        node_static=t(static),
        edge_value=t(value[order]),
        edge_act=t(act[order]),
        edge_runs=tuple(runs),
        node_pos=t(node_pos.astype(np.int32)),
        node_src=t(node_src.astype(np.int32)),
    )
