"""Tracing a network with ``torch.fx`` into a :class:`~wsnas.encoding._paramgraph.GraphTemplate`.

Tracing is hierarchical (:mod:`wsnas.encoding._trace_cache`): each non-leaf module's own forward is traced once
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

from collections import OrderedDict
from collections.abc import Sequence
from typing import NamedTuple

import numpy as np
import torch
import torch.nn as nn

from wsnas._errors import UnsupportedLayer
from wsnas.encoding._paramgraph import GraphTemplate, ParamGraph
from wsnas.encoding._trace_cache import Frame, clear_level_cache, full_graph, one_level
from wsnas.encoding._trace_core import COL, FN, NT, SUPPORTED_LAYERS, Builder, pair
from wsnas.encoding._trace_ops import interpret
from wsnas.encoding._weight_spec import preorder

__all__ = ["SUPPORTED_LAYERS", "clear_template_cache", "graph_template", "param_graph", "trace_template"]

_CACHE: OrderedDict[tuple, GraphTemplate] = OrderedDict()
#: templates kept; an NB201 C=8 template is ~0.5 MB, so 512 of them are ~250 MB
_CACHE_SIZE = 512


def clear_template_cache() -> None:
    """Forget every cached template and one-level graph."""
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



def param_graph(
    module: nn.Module, weights: torch.Tensor | None = None, *, input_shape: Sequence[int] | None = None
) -> ParamGraph:
    """The parameter graph of ``module`` with one candidate's weights.

    Args:
        module: a network made of supported layers (see :mod:`wsnas.encoding._trace`); may live on ``meta``.
        weights: ``[P]`` float32, the parameters in ``module.named_parameters()`` order, each flattened
            and concatenated; ``None`` takes the module's own parameters.
        input_shape: the input's shape ``(B, C, H, W)`` or ``(B, F)``; needed only when a flatten sees a
            spatial map (defaults: first Conv2d -> ``(1, in_channels, 32, 32)``, first Linear -> ``(1, in)``).

    Raises:
        wsnas.UnsupportedLayer: the module holds a layer or function the tracer does not support.
    """
    template = graph_template(module, input_shape=input_shape)
    if weights is None:
        weights = (
            torch.cat([p.detach().reshape(-1) for p in module.parameters()]) if template.num_weights else torch.zeros(0)
        )
    return template.fill(weights)


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
            kernel = max(kernel, *pair(m.kernel_size))
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


def trace_template(
    module: nn.Module, *, input_shape: Sequence[int] | None = None, cache: bool = True
) -> GraphTemplate:
    """Trace ``module`` with ``torch.fx`` and build its parameter-graph template (layout:
    :mod:`wsnas.encoding._paramgraph`).

    With ``cache`` (the default) each non-leaf module's one-level graph comes from the structure cache of
    :mod:`wsnas.encoding._trace_cache` (a module's forward must not branch on its submodules' types or
    attributes); ``cache=False`` traces the whole network afresh in one piece.

    Raises:
        wsnas.UnsupportedLayer: a layer or function outside the supported set, named with its qualified
            name and type; or a forward ``torch.fx`` cannot trace.
    """
    return _template(module, _walk(module), input_shape, cache)


def _template(module: nn.Module, walk: _Walk, input_shape: Sequence[int] | None, cache: bool) -> GraphTemplate:
    graph = one_level(module) if cache else full_graph(module)
    if input_shape is None and walk.shape is None:
        raise UnsupportedLayer(
            "param_graph: the module has no Conv2d/Linear/BatchNorm to infer the input shape; pass input_shape"
        )
    shape = tuple(input_shape) if input_shape is not None else walk.shape
    b = Builder(walk.kernel, walk.offsets)
    out = interpret(Frame(module, graph, cache=cache), b, shape)
    return _finish(b, out, walk.num_weights)


def _finish(b: Builder, out_nodes: np.ndarray, num_weights: int) -> GraphTemplate:
    n = b.n
    empty = np.zeros(0, dtype=np.int64)
    if b.node_runs:
        counts, codes = zip(*b.node_runs)
        node_type = np.repeat(np.array(codes, dtype=np.int8), counts)
    else:
        node_type = np.zeros(0, dtype=np.int8)
    node_type[out_nodes] = NT["output"]
    static = np.zeros((n, FN), dtype=np.float32)
    for nodes, col, val in b.static_rows:
        static[nodes, col] = val
    static[out_nodes, COL["is_output"]] = 1.0
    static[out_nodes, COL["io_index"]] = np.arange(out_nodes.size, dtype=np.float32)
    for nodes, code in b.acts:
        static[nodes, COL["relu"] : COL["relu"] + 4] = 0.0
        static[nodes, COL["relu"] - 1 + code] = 1.0
    node_pos = np.concatenate([nodes * FN + col for nodes, col, _ in b.node_w]) if b.node_w else empty
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
