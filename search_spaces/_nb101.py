"""NB101: the NAS-Bench-101 cell space (DAGs of up to 7 nodes and 9 edges, 423,624 unique cells)."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING, Any

import networkx as nx
import numpy as np

from wsnas._arch import INPUT, OUTPUT, Arch, Arity
from wsnas._errors import InvalidArchitecture

from ._base import SearchSpace

if TYPE_CHECKING:
    import optuna
    import torch.nn as nn

__all__ = ["NB101", "NB101_OPS"]

#: the three operations of an intermediate node, in NAS-Bench-101's names
NB101_OPS: tuple[str, ...] = ("conv3x3-bn-relu", "conv1x1-bn-relu", "maxpool3x3")
_MAX_NODES = 7
_MAX_EDGES = 9
#: the 21 upper-triangular bits ``(src, dst)`` of a 7-node matrix, row-major
_BITS: tuple[tuple[int, int], ...] = tuple((i, j) for i in range(_MAX_NODES) for j in range(i + 1, _MAX_NODES))


def _on_paths(m: np.ndarray) -> list[int] | None:
    """Nodes on some input->output path of the upper-triangular matrix ``m`` (``None``: no such path)."""
    n = len(m)
    fwd = [False] * n
    fwd[0] = True
    for j in range(1, n):
        fwd[j] = any(fwd[i] and m[i, j] for i in range(j))
    bwd = [False] * n
    bwd[n - 1] = True
    for i in range(n - 2, -1, -1):
        bwd[i] = any(bwd[j] and m[i, j] for j in range(i + 1, n))
    if not fwd[n - 1]:
        return None
    return [v for v in range(n) if fwd[v] and bwd[v]]


def _format(ops: Sequence[str], m: np.ndarray, order: Sequence[int]) -> str:
    rows = ("".join("1" if m[i, j] else "0" for j in order) for i in order)
    return ",".join(ops[i] for i in order) + "|" + ",".join(rows)


def _topological_orders(m: np.ndarray) -> Iterator[list[int]]:
    """Every order of the nodes of ``m`` that keeps input first, output last and edges pointing forward."""
    n = len(m)
    interior = list(range(1, n - 1))
    preds = {v: {u for u in interior if m[u, v]} for v in interior}

    def extend(prefix: list[int], placed: set[int]) -> Iterator[list[int]]:
        if len(prefix) == len(interior):
            yield [0, *prefix, n - 1]
            return
        for v in interior:
            if v not in placed and preds[v] <= placed:
                yield from extend([*prefix, v], placed | {v})

    yield from extend([], set())


def _enumeration_key(m: np.ndarray, ops: Sequence[str], order: Sequence[int]) -> tuple[int, tuple[int, ...]]:
    """When NAS-Bench-101's enumeration (its ``generate_graphs.py``) meets the cell in ``order``: first
    by the edge bit mask (edge ``i->j`` is bit ``i + j*(j-1)/2``), then by the op labels (indices into
    :data:`NB101_OPS`, node 1 most significant)."""
    pos = {v: k for k, v in enumerate(order)}
    bits = 0
    for i, j in zip(*np.nonzero(m)):
        a, b = pos[int(i)], pos[int(j)]
        bits |= 1 << (a + b * (b - 1) // 2)
    return bits, tuple(NB101_OPS.index(ops[v]) for v in order[1:-1])


class NB101(SearchSpace):
    """The NAS-Bench-101 cell space.

    A cell is a DAG given as a strictly upper-triangular adjacency matrix over at most 7 nodes: node 0
    is the input, the last node the output, each node in between applies one of :data:`NB101_OPS` to
    the sum of its inputs. A spec is valid when the output is reachable from the input and, once every
    node that lies on no input->output path has been pruned (as NAS-Bench-101's ``ModelSpec`` does), it
    has at most 7 nodes and at most 9 edges. The architecture graph is the pruned cell: nodes carry
    ``op`` (``input``, ``output`` or a cell op), edges are plain wires, so isomorphic cells are equal.

    String form: the ops of the nodes, comma-separated, then ``|``, then the matrix rows as strings of
    ``0``/``1``, comma-separated, e.g. ``input,conv3x3-bn-relu,maxpool3x3,output|0110,0001,0001,0000``.
    :meth:`from_string` accepts any valid spec in any node order (pruning it); :meth:`to_string` writes
    the pruned cell in its canonical order, the topological order whose string is smallest, so
    isomorphic cells give one string. :meth:`build` uses another order, the one NAS-Bench-101 stored
    and trained the cell in (:meth:`benchmark_spec`), because the network depends on the order.

    :attr:`size` is 423,624, the number of unique cells NAS-Bench-101 published (a property of the
    space taken from the benchmark, not counted here); :meth:`enumerate` is not implemented, as listing
    them in Python would take hours.

    :meth:`suggest` asks for one bit per upper-triangular entry of a 7-node matrix (``edge_{i}_{j}``,
    choices ``0``/``1``) and one op per intermediate node (``op_1`` .. ``op_5``), and repairs an invalid
    suggestion deterministically: without an input->output path it adds the edge ``0->6``; then, while
    more than 9 edges remain after pruning, it removes one of them, taking in row-major order (``0->1``,
    ``0->2``, ..., ``5->6``) the first edge whose removal prunes no node, or if there is none the first
    whose removal keeps the output reachable.
    """

    name = "nb101"
    description = "NAS-Bench-101 cell: DAGs of up to 7 nodes and 9 edges, 3 node ops"
    node_ops = {op: Arity(1, None) for op in NB101_OPS}
    edge_ops = None
    proxy_size = {"C": 16, "stacks": 3, "cells_per_stack": 1}

    @property
    def size(self) -> int:
        return 423_624

    def enumerate(self) -> Iterator[Arch]:
        raise NotImplementedError(
            "search space 'nb101' has 423,624 cells; enumerating them is not implemented (too slow in Python)"
        )

    # -- construction -------------------------------------------------------------------------------
    def from_spec(self, matrix: Any, ops: Sequence[str]) -> Arch:
        """The cell of an adjacency matrix (``matrix[i][j] = 1``: edge ``i->j``) and one op per node.

        ``ops[0]`` must be ``"input"``, ``ops[-1]`` ``"output"``, the rest from :data:`NB101_OPS`.
        Nodes on no input->output path are pruned before the node and edge limits are checked.

        Raises:
            InvalidArchitecture: naming the rule that is broken and the values that break it.
        """
        m = self._as_matrix(matrix)
        if isinstance(ops, np.ndarray):
            ops = ops.tolist()
        if isinstance(ops, str) or not isinstance(ops, Sequence):
            raise InvalidArchitecture(f"NB101 spec: ops must be a list of op names, got {type(ops).__name__}")
        ops = list(ops)
        n = len(m)
        if len(ops) != n:
            raise InvalidArchitecture(f"NB101 spec: the matrix is {n}x{n}, so {n} ops are needed, got {len(ops)}")
        if ops[0] != INPUT:
            raise InvalidArchitecture(f"NB101 spec: ops[0] must be 'input', got {ops[0]!r}")
        if ops[-1] != OUTPUT:
            raise InvalidArchitecture(f"NB101 spec: ops[{n - 1}] (the last) must be 'output', got {ops[-1]!r}")
        for v in range(1, n - 1):
            if ops[v] not in NB101_OPS:
                raise InvalidArchitecture(
                    f"NB101 spec: ops[{v}] is {ops[v]!r}; an intermediate op must be one of {list(NB101_OPS)}"
                )
        keep = _on_paths(m)
        if keep is None:
            raise InvalidArchitecture(f"NB101 spec: the output (node {n - 1}) is not reachable from the input (node 0)")
        m = m[np.ix_(keep, keep)]
        ops = [ops[v] for v in keep]
        if len(ops) > _MAX_NODES:
            raise InvalidArchitecture(
                f"NB101 spec: at most {_MAX_NODES} nodes are allowed after pruning, got {len(ops)}"
            )
        if int(m.sum()) > _MAX_EDGES:
            raise InvalidArchitecture(
                f"NB101 spec: at most {_MAX_EDGES} edges are allowed after pruning, got {int(m.sum())}"
            )
        g = nx.DiGraph()
        for v, op in enumerate(ops):
            g.add_node(v, op=op)
        g.add_edges_from((int(i), int(j)) for i, j in zip(*np.nonzero(m)))
        return self.make_arch(g)

    @staticmethod
    def _as_matrix(matrix: Any) -> np.ndarray:
        try:
            m = np.asarray(matrix)
        except (TypeError, ValueError) as exc:
            raise InvalidArchitecture(f"NB101 spec: the matrix is not a rectangular array: {exc}") from None
        if m.ndim != 2 or m.shape[0] != m.shape[1]:
            raise InvalidArchitecture(f"NB101 spec: the matrix must be square, got shape {m.shape}")
        if m.shape[0] < 2:
            raise InvalidArchitecture(
                f"NB101 spec: a cell needs at least 2 nodes (input and output), got a {m.shape[0]}x{m.shape[0]} matrix"
            )
        if m.dtype.kind not in "biuf":
            raise InvalidArchitecture(f"NB101 spec: matrix entries must be 0 or 1, got dtype {m.dtype}")
        bad = np.argwhere((m != 0) & (m != 1))
        if len(bad):
            i, j = (int(x) for x in bad[0])
            raise InvalidArchitecture(f"NB101 spec: matrix entries must be 0 or 1, got matrix[{i}][{j}] = {m[i, j]}")
        low = np.argwhere(np.tril(m) != 0)
        if len(low):
            i, j = (int(x) for x in low[0])
            raise InvalidArchitecture(
                "NB101 spec: the matrix must be strictly upper-triangular (edges i->j with i < j only), "
                f"got matrix[{i}][{j}] = 1"
            )
        return m.astype(np.int8)

    def spec(self, arch: Arch) -> tuple[np.ndarray, tuple[str, ...]]:
        """The pruned cell in canonical order: ``(matrix [n, n] int8, ops)``, as :meth:`to_string` writes it.

        Raises:
            InvalidArchitecture: ``arch`` is of another space or its graph breaks this space's rules.
        """
        if not isinstance(arch, Arch):
            raise InvalidArchitecture(f"expected an Arch of space 'nb101', got {type(arch).__name__}")
        if arch.space != self.name:
            raise InvalidArchitecture(f"expected an architecture of space 'nb101', got one of {arch.space!r}")
        g = arch.graph
        if arch.attrs:
            raise InvalidArchitecture(f"an NB101 graph has no graph attributes, got {dict(arch.attrs)}")
        for u, v, data in g.edges(data=True):
            if data:
                raise InvalidArchitecture(f"NB101 edges are plain wires, but edge {u!r}->{v!r} has {dict(data)}")
        for v, data in g.nodes(data=True):
            if set(data) != {"op"}:
                raise InvalidArchitecture(f"an NB101 node has only an 'op' attribute, node {v!r} has {sorted(data)}")
        src, dst = arch.input_node, arch.output_node
        nodes = [src] + [v for v in nx.topological_sort(g) if v not in (src, dst)] + [dst]
        index = {v: k for k, v in enumerate(nodes)}
        m = np.zeros((len(nodes), len(nodes)), dtype=np.int8)
        for u, v in g.edges:
            m[index[u], index[v]] = 1
        ops = [g.nodes[v]["op"] for v in nodes]
        checked = self.from_spec(m, ops)  # rules and limits
        if checked.graph.number_of_nodes() != len(nodes):
            raise InvalidArchitecture(
                f"an NB101 graph must be pruned: {len(nodes) - checked.graph.number_of_nodes()} of its nodes "
                "lie on no input->output path (build cells with NB101.from_spec)"
            )
        order = min(_topological_orders(m), key=lambda o: _format(ops, m, o))
        return m[np.ix_(order, order)], tuple(ops[k] for k in order)

    def benchmark_spec(self, arch: Arch) -> tuple[np.ndarray, tuple[str, ...]]:
        """The pruned cell in the node order NAS-Bench-101 stored and trained it: ``(matrix [n, n] int8, ops)``.

        The benchmark keeps one spec per cell, the first of its isomorphic specs that its enumeration
        (``generate_graphs.py``) met: the smallest edge bit mask (edge ``i->j`` is bit ``i + j*(j-1)/2``),
        then the smallest op labelling (ops as indices into :data:`NB101_OPS`, node 1 first). A query
        returns this spec as ``module_adjacency``/``module_operations``, and its ``trainable_parameters``
        count the network built from it.

        Raises:
            InvalidArchitecture: as :meth:`spec`.
        """
        m, ops = self.spec(arch)
        order = min(_topological_orders(m), key=lambda o: _enumeration_key(m, ops, o))
        return m[np.ix_(order, order)], tuple(ops[k] for k in order)

    # -- strings ------------------------------------------------------------------------------------
    def to_string(self, arch: Arch) -> str:
        m, ops = self.spec(arch)
        return _format(ops, m, range(len(ops)))

    def from_string(self, text: str) -> Arch:
        if not isinstance(text, str):
            raise InvalidArchitecture(f"an NB101 string must be a str, got {type(text).__name__}")
        ops_part, sep, rows_part = text.strip().partition("|")
        if not sep or "|" in rows_part:
            raise InvalidArchitecture(f"an NB101 string is 'OPS|ROWS' with exactly one '|', got {text!r}")
        ops = ops_part.split(",")
        rows = rows_part.split(",")
        if len(rows) != len(ops):
            raise InvalidArchitecture(f"an NB101 string lists {len(ops)} op(s) but {len(rows)} matrix row(s): {text!r}")
        for i, row in enumerate(rows):
            if len(row) != len(ops) or not set(row) <= {"0", "1"}:
                raise InvalidArchitecture(f"NB101 matrix row {i} must be {len(ops)} characters '0' or '1', got {row!r}")
        return self.from_spec([[int(c) for c in row] for row in rows], ops)

    # -- sampling and search ------------------------------------------------------------------------
    def sample(self, rng: np.random.Generator) -> Arch:
        """NAS-Bench-101's random spec: uniform bits above the diagonal and uniform ops, until valid."""
        while True:
            m = np.triu(rng.integers(0, 2, size=(_MAX_NODES, _MAX_NODES)), 1)
            ops = [INPUT, *(NB101_OPS[k] for k in rng.integers(0, len(NB101_OPS), size=_MAX_NODES - 2)), OUTPUT]
            keep = _on_paths(m)
            if keep is not None and int(m[np.ix_(keep, keep)].sum()) <= _MAX_EDGES:
                return self.from_spec(m, ops)

    def suggest(self, trial: optuna.Trial) -> Arch:
        m = np.zeros((_MAX_NODES, _MAX_NODES), dtype=np.int8)
        for i, j in _BITS:
            m[i, j] = trial.suggest_categorical(f"edge_{i}_{j}", (0, 1))
        ops = [INPUT, *(trial.suggest_categorical(f"op_{v}", NB101_OPS) for v in range(1, _MAX_NODES - 1)), OUTPUT]
        return self.from_spec(self._repair(m), ops)

    @staticmethod
    def _repair(m: np.ndarray) -> np.ndarray:
        """The documented repair of :meth:`suggest` (see the class docstring); returns a new matrix."""
        m = m.copy()
        if _on_paths(m) is None:
            m[0, -1] = 1
        while True:
            keep = _on_paths(m) or []
            counted = [(i, j) for i, j in _BITS if m[i, j] and i in keep and j in keep]
            if len(counted) <= _MAX_EDGES:
                return m
            fallback = None
            for i, j in counted:
                m[i, j] = 0
                after = _on_paths(m)
                m[i, j] = 1
                if after == keep:
                    break
                if after is not None and fallback is None:
                    fallback = (i, j)
            else:  # every removal prunes a node; one keeps the output reachable unless the cell is a path
                assert fallback is not None, "a single path has at most 6 edges"
                i, j = fallback
            m[i, j] = 0

    def neighbours(self, arch: Arch) -> list[Arch]:
        """Valid cells one change away: one intermediate op changed, one edge of the pruned matrix
        flipped, or (below 7 nodes) one edge ``i->j`` split into ``i->new->j`` with a new node of any op.

        The split lets cells grow (a flip alone never adds a node on a path) and gives the smallest
        cell, ``input->output``, its three neighbours.
        """
        m, ops = self.spec(arch)
        n = len(ops)
        candidates: list[tuple[np.ndarray, list[str]]] = []
        for v in range(1, n - 1):
            candidates += [(m, [*ops[:v], op, *ops[v + 1 :]]) for op in NB101_OPS if op != ops[v]]
        for i in range(n):
            for j in range(i + 1, n):
                flipped = m.copy()
                flipped[i, j] = 1 - flipped[i, j]
                candidates.append((flipped, list(ops)))
                if m[i, j] and n < _MAX_NODES:  # the new node takes index j, old node j moves to j + 1
                    split = np.insert(np.insert(m, j, 0, axis=0), j, 0, axis=1)
                    split[i, j + 1], split[i, j], split[j, j + 1] = 0, 1, 1
                    candidates += [(split, [*ops[:j], op, *ops[j:]]) for op in NB101_OPS]
        seen = {arch.hash}
        out: list[Arch] = []
        for cm, cops in candidates:
            try:
                other = self.from_spec(cm, cops)
            except InvalidArchitecture:
                continue
            if other.hash not in seen:
                seen.add(other.hash)
                out.append(other)
        return out

    # -- networks -----------------------------------------------------------------------------------
    def build(
        self,
        arch: Arch,
        *,
        C: int = 128,
        stacks: int = 3,
        cells_per_stack: int = 3,
        num_classes: int = 10,
        in_channels: int = 3,
    ) -> nn.Module:
        """The NAS-Bench-101 network: a conv3x3-BN-ReLU stem at ``C`` channels, ``stacks`` stacks of
        ``cells_per_stack`` cells with a 2x2 stride-2 max-pool and channel doubling between stacks,
        global average pooling and a linear classifier. ``C`` must be at least the number of nodes
        feeding the cell output (their channels are concatenated).

        The cell is built as NAS-Bench-101's ``model_builder`` builds the spec it trained
        (:meth:`benchmark_spec`). The order matters: an uneven split of the output channels gives the
        extra channels to the first output feeders in node order, and nodes before them take the
        channels of their successors, so other orders of the same cell can have other parameter
        counts. In the benchmark's order the count is the benchmark's ``trainable_parameters``.

        Shapes: ``[B, in_channels, H, W] -> [B, num_classes]``.
        """
        from ._nb101_net import NB101Network

        sizes = {"C": C, "stacks": stacks, "cells_per_stack": cells_per_stack}
        for key, value in {**sizes, "num_classes": num_classes, "in_channels": in_channels}.items():
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ValueError(f"NB101.build: {key} must be an int >= 1, got {value!r}")
        m, ops = self.benchmark_spec(arch)
        return NB101Network(m.tolist(), ops, num_classes=num_classes, in_channels=in_channels, **sizes)
