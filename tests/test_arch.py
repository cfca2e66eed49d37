from __future__ import annotations

import json

import networkx as nx
import pytest

from wsnas import Arch, Arity, InvalidArchitecture


def chain(*ops: str) -> nx.DiGraph:
    g = nx.DiGraph()
    names = ["in", *[f"n{i}" for i in range(len(ops))], "out"]
    g.add_node("in", op="input")
    for name, op in zip(names[1:-1], ops):
        g.add_node(name, op=op)
    g.add_node("out", op="output")
    nx.add_path(g, names)
    return g


VOCAB = {"conv": Arity(1, 1), "add": Arity(2, None)}


def test_valid_arch_is_frozen_and_copied() -> None:
    g = chain("conv", "conv")
    arch = Arch(g, "demo", node_ops=VOCAB)
    g.add_node("stray", op="conv")  # the caller's graph changes, the arch does not
    assert arch.graph.number_of_nodes() == 4
    with pytest.raises(nx.NetworkXError):
        arch.graph.add_node("x")
    assert arch.input_node == "in" and arch.output_node == "out"


def test_hash_equal_for_isomorphic_and_different_otherwise() -> None:
    a = Arch(chain("conv", "conv"), "demo")
    b = Arch(nx.relabel_nodes(chain("conv", "conv"), {"n0": "x", "n1": "y"}), "demo")
    assert a == b and a.hash == b.hash
    assert Arch(chain("conv"), "demo").hash != a.hash
    assert Arch(chain("conv", "conv"), "other").hash != a.hash  # the space is part of the identity
    assert Arch(chain("conv", "conv"), "demo", attrs={"width": 2}).hash != a.hash


def test_hash_distinguishes_attributes_and_edge_ops() -> None:
    g1, g2 = chain("conv"), chain("conv")
    g2.nodes["n0"]["kernel"] = 5
    assert Arch(g1, "d").hash != Arch(g2, "d").hash
    g3 = chain("conv")
    g3.edges["in", "n0"]["op"] = "skip"
    assert Arch(g3, "d").hash != Arch(g1, "d").hash


def test_hash_of_symmetric_branches_is_canonical() -> None:
    """Parallel branches in any order and under any naming hash the same; swapping ops across
    positions that are not symmetric changes the hash."""

    def diamond(top: str, bottom: str, names: tuple[str, str]) -> nx.DiGraph:
        g = nx.DiGraph()
        g.add_node("i", op="input")
        g.add_node(names[0], op=top)
        g.add_node(names[1], op=bottom)
        g.add_node("s", op="add")
        g.add_node("c", op="conv")
        g.add_node("o", op="output")
        g.add_edges_from([("i", names[0]), ("i", names[1]), (names[0], "s"), (names[1], "s"), ("s", "c"), ("c", "o")])
        return g

    a = Arch(diamond("conv", "pool", ("a", "b")), "d")
    b = Arch(diamond("pool", "conv", ("a", "b")), "d")
    c = Arch(diamond("conv", "conv", ("p", "q")), "d")
    assert a == b
    assert c != a
    # four identical branches: the canonical search handles ties among them
    g = nx.DiGraph()
    g.add_node("i", op="input")
    g.add_node("o", op="output")
    for k in range(4):
        g.add_node(k, op="conv")
        g.add_edges_from([("i", k), (k, "o")])
    assert Arch(g, "d").hash == Arch(nx.relabel_nodes(g, {0: 3, 3: 0, 1: "z"}), "d").hash


def test_json_round_trip_keeps_everything() -> None:
    g = chain("conv", "conv")
    g.nodes["n1"]["kernel"] = 3
    g.edges["in", "n0"]["op"] = "skip"
    arch = Arch(g, "demo", attrs={"width": 16})
    back = Arch.from_json(arch.to_json())
    assert back == arch and back.to_dict() == arch.to_dict()
    assert Arch.from_json(json.loads(arch.to_json())) == arch


