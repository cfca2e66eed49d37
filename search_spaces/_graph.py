"""GraphSpace: a search space declared by the user as a template graph with choice points.

A template is a ``networkx.DiGraph`` with one ``op="input"`` node, one ``op="output"`` node, and
nodes that fix their op (``op="conv3x3"``) or choose it (``choices=["conv3x3", "maxpool3x3"]``).
Edges are plain wires, or carry a fixed op (``op=...``) or a choice of ops (``choices=[...]``), and may
be ``optional=True`` (present or absent). A space in a few lines::

    import networkx as nx
    from wsnas.search_spaces import GraphSpace

    g = nx.DiGraph()
    g.add_node("in", op="input")
    g.add_node("a", choices=["conv3x3", "conv5x5", "maxpool3x3"])
    g.add_node("b", choices=["conv1x1", "identity"])
    g.add_node("out", op="output")
    g.add_edges_from([("in", "a"), ("a", "b"), ("b", "out")])
    g.add_edge("in", "b", optional=True)
    g.add_edge("a", "out", optional=True, choices=["identity", "avgpool3x3"])
    space = GraphSpace(g, name="mine")  # 3 * 2 * 2 * 3 = 36 architectures
    arch = space.from_string("a=conv5x5;b=identity;edge(in,b)=off;edge(a,out)=avgpool3x3")
    net = space.build(arch, C=16)  # [B, 3, H, W] -> [B, 10]
"""

from __future__ import annotations

import functools
import itertools
import math
import re
from collections.abc import Callable, Iterator, Mapping
from typing import TYPE_CHECKING, Any

import networkx as nx
import numpy as np

from wsnas._arch import INPUT, OUTPUT, Arch, Arity
from wsnas._errors import InvalidArchitecture

from ._base import SearchSpace

if TYPE_CHECKING:
    import optuna
    import torch.nn as nn

__all__ = ["GraphSpace", "GRAPH_OPS", "example_graph_space"]

#: the built-in ops (each maps ``[B, C, H, W] -> [B, C, H, W]``): convolutions are ReLU-Conv-BN
GRAPH_OPS: tuple[str, ...] = ("conv1x1", "conv3x3", "conv5x5", "maxpool3x3", "avgpool3x3", "identity", "zero")
_ON, _OFF = "on", "off"
_RESERVED = frozenset({INPUT, OUTPUT, _ON, _OFF})
_WORD = re.compile(r"[A-Za-z0-9_]+", re.ASCII)
_NODE_KEYS, _EDGE_KEYS = frozenset({"op", "choices"}), frozenset({"op", "choices", "optional"})
#: sample() draws at most this many times before it falls back to drawing edge by edge
_MAX_REJECTIONS = 100
_ENUMERATE_LIMIT = 1_000_000
_COUNT_MAX_OPTIONAL = 20


