"""One-level ``torch.fx`` graphs, cached per module structure, for the hierarchical tracer
(:mod:`wsnas.encoding._trace`).

Each non-leaf module is traced on its own with every submodule call kept as a ``call_module`` node (a
*one-level* graph); the interpreter recurses into a non-leaf call with that module's own one-level graph.
A one-level graph is cached under a key made of the module's class, its plain attributes (numbers,
strings, and tuples/lists/dicts/sets of them, ``training`` included) and the NAMES of its submodules
(looking through ``ModuleDict``/``ModuleList`` containers, whose entries a forward reads by key or
index), but not their types: every NB201 cell shares one graph whatever its operations.

Assumption: a module's forward must not branch on the types or attributes of its submodules (only on
its own plain attributes and on which submodule names exist). A module with an attribute that is not
plain, or whose graph calls a module its key does not name (``self.seq[0](x)`` or a method of a
child), is traced afresh each time, which is correct but slow. ``graph_template(..., cache=False)``
traces the whole network in one piece, as the reference.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass, field

import torch.fx as fx
import torch.nn as nn

from wsnas._errors import UnsupportedLayer
from wsnas.encoding._trace_core import SUPPORTED_LAYERS, FlatTracer

__all__ = ["Frame", "clear_level_cache", "is_torch_leaf", "one_level", "single_user"]

#: nn.Module's own bookkeeping attributes (hooks, parameter dicts, ...), not part of a module's structure
_INTERNAL = frozenset(vars(nn.Module())) - {"training"}
_CONTAINERS = (nn.ModuleDict, nn.ModuleList)
_LEVELS: OrderedDict[tuple, fx.Graph] = OrderedDict()
#: one-level graphs kept; NB201/NB101/MacroCNN/GraphSpace need under 20 distinct ones, each a few kB
_LEVELS_SIZE = 1024


class _Unkeyable(Exception):
    """An attribute that cannot be part of a cache key."""


def _freeze(v: object) -> object:
    """A hashable, type-tagged copy of a plain value (``1``, ``1.0`` and ``True`` stay different)."""
    if v is None or isinstance(v, (bool, int, float, str, bytes)):
        return (v.__class__, v)
    if isinstance(v, (tuple, list)):
        return (v.__class__, tuple(_freeze(x) for x in v))
    if isinstance(v, dict):
        return (dict, tuple((_freeze(k), _freeze(x)) for k, x in v.items()))
    if isinstance(v, (set, frozenset)):
        return (frozenset, frozenset(_freeze(x) for x in v))
    raise _Unkeyable


def _names(module: nn.Module, prefix: str, out: list[str]) -> None:
    for name, child in module._modules.items():
        if child is None:
            continue
        out.append(prefix + name)
        if isinstance(child, _CONTAINERS):
            _names(child, f"{prefix}{name}.", out)


def _level_key(module: nn.Module) -> tuple | None:
    """The cache key of ``module``'s one-level graph, or None when an attribute is not plain."""
    d = module.__dict__
    try:  # sorted C-level set difference: ~3x cheaper than testing each of nn.Module's ~20 internal keys
        attrs = tuple((k, _freeze(d[k])) for k in sorted(d.keys() - _INTERNAL))
    except _Unkeyable:
        return None
    names: list[str] = []
    _names(module, "", names)
    return (module.__class__, attrs, tuple(names))


class _OneLevel(fx.Tracer):
    """Traces the root's forward only: every submodule call stays a ``call_module`` node."""

    def is_leaf_module(self, m: nn.Module, qualname: str) -> bool:
        return True


def is_torch_leaf(m: nn.Module) -> bool:
    """A ``torch.nn`` layer (not a container) that ``torch.fx`` keeps whole: it must be a supported one."""
    mod = m.__class__.__module__
    return (mod.startswith("torch.nn") or mod.startswith("torch.ao.nn")) and not isinstance(m, nn.Sequential)


def _trace(tracer: fx.Tracer, module: nn.Module, name: str) -> fx.Graph:
    try:
        return tracer.trace(module)
    except UnsupportedLayer:
        raise
    except Exception as exc:
        where = f" ({name!r})" if name else ""
        raise UnsupportedLayer(
            f"param_graph: torch.fx cannot trace {type(module).__name__}{where}: {type(exc).__name__}: {exc}"
        ) from exc


