"""Exact canonical labelling of small attributed directed graphs.

Used by :class:`wsnas.Arch` for its hash: two graphs get the same canonical form if and only if they are
isomorphic with node and edge labels preserved. The method is colour refinement (1-dimensional
Weisfeiler-Leman on a directed, edge-labelled graph) followed by individualisation of the first
non-singleton colour class and recursion, taking the lexicographically smallest serialisation. Every
architecture graph in wsnas is small (tens of nodes) and strongly asymmetric (it is a DAG with one input
and one output), so the search tree almost always has a single leaf.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Hashable, Mapping, Sequence

__all__ = ["canonical_form"]

# Above this many leaves in the individualisation tree, graphs are too symmetric for this method.
_MAX_LEAVES = 50_000


def _digest(obj: object) -> str:
    return hashlib.blake2b(json.dumps(obj, sort_keys=True).encode(), digest_size=12).hexdigest()


def _refine(
    colour: dict[Hashable, str],
    ins: Mapping[Hashable, Sequence[tuple[Hashable, str]]],
    outs: Mapping[Hashable, Sequence[tuple[Hashable, str]]],
) -> dict[Hashable, str]:
    """Refine colours until the partition stops splitting."""
    n_classes = len(set(colour.values()))
    while True:
        new = {
            v: _digest(
                [
                    colour[v],
                    sorted([lab, colour[u]] for u, lab in ins[v]),
                    sorted([lab, colour[w]] for w, lab in outs[v]),
                ]
            )
            for v in colour
        }
        n_new = len(set(new.values()))
        colour = new
        if n_new == n_classes:
            return colour
        n_classes = n_new


def canonical_form(
    node_labels: Mapping[Hashable, str],
    edges: Sequence[tuple[Hashable, Hashable, str]],
) -> tuple[list[str], list[tuple[int, int, str]]]:
    """Return ``(labels, edges)`` of the canonical relabelling of a directed graph.

    Args:
        node_labels: node -> label (a string that already encodes every attribute that matters).
        edges: ``(src, dst, label)`` triples; parallel edges are not supported.

    Returns:
        ``labels[i]`` is the label of canonical node ``i``; ``edges`` are ``(i, j, label)`` sorted.

    Raises:
        ValueError: if the graph is so symmetric that canonical labelling would take too long.
    """
    ins: dict[Hashable, list[tuple[Hashable, str]]] = {v: [] for v in node_labels}
    outs: dict[Hashable, list[tuple[Hashable, str]]] = {v: [] for v in node_labels}
    for u, v, lab in edges:
        outs[u].append((v, lab))
        ins[v].append((u, lab))

    best: list | None = None
    leaves = 0

    def serialise(colour: dict[Hashable, str]) -> list:
        order = sorted(colour, key=lambda v: colour[v])
        index = {v: i for i, v in enumerate(order)}
        return [
            [node_labels[v] for v in order],
            sorted((index[u], index[v], lab) for u, v, lab in edges),
        ]

    def search(colour: dict[Hashable, str]) -> None:
        nonlocal best, leaves
        colour = _refine(colour, ins, outs)
        classes: dict[str, list[Hashable]] = {}
        for v, c in colour.items():
            classes.setdefault(c, []).append(v)
        ties = sorted((c for c, members in classes.items() if len(members) > 1))
        if not ties:
            leaves += 1
            if leaves > _MAX_LEAVES:
                raise ValueError(f"graph too symmetric for canonical labelling (more than {_MAX_LEAVES} leaves)")
            form = serialise(colour)
            if best is None or form < best:
                best = form
            return
        target = ties[0]
        for v in classes[target]:
            individual = dict(colour)
            individual[v] = _digest([target, "*"])
            search(individual)

    search({v: _digest(lab) for v, lab in node_labels.items()})
    assert best is not None
    labels, canon_edges = best
    return labels, [tuple(e) for e in canon_edges]