class GraphSpace(SearchSpace):
    """A search space over the choice points of a user's template graph (see the module docstring).

    **Networks.** A 3x3 conv-BN stem maps the image to ``C`` channels at the input node; every node
    sums its incoming edges (each through its edge op, if any) and applies its op; the output node's
    sum goes through BN-ReLU, global average pooling and a linear classifier. Built-in ops are
    :data:`GRAPH_OPS`; ``ops={"name": factory}`` adds ops, a factory mapping ``C`` to an ``nn.Module``
    that keeps the shape ``[B, C, H, W]``. Nodes that lie on no input-to-output path of an
    architecture (their edges are off) are not built.

    **Architectures.** The graph keeps every template node (attribute ``op``, the chosen op, and
    ``name``, the template name, so that each choice assignment is its own architecture even in a
    symmetric template) and the present edges (attribute ``op`` when the edge has ops). An assignment
    whose optional edges leave the output unreachable from the input is not an architecture:
    :meth:`from_string` rejects it with :class:`InvalidArchitecture`, :meth:`sample` redraws it,
    :meth:`suggest` only offers ``off`` for an edge while the output stays reachable, and
    :attr:`size` does not count it.

    **Strings.** The choice points only, ``;``-separated: nodes in the template's node order, then
    edges in its edge order (networkx's: by source node in node order, then insertion order)::

        a=conv5x5;b=identity;edge(in,b)=off;edge(a,out)=avgpool3x3

    A node's value is its op; an edge's is its op, ``on`` (a plain wire) or ``off``. The same keys
    are the Optuna param names.

    Args:
        template: the template graph; node names are ints or strings of letters, digits and ``_``.
        name: the space's name (``Arch.space``).
        ops: extra ops, name to factory ``C -> nn.Module``.
        C, num_classes, in_channels: default build settings.
        description: one line for ``wsnas spaces``.

    Raises:
        ValueError: the template breaks a rule (the message names the node or edge and the rule).
    """

    proxy_size = {"C": 8}

    def __init__(
        self,
        template: nx.DiGraph,
        *,
        name: str,
        ops: Mapping[str, Callable[[int], nn.Module]] | None = None,
        C: int = 16,
        num_classes: int = 10,
        in_channels: int = 3,
        description: str | None = None,
    ) -> None:
        if not isinstance(name, str) or not re.fullmatch(r"[A-Za-z0-9_-]+", name, re.ASCII):
            raise ValueError(f"GraphSpace: name must be letters, digits, '-' or '_', got {name!r}")
        self.name = name
        where = f"GraphSpace {name!r}"
        self._extra = dict(ops or {})
        for op, factory in self._extra.items():
            if not isinstance(op, str) or not _WORD.fullmatch(op) or op in _RESERVED or op in GRAPH_OPS:
                raise ValueError(
                    f"{where}: an extra op name must be letters, digits or '_' and neither built-in "
                    f"nor one of {sorted(_RESERVED)}, got {op!r}"
                )
            if not callable(factory):
                raise ValueError(f"{where}: the factory of op {op!r} must be callable (C -> nn.Module)")
        self.known_ops: tuple[str, ...] = GRAPH_OPS + tuple(self._extra)
        for key, value in (("C", C), ("num_classes", num_classes), ("in_channels", in_channels)):
            if type(value) is not int or value < 1:
                raise ValueError(f"{where}: {key} must be an int >= 1, got {value!r}")
        self._defaults = {"C": C, "num_classes": num_classes, "in_channels": in_channels}
        self.input_shape = (in_channels, 32, 32)
        self._read_template(template, where)
        self.description = description or (
            f"user graph space {name!r}: {len(self._nodes)} nodes, {len(self._points)} choice points"
        )
        used = {op for key in self._nodes for op in self._options[str(key)]} - {INPUT, OUTPUT}
        self.node_ops = {op: Arity(0, None) for op in sorted(used)}
        self.edge_ops = None  # plain wires carry no op; edges are checked by the space itself

    # -- the template -------------------------------------------------------------------------------
    def _ops_of(self, attrs: Mapping[str, Any], what: str, where: str) -> tuple[str, ...]:
        if ("op" in attrs) == ("choices" in attrs):
            got = "both" if "op" in attrs else "neither"
            raise ValueError(f"{where}: {what} needs either op=... or choices=[...], got {got}")
        ops = (attrs["op"],) if "op" in attrs else attrs["choices"]
        if isinstance(ops, str) or not isinstance(ops, (list, tuple)) or not ops or len(set(ops)) != len(ops):
            raise ValueError(f"{where}: {what} needs a non-empty list of distinct op names as choices, got {ops!r}")
        unknown = [op for op in ops if op not in self.known_ops]
        if unknown:
            raise ValueError(
                f"{where}: {what} has unknown op(s) {unknown}; known ops: {list(self.known_ops)} "
                "(add ops with GraphSpace(..., ops={name: factory}))"
            )
        return tuple(ops)

    def _read_template(self, template: nx.DiGraph, where: str) -> None:
        if not isinstance(template, nx.DiGraph) or template.is_multigraph():
            raise ValueError(f"{where}: the template must be a networkx.DiGraph, got {type(template).__name__}")
        if not nx.is_directed_acyclic_graph(template):
            raise ValueError(f"{where}: the template must be acyclic, but has the cycle {nx.find_cycle(template)}")
        names = [str(v) for v in template.nodes]
        bad = [v for v in template.nodes if type(v) not in (int, str) or not _WORD.fullmatch(str(v))]
        if bad or len(set(names)) != len(names):
            raise ValueError(
                f"{where}: node names must be distinct ints or strings of letters, digits and '_', got {list(template)}"
            )
        ends = {end: [v for v, op in template.nodes(data="op") if op == end] for end in (INPUT, OUTPUT)}
        if len(ends[INPUT]) != 1 or len(ends[OUTPUT]) != 1:
            raise ValueError(f"{where}: the template needs exactly one op='input' and one op='output' node, got {ends}")
        self._input, self._output = ends[INPUT][0], ends[OUTPUT][0]
        if template.in_degree(self._input) or template.out_degree(self._output):
            raise ValueError(f"{where}: the input node has no incoming and the output node no outgoing edges")
        self._nodes: list[Any] = list(template.nodes)
        self._options: dict[str, tuple[str, ...]] = {}
        for v, attrs in template.nodes(data=True):
            extra = sorted(set(attrs) - _NODE_KEYS)
            if extra:
                raise ValueError(f"{where}: node {v!r} has unknown attribute(s) {extra}; allowed: {sorted(_NODE_KEYS)}")
            if v in (self._input, self._output) and "choices" in attrs:
                raise ValueError(f"{where}: the input and output nodes take no choices")
            is_end = v in (self._input, self._output)
            self._options[str(v)] = (attrs["op"],) if is_end else self._ops_of(attrs, f"node {v!r}", where)
        self._edges: list[tuple[Any, Any]] = list(template.edges)
        self._optional: list[tuple[Any, Any]] = []
        for u, v, attrs in template.edges(data=True):
            extra = sorted(set(attrs) - _EDGE_KEYS)
            if extra:
                raise ValueError(
                    f"{where}: edge ({u},{v}) has unknown attribute(s) {extra}; allowed: {sorted(_EDGE_KEYS)}"
                )
            optional = attrs.get("optional", False)
            if type(optional) is not bool:
                raise ValueError(f"{where}: edge ({u},{v}): optional must be True or False, got {optional!r}")
            has_op = "op" in attrs or "choices" in attrs
            options = self._ops_of(attrs, f"edge ({u},{v})", where) if has_op else (_ON,)
            self._options[_edge_key(u, v)] = options + ((_OFF,) if optional else ())
            if optional:
                self._optional.append((u, v))
        reached = nx.descendants(template, self._input) | {self._input}
        if self._output not in reached:
            raise ValueError(f"{where}: the output {self._output!r} is not reachable from the input {self._input!r}")
        leads = nx.ancestors(template, self._output) | {self._output}
        dead = [v for v in self._nodes if v not in reached or v not in leads]
        if dead:
            raise ValueError(f"{where}: node(s) {dead} lie on no path from the input to the output")
        self._points = [key for key, options in self._options.items() if len(options) > 1]

    def _reachable(self, off: set[tuple[Any, Any]]) -> bool:
        """Whether the output is reachable from the input once the edges ``off`` are removed."""
        adj: dict[Any, list[Any]] = {}
        for u, v in self._edges:
            if (u, v) not in off:
                adj.setdefault(u, []).append(v)
        seen, stack = {self._input}, [self._input]
        while stack:
            for w in adj.get(stack.pop(), ()):
                if w not in seen:
                    seen.add(w)
                    stack.append(w)
        return self._output in seen

    @property
    def choice_points(self) -> dict[str, tuple[str, ...]]:
        """The string keys (and Optuna param names) of the choice points, each with its options, in order."""
        return {key: self._options[key] for key in self._points}

    def __repr__(self) -> str:
        return f"GraphSpace(name={self.name!r}, nodes={len(self._nodes)}, choice_points={len(self._points)})"

    # -- counting -----------------------------------------------------------------------------------
    @functools.cached_property
    def size(self) -> int | None:  # type: ignore[override]
        """Exact number of architectures (``None`` beyond 20 optional edges, where it is not counted)."""
        if len(self._optional) > _COUNT_MAX_OPTIONAL:
            return None
        fixed = math.prod(len(self._options[str(v)]) for v in self._nodes)
        fixed *= math.prod(len(self._options[_edge_key(*e)]) for e in self._edges if e not in self._optional)
        on = [len(self._options[_edge_key(*e)]) - 1 for e in self._optional]
        total = 0
        for bits in itertools.product((False, True), repeat=len(self._optional)):
            if self._reachable({e for e, present in zip(self._optional, bits) if not present}):
                total += math.prod(n for n, present in zip(on, bits) if present)
        return fixed * total

    def enumerate(self) -> Iterator[Arch]:
        """Every architecture (choice points varied in template order, last fastest) of a space of at most a million.

        Raises:
            NotImplementedError: the space is larger than that, or not counted.
        """
        size = self.size
        if size is None or size > _ENUMERATE_LIMIT:
            raise NotImplementedError(
                f"search space {self.name!r} holds {size} architectures; enumerate() needs at most {_ENUMERATE_LIMIT}"
            )
        combos = itertools.product(*(self._options[key] for key in self._points))
        return (
            self.from_choices(values)
            for values in (dict(zip(self._points, combo)) for combo in combos)
            if self._valid(values)
        )

    # -- construction -------------------------------------------------------------------------------
    def _off(self, values: Mapping[str, str]) -> set[tuple[Any, Any]]:
        return {e for e in self._optional if values.get(_edge_key(*e)) == _OFF}

    def _valid(self, values: Mapping[str, str]) -> bool:
        return self._reachable(self._off(values))

    def from_choices(self, values: Mapping[str, str]) -> Arch:
        """The architecture that takes ``values[key]`` at every choice point ``key`` (see :attr:`choice_points`).

        Raises:
            InvalidArchitecture: a key is missing or unknown, a value is not among its options, or the
                optional edges that are off leave the output unreachable.
        """
        where = f"GraphSpace {self.name!r}"
        missing = [key for key in self._points if key not in values]
        unknown = [key for key in values if key not in self._points]
        if missing or unknown:
            raise InvalidArchitecture(f"{where}: choices missing for {missing}, unknown choice points {unknown}")
        for key in self._points:
            if values[key] not in self._options[key]:
                raise InvalidArchitecture(
                    f"{where}: {key} must be one of {list(self._options[key])}, got {values[key]!r}"
                )
        off = self._off(values)
        if not self._reachable(off):
            keys = [_edge_key(*e) for e in self._optional if e in off]
            raise InvalidArchitecture(
                f"{where}: the output {self._output!r} is not reachable from the input {self._input!r} "
                f"with the optional edge(s) {keys} off"
            )
        g = nx.DiGraph()
        for v in self._nodes:
            g.add_node(v, op=values.get(str(v), self._options[str(v)][0]), name=str(v))
        for u, v in self._edges:
            key = _edge_key(u, v)
            value = values.get(key, self._options[key][0])
            if value != _OFF:
                g.add_edge(u, v, **({} if value == _ON else {"op": value}))
        return self.make_arch(g)

    def choices(self, arch: Arch) -> dict[str, str]:
        """The value of every choice point of ``arch`` (the inverse of :meth:`from_choices`).

        Raises:
            InvalidArchitecture: ``arch`` is of another space or its graph does not follow the template.
        """
        if not isinstance(arch, Arch):
            raise InvalidArchitecture(f"expected an Arch of space {self.name!r}, got {type(arch).__name__}")
        if arch.space != self.name:
            raise InvalidArchitecture(f"expected an architecture of space {self.name!r}, got one of {arch.space!r}")
        g, where = arch.graph, f"GraphSpace {self.name!r} graph"
        if g.graph:
            raise InvalidArchitecture(f"{where}: no graph attributes are allowed, got {sorted(g.graph)}")
        if sorted(map(repr, g.nodes)) != sorted(map(repr, self._nodes)):
            raise InvalidArchitecture(f"{where}: the nodes must be the template's {self._nodes}, got {list(g.nodes)}")
        values: dict[str, str] = {}
        for v, attrs in g.nodes(data=True):
            key = str(v)
            if set(attrs) != {"op", "name"} or attrs["name"] != key or attrs["op"] not in self._options[key]:
                raise InvalidArchitecture(
                    f"{where}: node {v!r} must carry name={key!r} and an op of {list(self._options.get(key, ()))}, "
                    f"got {dict(attrs)}"
                )
            values[key] = attrs["op"]
        for u, v, attrs in g.edges(data=True):
            key = _edge_key(u, v)
            options = self._options.get(key, ())
            value = attrs.get("op", _ON)
            if set(attrs) - {"op"} or value not in options or value == _OFF or (value == _ON and "op" in attrs):
                raise InvalidArchitecture(f"{where}: edge {key} with {dict(attrs)} is not an edge of the template")
            values[key] = value
        for u, v in self._edges:
            values.setdefault(_edge_key(u, v), _OFF)
        return {key: values[key] for key in self._points}

    def validate(self, arch: Arch) -> Arch:
        return self.from_choices(self.choices(arch))

    # -- sampling -----------------------------------------------------------------------------------
    def _draw(self, pick: Callable[[str, tuple[str, ...]], str], *, safe: bool) -> dict[str, str]:
        """One value per choice point from ``pick(param, options)``. With ``safe``, ``off`` is offered for
        an optional edge only while the output stays reachable (later edges counted as on); the param is
        then named ``KEY|on``, so that Optuna sees a fixed set of options per name."""
        values: dict[str, str] = {}
        for key in self._points:
            options, param = self._options[key], key
            if safe and _OFF in options and not self._reachable(self._off({**values, key: _OFF})):
                options, param = tuple(o for o in options if o != _OFF), f"{key}|on"
            values[key] = options[0] if len(options) == 1 else pick(param, options)
        return values

    def sample(self, rng: np.random.Generator) -> Arch:
        """Every choice uniformly, redrawn while the output is unreachable; after 100 redraws (a template
        where almost nothing is valid) edges are drawn in order with ``off`` only offered where it is allowed."""
        for _ in range(_MAX_REJECTIONS):
            values = self._draw(lambda _, opts: opts[int(rng.integers(len(opts)))], safe=False)
            if self._valid(values):
                return self.from_choices(values)
        return self.from_choices(self._draw(lambda _, opts: opts[int(rng.integers(len(opts)))], safe=True))

    def suggest(self, trial: optuna.Trial) -> Arch:
        """One categorical param per choice point (its string key); ``KEY|on`` where ``off`` would cut the output."""
        return self.from_choices(self._draw(lambda param, opts: trial.suggest_categorical(param, opts), safe=True))

    def neighbours(self, arch: Arch) -> list[Arch]:
        values = self.choices(arch)
        out = []
        for key in self._points:
            for option in self._options[key]:
                changed = {**values, key: option}
                if option != values[key] and self._valid(changed):
                    out.append(self.from_choices(changed))
        return out

    # -- strings ------------------------------------------------------------------------------------
    def to_string(self, arch: Arch) -> str:
        return ";".join(f"{key}={value}" for key, value in self.choices(arch).items())

    def from_string(self, text: str) -> Arch:
        where = f"GraphSpace {self.name!r}"
        if not isinstance(text, str):
            raise InvalidArchitecture(f"{where}: a string form must be a str, got {type(text).__name__}")
        entries = text.split(";") if text else []
        if len(entries) != len(self._points):
            raise InvalidArchitecture(
                f"{where}: the string has {len(self._points)} ';'-separated entries {self._points}, "
                f"got {len(entries)} in {text!r}"
            )
        values = {}
        for i, (entry, key) in enumerate(zip(entries, self._points), start=1):
            name, sep, value = entry.partition("=")
            if not sep or name != key:
                raise InvalidArchitecture(f"{where}: entry {i} must read '{key}=VALUE', got {entry!r}")
            values[key] = value
        return self.from_choices(values)

    # -- networks -----------------------------------------------------------------------------------
    def build(
        self, arch: Arch, *, C: int | None = None, num_classes: int | None = None, in_channels: int | None = None
    ) -> nn.Module:
        """The network of ``arch``; unset keywords take the space's settings (by default ``C=16``,
        ``num_classes=10``, ``in_channels=3``).

        Shapes: ``[B, in_channels, H, W] -> [B, num_classes]``.
        """
        from ._graph_net import BUILTIN_FACTORIES, GraphNetwork

        size = {**self._defaults}
        for key, value in (("C", C), ("num_classes", num_classes), ("in_channels", in_channels)):
            if value is not None:
                if type(value) is not int or value < 1:
                    raise ValueError(f"GraphSpace.build: {key} must be an int >= 1, got {value!r}")
                size[key] = value
        g = self.validate(arch).graph
        # only nodes on an input-to-output path are built; the input node is the stem's output
        live = (nx.descendants(g, self._input) & nx.ancestors(g, self._output)) | {self._input, self._output}
        sub = g.subgraph(live)
        index = {v: i for i, v in enumerate(self._nodes)}
        plan = [
            (str(v), g.nodes[v]["op"], [(str(u), sub.edges[u, v].get("op")) for u in sub.predecessors(v)])
            for v in nx.lexicographical_topological_sort(sub, key=index.__getitem__)
            if v != self._input
        ]
        factories = {**BUILTIN_FACTORIES, **self._extra}
        return GraphNetwork(plan, input_key=str(self._input), factories=factories, **size)