@pytest.mark.parametrize(
    ("build", "message"),
    [
        (lambda: nx.Graph(), "needs a networkx.DiGraph, got Graph"),
        (lambda: nx.DiGraph(), "the graph has no nodes"),
        (lambda: nx.DiGraph([("a", "b")]), "node 'a' has no 'op' attribute"),
    ],
)
def test_structure_errors(build, message: str) -> None:
    with pytest.raises(InvalidArchitecture, match=None) as info:
        Arch(build(), "demo")
    assert message in str(info.value)


def test_cycle_is_rejected_with_the_cycle() -> None:
    g = chain("conv", "conv")
    g.add_edge("n1", "n0")
    with pytest.raises(
        InvalidArchitecture, match=r"must be acyclic, but has the cycle \[\('n0', 'n1'\), \('n1', 'n0'\)\]"
    ):
        Arch(g, "demo")


def test_input_output_rules() -> None:
    g = chain("conv")
    g.add_node("in2", op="input")
    with pytest.raises(
        InvalidArchitecture, match=r"exactly one 'input' and one 'output' node are required, got 2 input"
    ):
        Arch(g, "demo")
    g = chain("conv")
    g.add_node("x", op="conv")
    g.add_edge("out", "x")
    with pytest.raises(
        InvalidArchitecture, match="the input node must have no incoming and the output node no outgoing"
    ):
        Arch(g, "demo")
    g = chain("conv")
    g.add_node("x", op="conv")
    g.add_edge("x", "in")
    with pytest.raises(
        InvalidArchitecture, match="the input node must have no incoming and the output node no outgoing"
    ):
        Arch(g, "demo")
    g = chain("conv")
    g.remove_edge("n0", "out")
    g.add_edge("in", "n0")
    with pytest.raises(InvalidArchitecture, match="the output node 'out' is not reachable from the input 'in'"):
        Arch(g, "demo")


def test_vocabulary_and_arity() -> None:
    with pytest.raises(
        InvalidArchitecture,
        match=r"node 'n0' has unknown op 'pool'; expected one of \['add', 'conv', 'input', 'output'\]",
    ):
        Arch(chain("pool"), "demo", node_ops=VOCAB)
    g = chain("conv", "conv")
    g.add_edge("in", "n1")
    with pytest.raises(
        InvalidArchitecture, match=r"node 'n1' \(op 'conv'\) must have exactly 1 incoming edge\(s\), got 2"
    ):
        Arch(g, "demo", node_ops=VOCAB)
    with pytest.raises(
        InvalidArchitecture, match=r"node 'n0' \(op 'add'\) must have at least 2 incoming edge\(s\), got 1"
    ):
        Arch(chain("add"), "demo", node_ops=VOCAB)
    g = chain("conv")
    g.edges["in", "n0"]["op"] = "warp"
    with pytest.raises(InvalidArchitecture, match=r"edge 'in'->'n0' has unknown op 'warp'; expected one of \['skip'\]"):
        Arch(g, "demo", edge_ops={"skip"})


@pytest.mark.parametrize(
    ("doc", "message"),
    [
        ("{not json", "architecture JSON could not be parsed"),
        ('{"space": "d", "nodes": []}', "lacks the field(s) ['edges']"),
        ('{"version": 9, "space": "d", "nodes": [], "edges": []}', "version must be 1, got 9"),
        ('{"space": "d", "nodes": [{"op": "input"}], "edges": []}', "malformed node or edge"),
        (
            '{"space": "d", "nodes": [{"id": 0, "op": "input"}], "edges": [{"src": 0, "dst": 5}]}',
            "edge 0->5 names an unknown node",
        ),
    ],
)
def test_json_errors(doc: str, message: str) -> None:
    with pytest.raises(InvalidArchitecture) as info:
        Arch.from_json(doc)
    assert message in str(info.value)
