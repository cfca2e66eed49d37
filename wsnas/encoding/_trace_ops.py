"""The symbolic interpreter behind :func:`wsnas.encoding._trace.trace_template`: one handler per supported op.

Each fx node becomes a :class:`~wsnas.encoding._trace_core.Value` (channel nodes, or pending channel-wise terms);
layers add nodes, edges and weight placements to the :class:`~wsnas.encoding._trace_core.Builder`. A ``call_module``
to a supported layer is handled here; a call to any other (non-``torch.nn``) module recurses into that
module's one-level graph (:class:`~wsnas.encoding._trace_cache.Frame`), in call order, so the nodes come out in
the same order as interpreting the whole network traced in one piece.
"""

from __future__ import annotations

import math
import operator
from collections.abc import Sequence
from functools import lru_cache

import numpy as np
import torch
import torch.fx as fx
import torch.nn as nn
import torch.nn.functional as F

from wsnas._errors import UnsupportedLayer
from wsnas.encoding._layers import Zero
from wsnas.encoding._trace_cache import Frame, single_user
from wsnas.encoding._trace_core import ACT_FUNCS, ACT_METHODS, ACTS, COL, SUPPORTED_LAYERS, Builder, Value, pair, window

__all__ = ["interpret"]


class _Size:
    """A traced ``x.size()``/``x.shape`` (or an entry of it): only used to spell a flatten as a view."""


@lru_cache(maxsize=1024)
def _zeros(c: int) -> np.ndarray:
    """A shared read-only ``[c]`` zero array (no value's arrays are ever written in place)."""
    z = np.zeros(c, dtype=np.int64)
    z.flags.writeable = False
    return z