def one_level(module: nn.Module, name: str = "", *, cache: bool = True) -> fx.Graph:
    """The one-level graph of ``module`` (cached by structure; ``name`` is its path, for errors)."""
    key = _level_key(module) if cache else None
    if key is not None:
        hit = _LEVELS.get(key)
        if hit is not None:
            return hit
    graph = _trace(_OneLevel(), module, name)
    if key is not None:
        covered = set(key[2])
        if all(n.target in covered for n in graph.nodes if n.op == "call_module"):
            _LEVELS[key] = graph
            if len(_LEVELS) > _LEVELS_SIZE:
                _LEVELS.popitem(last=False)
    return graph


def full_graph(module: nn.Module) -> fx.Graph:
    """The whole network traced in one piece (the uncached reference path)."""
    return _trace(FlatTracer(), module, "")


def clear_level_cache() -> None:
    """Forget every cached one-level graph."""
    _LEVELS.clear()


@dataclass(eq=False)
class Frame:
    """One call of a module's graph: ``parent``'s node ``call`` called it; ``prefix`` is its path + '.'."""

    module: nn.Module
    graph: fx.Graph
    prefix: str = ""
    parent: Frame | None = None
    call: fx.Node | None = None
    path: tuple[fx.Node, ...] = ()
    cache: bool = True
    _children: dict[fx.Node, Frame | nn.Module] = field(default_factory=dict)
    _holders: list[fx.Node] | None = None

    def placeholders(self) -> list[fx.Node]:
        """The graph's placeholder nodes, in signature order."""
        if self._holders is None:
            self._holders = [n for n in self.graph.nodes if n.op == "placeholder"]
        return self._holders

    def placeholder_index(self, node: fx.Node) -> int:
        return self.placeholders().index(node)

    def resolve(self, node: fx.Node) -> Frame | nn.Module:
        """What a ``call_module`` node calls: the child's frame when it recurses, else the leaf layer."""
        hit = self._children.get(node)
        if hit is not None:
            return hit
        m = self.module
        try:
            for part in node.target.split("."):  # ~10x cheaper than get_submodule's hasattr/getattr chain
                m = m._modules[part]
        except KeyError:
            raise UnsupportedLayer(f"param_graph: {self.prefix + node.target!r} is not a submodule") from None
        out: Frame | nn.Module = m
        if not (isinstance(m, SUPPORTED_LAYERS) or is_torch_leaf(m)):
            name = self.prefix + node.target
            out = Frame(m, one_level(m, name, cache=self.cache), name + ".", self, node, (*self.path, node), self.cache)
        self._children[node] = out
        return out


def _contains(arg: object, node: fx.Node) -> bool:
    found: list[bool] = []
    fx.node.map_arg(arg, lambda n: found.append(n is node))
    return any(found)


def _bound(frame: Frame, call: fx.Node, node: fx.Node) -> list[fx.Node] | None:
    """The placeholders of ``frame`` that receive ``node`` from ``call`` (None: passed inside a container)."""
    holders = frame.placeholders()
    by_name = {h.target: h for h in holders}
    out = []
    for i, a in enumerate(call.args):
        if a is node and i < len(holders):
            out.append(holders[i])
        elif _contains(a, node):
            return None
    for k, a in call.kwargs.items():
        if a is node and k in by_name:
            out.append(by_name[k])
        elif _contains(a, node):
            return None
    return out


def _users(frame: Frame, node: fx.Node, seen: set) -> None:
    """Add the users ``node`` would have in the whole network's flat graph to ``seen`` (stops at 2)."""
    for u in node.users:
        if len(seen) > 1:
            return
        if u.op == "output" and frame.parent is not None:
            _users(frame.parent, frame.call, seen)
            continue
        child = frame.resolve(u) if u.op == "call_module" else None
        holders = _bound(child, u, node) if isinstance(child, Frame) else None
        if holders is None:
            seen.add((frame.path, u))
        else:
            for h in holders:
                _users(child, h, seen)


def single_user(frame: Frame, node: fx.Node) -> bool:
    """Whether ``node``'s value has exactly one reader in the flat graph (BatchNorm folding needs it)."""
    seen: set = set()
    _users(frame, node, seen)
    return len(seen) == 1