def example_graph_space() -> GraphSpace:
    """The example space ``"graph"``: five nodes, 3 * 3 * 2 node choices and two optional edges.

    ``in -> a, in -> b`` (wires), ``a -> c`` and ``b -> c`` (optional: at least one must stay on, or
    ``c`` and the output are cut off), ``c -> out``; ``a`` chooses among conv3x3, conv5x5 and
    maxpool3x3, ``b`` among conv1x1, conv3x3 and avgpool3x3, ``c`` among conv3x3 and identity.
    It holds 18 * 3 = 54 architectures.
    """
    g = nx.DiGraph()
    g.add_node("in", op=INPUT)
    g.add_node("a", choices=["conv3x3", "conv5x5", "maxpool3x3"])
    g.add_node("b", choices=["conv1x1", "conv3x3", "avgpool3x3"])
    g.add_node("c", choices=["conv3x3", "identity"])
    g.add_node("out", op=OUTPUT)
    g.add_edges_from([("in", "a"), ("in", "b"), ("c", "out")])
    g.add_edge("a", "c", optional=True)
    g.add_edge("b", "c", optional=True)
    return GraphSpace(g, name="graph", description="example graph space: 5 nodes, 3 node choices, 2 optional edges")


def _edge_key(u: Any, v: Any) -> str:
    return f"edge({u},{v})"