@lru_cache(maxsize=1024)
def _dense(c_out: int, ig: int, og: int) -> tuple[np.ndarray, np.ndarray]:
    """``(o, i)`` of every edge ``e = o * ig + i`` of a conv with ``ig``/``og`` channels per group: the
    output channel and the input channel (across groups). Cached: a layer then costs two gathers."""
    o = np.repeat(np.arange(c_out), ig)
    chan = (o // og) * ig + np.tile(np.arange(ig), c_out)
    for a in (o, chan):
        a.flags.writeable = False
    return o, chan


def _terms(v: Value) -> list[tuple[np.ndarray, str, float, np.ndarray]]:
    return [(v.nodes, "sum", 1.0, v.act)] if v.nodes is not None else v.terms


def _materialize(v: Value, b: Builder) -> Value:
    """Give a pending value channel nodes (in place, so every reader shares them)."""
    if v.nodes is not None:
        return v
    if len(v.terms) == 1 and v.terms[0][1] == "sum" and v.terms[0][2] == 1.0:
        v.nodes, v.act = v.terms[0][0], v.terms[0][3]  # a plain pass-through: no new nodes
    else:
        ids = b.nodes(v.channels, "sum" if v.terms else "zero")
        for src, etype, value, act in v.terms:
            b.channelwise(src, ids, etype, value, act)
        v.nodes, v.act = ids, _zeros(v.channels)
    v.terms = []
    return v


def _linear(name: str, site: tuple, m: nn.Conv2d | nn.Linear, x: Value, b: Builder) -> Value:
    """Conv2d (any groups) or Linear: one edge per connected (in, out) channel pair, kernel centred."""
    is_conv = isinstance(m, nn.Conv2d)
    c_in, c_out = (m.in_channels, m.out_channels) if is_conv else (m.in_features, m.out_features)
    if x.channels != c_in:
        raise ValueError(f"param_graph: {name!r} expects {c_in} input channels, got a tensor with {x.channels}")
    if not is_conv and x.spatial:
        raise UnsupportedLayer(
            f"param_graph: Linear {name!r} applied to a [C, {', '.join(map(str, x.spatial))}] map; "
            "flatten (or pool) to [B, features] first"
        )
    x = _materialize(x, b)
    groups = m.groups if is_conv else 1
    kh, kw = pair(m.kernel_size) if is_conv else (1, 1)
    ig, og = c_in // groups, c_out // groups
    out = b.nodes(c_out, "conv" if is_conv else "linear")
    o, chan = _dense(c_out, ig, og)
    first = b.edges(x.nodes[chan], o + int(out[0]) if c_out else o, "conv" if is_conv else "linear", x.act[chan])
    # edge e = o * ig + i reads weight[o, i] = flat[offset + e*kh*kw : ...]: one contiguous run
    b.e_runs.append((first if o.size else 0, o.size, b.weight(m.weight), kh, kw))
    if m.bias is not None:
        b.node_w.append((out, COL["bias"], b.weight(m.bias) + np.arange(c_out)))
    spatial = window(x.spatial, m.kernel_size, m.stride, m.padding, m.dilation) if is_conv else ()
    return Value(c_out, spatial, nodes=out, act=_zeros(c_out), producer=site)


def _norm(m: nn.BatchNorm1d | nn.BatchNorm2d, x: Value, b: Builder) -> Value:
    """BatchNorm: folds onto the nodes of the Conv2d/Linear that feeds only it, else its own nodes."""
    if x.channels != m.num_features:
        raise ValueError(f"param_graph: BatchNorm with {m.num_features} features applied to {x.channels} channels")
    fold = x.nodes is not None and x.producer is not None and not x.act.any() and single_user(*x.producer)
    if fold:
        target = x.nodes
    else:
        x = _materialize(x, b)
        target = b.nodes(x.channels, "norm")
        b.channelwise(x.nodes, target, "norm", 1.0, x.act)
    b.static_rows.append((target, COL["has_norm"], 1.0))
    if m.weight is not None:
        b.node_w.append((target, COL["gamma"], b.weight(m.weight) + np.arange(x.channels)))
    if m.bias is not None:
        b.node_w.append((target, COL["beta"], b.weight(m.bias) + np.arange(x.channels)))
    return Value(x.channels, x.spatial, nodes=target, act=_zeros(x.channels))


def _activate(x: Value, code: int, b: Builder) -> Value:
    x = _materialize(x, b)
    b.acts.append((x.nodes, code))
    return Value(x.channels, x.spatial, nodes=x.nodes, act=np.full(x.channels, code, dtype=np.int64))


def _pool(x: Value, kind: str, k, s, p, ceil: bool, b: Builder) -> Value:  # noqa: ANN001
    x = _materialize(x, b)
    kh, kw = pair(k)
    value = 1.0 / (kh * kw) if kind == "avg_pool" else 1.0
    spatial = window(x.spatial, k, k if s is None or s == () else s, p, 1, ceil)
    return Value(x.channels, spatial, terms=[(x.nodes, kind, value, x.act)])


def _passthrough(x: Value, spatial: tuple[int, ...]) -> Value:
    return Value(x.channels, spatial, nodes=x.nodes, act=x.act, terms=list(x.terms))


def _adaptive(x: Value, size) -> Value:  # noqa: ANN001
    size = (size, size) if isinstance(size, int) else tuple(size)
    return _passthrough(x, tuple(h if s is None else s for h, s in zip(x.spatial, size)))


def _flatten(x: Value, start: int, b: Builder) -> Value:
    if start != 1:
        raise UnsupportedLayer(f"param_graph: only flatten from dim 1 is supported, got start_dim={start}")
    hw = math.prod(x.spatial)
    if hw == 1:
        return _passthrough(x, ())
    x = _materialize(x, b)
    out = b.nodes(x.channels * hw, "flatten")  # torch.flatten order: channel-major
    b.channelwise(np.repeat(x.nodes, hw), out, "flatten", 1.0, np.repeat(x.act, hw))
    return Value(x.channels * hw, (), nodes=out, act=_zeros(x.channels * hw))


def _scale(x: Value, s: float) -> Value:
    if s == 0:
        return Value(x.channels, x.spatial)
    return Value(x.channels, x.spatial, terms=[(src, t, v * s, a) for src, t, v, a in _terms(x)])


def _add(a: Value, c: Value) -> Value:
    if a.channels != c.channels:
        raise ValueError(f"param_graph: adding tensors of {a.channels} and {c.channels} channels")
    return Value(a.channels, a.spatial, terms=_terms(a) + _terms(c))


def _cat(parts: Sequence[Value], dim: int, b: Builder) -> Value:
    if not parts or not all(isinstance(p, Value) for p in parts):
        raise UnsupportedLayer("param_graph: torch.cat of something other than traced tensors")
    if dim not in (1, -1 - len(parts[0].spatial)):
        raise UnsupportedLayer(f"param_graph: torch.cat is supported on the channel dim (1) only, got dim={dim}")
    parts = [_materialize(p, b) for p in parts]
    return Value(
        sum(p.channels for p in parts), parts[0].spatial,
        nodes=np.concatenate([p.nodes for p in parts]), act=np.concatenate([p.act for p in parts]),
    )  # fmt: skip


def _getitem(x: object, idx: object, b: Builder) -> object:
    if isinstance(x, _Size):
        return x
    if isinstance(x, (tuple, list)) and isinstance(idx, int):  # a submodule's tuple output
        return x[idx]
    if not isinstance(x, Value):
        raise UnsupportedLayer(f"param_graph: indexing {type(x).__name__} is not supported")
    idx = idx if isinstance(idx, tuple) else (idx,)
    full = slice(None)
    ok = len(idx) >= 2 and idx[0] == full and isinstance(idx[1], slice)
    ok = ok and all(i == full or i is Ellipsis for i in idx[2:])
    if not ok:
        raise UnsupportedLayer(f"param_graph: only channel slicing x[:, a:b] is supported, got index {idx!r}")
    x = _materialize(x, b)
    keep = np.arange(x.channels)[idx[1]]
    return Value(keep.size, x.spatial, nodes=x.nodes[keep], act=x.act[keep])


def _number(v: object) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def _call(fn: str, target: object, args: list, kwargs: dict, b: Builder) -> object:  # noqa: C901
    """A call_function (``fn`` = 'f') or call_method (``fn`` = 'm') node on interpreted arguments."""
    x = args[0] if args else None
    name = target if isinstance(target, str) else getattr(target, "__name__", repr(target))
    if fn == "f" and target in ACT_FUNCS or fn == "m" and target in ACT_METHODS:
        return _activate(x, ACT_FUNCS[target] if fn == "f" else ACT_METHODS[target], b)
    if (fn == "f" and target in (operator.add, operator.iadd, torch.add)) or (
        fn == "m" and target in ("add", "__add__")
    ):
        if isinstance(x, Value) and isinstance(args[1], Value) and kwargs.get("alpha", 1) == 1:
            return _add(x, args[1])
    elif (fn == "f" and target in (operator.mul, operator.imul, torch.mul)) or (fn == "m" and target == "mul"):
        a, c = args[0], args[1]
        if isinstance(a, Value) and _number(c):
            return _scale(a, float(c))
        if isinstance(c, Value) and _number(a):
            return _scale(c, float(a))
    elif fn == "f" and target is torch.zeros_like:
        return Value(x.channels, x.spatial)
    elif fn == "f" and target in (torch.cat, torch.concat):
        return _cat(x, kwargs.get("dim", args[1] if len(args) > 1 else 0), b)
    elif fn == "f" and target is operator.getitem:
        return _getitem(x, args[1], b)
    elif (fn == "f" and target is torch.flatten) or (fn == "m" and target == "flatten"):
        end = kwargs.get("end_dim", args[2] if len(args) > 2 else -1)
        if end == -1:
            return _flatten(x, kwargs.get("start_dim", args[1] if len(args) > 1 else 0), b)
    elif fn == "m" and target in ("view", "reshape"):
        shape = args[1:] if len(args) > 2 or not isinstance(args[1], (tuple, list)) else args[1]
        if len(shape) == 2 and isinstance(shape[0], (_Size, int)) and shape[1] == -1:
            return _flatten(x, 1, b)
    elif (fn == "m" and target in ("size", "contiguous")) or (fn == "f" and target is getattr and args[1] == "shape"):
        return _Size() if target != "contiguous" else x
    elif fn == "f" and target is F.adaptive_avg_pool2d:
        return _adaptive(x, kwargs.get("output_size", args[1] if len(args) > 1 else None))
    elif fn == "f" and target in (F.avg_pool2d, F.max_pool2d):
        k = kwargs.get("kernel_size", args[1] if len(args) > 1 else None)
        s = kwargs.get("stride", args[2] if len(args) > 2 else None)
        p = kwargs.get("padding", args[3] if len(args) > 3 else 0)
        return _pool(
            x, "avg_pool" if target is F.avg_pool2d else "max_pool", k, s, p, kwargs.get("ceil_mode", False), b
        )
    raise UnsupportedLayer(
        f"param_graph: function {name!r} with these arguments is not supported (parameter graphs know "
        "+, * scalar, cat on channels, x[:, a:b], flatten, zeros_like, relu/gelu/silu/tanh, pooling)"
    )


def _unsupported(name: str, m: nn.Module) -> UnsupportedLayer:
    kind = f"{type(m).__module__}.{type(m).__qualname__}"
    names = ", ".join(t.__name__ for t in SUPPORTED_LAYERS)
    return UnsupportedLayer(f"param_graph: layer {name!r} of type {kind} is not supported; supported layers: {names}")


def _module(name: str, site: tuple, m: nn.Module, x: object, b: Builder) -> Value:
    """A supported layer called on ``x``; ``name`` is its qualified name, ``site`` its (frame, fx node)."""
    if not isinstance(x, Value):
        raise UnsupportedLayer(f"param_graph: layer {name!r} called on {type(x).__name__}, not a traced tensor")
    if isinstance(m, (nn.Conv2d, nn.Linear)):
        return _linear(name, site, m, x, b)
    if isinstance(m, (nn.BatchNorm1d, nn.BatchNorm2d)):
        return _norm(m, x, b)
    if type(m) in ACTS:
        return _activate(x, ACTS[type(m)], b)
    if isinstance(m, (nn.MaxPool2d, nn.AvgPool2d)):
        kind = "avg_pool" if isinstance(m, nn.AvgPool2d) else "max_pool"
        return _pool(x, kind, m.kernel_size, m.stride, m.padding, m.ceil_mode, b)
    if isinstance(m, nn.AdaptiveAvgPool2d):
        return _adaptive(x, m.output_size)
    if isinstance(m, nn.Identity):
        x = _materialize(x, b)
        return Value(x.channels, x.spatial, terms=[(x.nodes, "skip", 1.0, x.act)])
    if isinstance(m, nn.Flatten):
        if m.end_dim != -1:
            raise UnsupportedLayer(
                f"param_graph: Flatten {name!r} must flatten to the last dim, got end_dim={m.end_dim}"
            )
        return _flatten(x, m.start_dim, b)
    if isinstance(m, Zero):
        return Value(x.channels, x.spatial)
    return x  # Dropout


def _bind(frame: Frame, node: fx.Node, args: tuple, kwargs: dict) -> object:
    """The value a child frame's placeholder receives from its call's arguments (or its default)."""
    i = frame.placeholder_index(node)
    if node.target.startswith("*"):
        raise UnsupportedLayer(f"param_graph: {frame.prefix[:-1]!r}: a forward with *args/**kwargs is not supported")
    if i < len(args):
        return args[i]
    if node.target in kwargs:
        return kwargs[node.target]
    if node.args:
        return node.args[0]
    raise UnsupportedLayer(f"param_graph: {frame.prefix[:-1]!r} called without its argument {node.target!r}")


def _node_tuple(graph: fx.Graph) -> tuple[fx.Node, ...]:
    """The graph's nodes in order, kept on the graph: cached one-level graphs are interpreted once per
    network that uses them, and walking fx's linked node list each time cost ~10% of a template."""
    nodes = graph.__dict__.get("_wsnas_nodes")  # wsnas never edits a graph after tracing it
    if nodes is None:
        nodes = graph.__dict__["_wsnas_nodes"] = tuple(graph.nodes)
    return nodes


def _run(frame: Frame, b: Builder, args: tuple, kwargs: dict, shape: tuple[int, ...] | None) -> object:
    """Interpret ``frame``'s graph on ``args``/``kwargs`` (the root: on a fresh input of ``shape``)."""
    env: dict[fx.Node, object] = {}
    n_inputs = 0
    lookup = env.__getitem__
    for node in _node_tuple(frame.graph):
        op = node.op
        if op == "placeholder":
            if shape is None:
                env[node] = _bind(frame, node, args, kwargs)
                continue
            if n_inputs:
                raise UnsupportedLayer(f"param_graph: one tensor input is supported, got a second one {node.target!r}")
            n_inputs = c = int(shape[1])
            ids = b.nodes(c, "input")
            b.static_rows += [(ids, COL["is_input"], 1.0), (ids, COL["io_index"], np.arange(c, dtype=np.float32))]
            env[node] = Value(c, tuple(int(s) for s in shape[2:]), nodes=ids, act=_zeros(c))
            continue
        a = fx.node.map_arg(node.args, lookup)
        kw = fx.node.map_arg(node.kwargs, lookup)
        if op == "call_module":
            m = frame.resolve(node)
            if isinstance(m, Frame):
                env[node] = _run(m, b, a, kw, None)
                continue
            name = frame.prefix + node.target
            if not isinstance(m, SUPPORTED_LAYERS):
                raise _unsupported(name, m)
            env[node] = _module(name, (frame, node), m, a[0] if a else None, b)
        elif op in ("call_function", "call_method"):
            env[node] = _call("f" if op == "call_function" else "m", node.target, list(a), dict(kw), b)
        elif op == "get_attr":
            raise UnsupportedLayer(
                f"param_graph: reading the tensor attribute {frame.prefix + node.target!r} in forward is not supported"
            )
        else:  # output
            return a[0]
    raise UnsupportedLayer("param_graph: the traced graph has no output")


def interpret(frame: Frame, b: Builder, shape: tuple[int, ...]) -> np.ndarray:
    """Run the root ``frame`` symbolically on an input of ``shape``; returns the output node ids ``[C_out]``."""
    out = _run(frame, b, (), {}, shape)
    if not isinstance(out, Value):
        raise UnsupportedLayer(f"param_graph: the network must return one tensor, got {type(out).__name__}")
    out = _materialize(out, b)
    n_inputs = int(shape[1])
    if bool((out.nodes < n_inputs).any()):  # an input channel passed straight out: give it its own node
        ids = b.nodes(out.channels, "sum")
        b.channelwise(out.nodes, ids, "skip", 1.0, out.act)
        return ids
    return out.nodes
