"""The architecture graph: an immutable, validated, hashable description of one candidate network."""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from functools import cached_property
from typing import Any

import networkx as nx

from wsnas._canonical import canonical_form
from wsnas._errors import InvalidArchitecture

__all__ = ["Arch", "Arity", "INPUT", "OUTPUT"]

INPUT = "input"
OUTPUT = "output"
_JSON_VERSION = 1


@dataclass(frozen=True)
class Arity:
    """How many incoming edges a node with a given op may have (``max_in=None``: no upper bound)."""

    min_in: int = 1
    max_in: int | None = None

    def admits(self, n: int) -> bool:
        return n >= self.min_in and (self.max_in is None or n <= self.max_in)

    def __str__(self) -> str:
        if self.max_in == self.min_in:
            return f"exactly {self.min_in}"
        if self.max_in is None:
            return f"at least {self.min_in}"
        return f"between {self.min_in} and {self.max_in}"


def _label(attrs: Mapping[str, Any]) -> str:
    return json.dumps(dict(attrs), sort_keys=True, default=str)


class Arch:
    """An immutable architecture graph of a search space.

    The graph is a ``networkx.DiGraph`` whose nodes all carry an ``op`` attribute; exactly one node has
    op ``"input"`` and one has op ``"output"``. Cell spaces (NB201) put the operations on edges (edge
    attribute ``op``), others on nodes. Any further node, edge or graph attribute (a width, a kernel
    size) is part of the architecture and of its hash.

    Structural rules are checked on construction: the graph is acyclic, has one input with no incoming
    edges and one output with no outgoing edges, and the output is reachable from the input. A search
    space passes its vocabulary (``node_ops`` with each op's :class:`Arity`, ``edge_ops``) to have the
    ops and in-degrees checked as well. Any violation raises :class:`InvalidArchitecture`.

    Two architectures are equal when their canonical forms are equal, i.e. when their graphs are
    isomorphic with all attributes preserved and they belong to the same space; :attr:`hash` is the hex
    digest of that form.

    Args:
        graph: the architecture; it is copied and frozen, later changes to the argument do not leak in.
        space: name of the search space the architecture belongs to.
        node_ops: allowed node ops mapped to their allowed in-degree; ``None`` skips the op check.
        edge_ops: allowed edge ops; ``None`` skips the check. Edges without an ``op`` are plain wires.
        attrs: graph-level attributes (for example the width of a macro network).
    """

    __slots__ = ("_graph", "_space", "__dict__")

    def __init__(
        self,
        graph: nx.DiGraph,
        space: str,
        *,
        node_ops: Mapping[str, Arity] | None = None,
        edge_ops: Iterable[str] | None = None,
        attrs: Mapping[str, Any] | None = None,
    ) -> None:
        if not isinstance(graph, nx.DiGraph) or graph.is_multigraph():
            raise InvalidArchitecture(f"an Arch needs a networkx.DiGraph, got {type(graph).__name__}")
        g = nx.DiGraph(graph)
        g.graph.clear()
        g.graph.update(dict(attrs or {}))
        self._space = str(space)
        self._graph = nx.freeze(g)
        self._validate(node_ops, None if edge_ops is None else frozenset(edge_ops))

    # -- validation ---------------------------------------------------------------------------------
    def _validate(self, node_ops: Mapping[str, Arity] | None, edge_ops: frozenset[str] | None) -> None:
        g, where = self._graph, f"{self._space} architecture"
        if g.number_of_nodes() == 0:
            raise InvalidArchitecture(f"{where}: the graph has no nodes")
        for v, data in g.nodes(data=True):
            if not isinstance(data.get("op"), str):
                raise InvalidArchitecture(f"{where}: node {v!r} has no 'op' attribute (a string)")
        if not nx.is_directed_acyclic_graph(g):
            cycle = nx.find_cycle(g)
            raise InvalidArchitecture(f"{where}: the graph must be acyclic, but has the cycle {cycle}")
        inputs = [v for v, op in g.nodes(data="op") if op == INPUT]
        outputs = [v for v, op in g.nodes(data="op") if op == OUTPUT]
        if len(inputs) != 1 or len(outputs) != 1:
            raise InvalidArchitecture(
                f"{where}: exactly one 'input' and one 'output' node are required, "
                f"got {len(inputs)} input(s) {inputs} and {len(outputs)} output(s) {outputs}"
            )
        src, dst = inputs[0], outputs[0]
        if g.in_degree(src) or g.out_degree(dst):
            raise InvalidArchitecture(
                f"{where}: the input node must have no incoming and the output node no outgoing edges"
            )
        if not nx.has_path(g, src, dst):
            raise InvalidArchitecture(f"{where}: the output node {dst!r} is not reachable from the input {src!r}")
        if node_ops is not None:
            allowed = {INPUT: Arity(0, 0), OUTPUT: Arity(1, None), **node_ops}
            for v, op in g.nodes(data="op"):
                if op not in allowed:
                    raise InvalidArchitecture(
                        f"{where}: node {v!r} has unknown op {op!r}; expected one of {sorted(allowed)}"
                    )
                if not allowed[op].admits(g.in_degree(v)):
                    raise InvalidArchitecture(
                        f"{where}: node {v!r} (op {op!r}) must have {allowed[op]} incoming edge(s), "
                        f"got {g.in_degree(v)}"
                    )
        if edge_ops is not None:
            for u, v, op in g.edges(data="op"):
                if op not in edge_ops:
                    raise InvalidArchitecture(
                        f"{where}: edge {u!r}->{v!r} has unknown op {op!r}; expected one of {sorted(edge_ops)}"
                    )

    # -- accessors ----------------------------------------------------------------------------------
    @property
    def graph(self) -> nx.DiGraph:
        """The frozen graph (read-only; copy it with ``nx.DiGraph(arch.graph)`` to edit)."""
        return self._graph

    @property
    def space(self) -> str:
        """Name of the search space."""
        return self._space

    @property
    def attrs(self) -> Mapping[str, Any]:
        """Graph-level attributes."""
        return dict(self._graph.graph)

    @property
    def input_node(self) -> Any:
        return next(v for v, op in self._graph.nodes(data="op") if op == INPUT)

    @property
    def output_node(self) -> Any:
        return next(v for v, op in self._graph.nodes(data="op") if op == OUTPUT)

    @cached_property
    def canonical(self) -> tuple[str, list[str], list[tuple[int, int, str]]]:
        """``(space and graph attributes, node labels, edges)`` in canonical node order."""
        g = self._graph
        labels, edges = canonical_form(
            {v: _label(d) for v, d in g.nodes(data=True)},
            [(u, v, _label(d)) for u, v, d in g.edges(data=True)],
        )
        return _label({"space": self._space, **g.graph}), labels, edges

    @cached_property
    def hash(self) -> str:
        """Canonical hash: equal for isomorphic graphs (attributes included), different otherwise."""
        import hashlib

        return hashlib.sha256(json.dumps(self.canonical).encode()).hexdigest()[:32]

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Arch) and self.canonical == other.canonical

    def __hash__(self) -> int:
        return hash(self.hash)

    def __repr__(self) -> str:
        g = self._graph
        size = f"nodes={g.number_of_nodes()}, edges={g.number_of_edges()}"
        return f"Arch(space={self._space!r}, {size}, hash={self.hash[:12]})"

    # -- JSON ---------------------------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict: ``{"version", "space", "attrs", "nodes": [...], "edges": [...]}``."""
        g = self._graph
        return {
            "version": _JSON_VERSION,
            "space": self._space,
            "attrs": dict(g.graph),
            "nodes": [{"id": v, **d} for v, d in g.nodes(data=True)],
            "edges": [{"src": u, "dst": v, **d} for u, v, d in g.edges(data=True)],
        }

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True)

    @classmethod
    def from_json(
        cls,
        doc: str | Mapping[str, Any],
        *,
        node_ops: Mapping[str, Arity] | None = None,
        edge_ops: Iterable[str] | None = None,
    ) -> Arch:
        """Inverse of :meth:`to_json` (accepts the string or the parsed dict).

        Raises:
            InvalidArchitecture: malformed JSON, missing fields, or a graph that breaks the rules.
        """
        try:
            data = json.loads(doc) if isinstance(doc, str) else dict(doc)
        except (json.JSONDecodeError, TypeError, ValueError) as exc:
            raise InvalidArchitecture(f"architecture JSON could not be parsed: {exc}") from None
        missing = [k for k in ("space", "nodes", "edges") if k not in data]
        if missing:
            raise InvalidArchitecture(f"architecture JSON lacks the field(s) {missing}")
        if data.get("version", _JSON_VERSION) != _JSON_VERSION:
            raise InvalidArchitecture(f"architecture JSON version must be {_JSON_VERSION}, got {data.get('version')!r}")
        g = nx.DiGraph()
        try:
            for node in data["nodes"]:
                node = dict(node)
                g.add_node(_hashable(node.pop("id")), **node)
            for edge in data["edges"]:
                edge = dict(edge)
                u, v = _hashable(edge.pop("src")), _hashable(edge.pop("dst"))
                if u not in g or v not in g:
                    raise InvalidArchitecture(f"architecture JSON: edge {u!r}->{v!r} names an unknown node")
                g.add_edge(u, v, **edge)
        except (KeyError, TypeError, ValueError) as exc:
            if isinstance(exc, InvalidArchitecture):
                raise
            raise InvalidArchitecture(f"architecture JSON has a malformed node or edge: {exc!r}") from None
        return cls(g, data["space"], node_ops=node_ops, edge_ops=edge_ops, attrs=data.get("attrs") or {})


def _hashable(x: Any) -> Any:
    return tuple(_hashable(i) for i in x) if isinstance(x, list) else x
