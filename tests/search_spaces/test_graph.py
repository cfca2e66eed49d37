from __future__ import annotations

import itertools
from typing import Any

import networkx as nx
import numpy as np
import pytest

from wsnas import Arch, InvalidArchitecture, count_params
from wsnas.search_spaces import GRAPH_OPS, GraphSpace, example_graph_space
from wsnas.search_spaces._graph_net import BUILTIN_FACTORIES
from wsnas.search_spaces._ops import ConvBNReLU
from wsnas.testing import SearchSpaceTestCase

EXAMPLE = "a=conv3x3;b=conv3x3;c=identity;edge(a,c)=on;edge(b,c)=off"


def _user_template() -> nx.DiGraph:
    """Int node names, an op choice on an optional edge, a fixed edge op and a user-registered op."""
    g = nx.DiGraph()
    g.add_node(0, op="input")
    g.add_node(1, choices=["conv3x3", "cbr3x3", "zero"])
    g.add_node(2, op="cbr3x3")
    g.add_node(3, choices=["identity", "avgpool3x3"])
    g.add_node(4, op="output")
    g.add_edge(0, 1)
    g.add_edge(1, 2, optional=True, choices=["identity", "conv1x1"])
    g.add_edge(0, 2, op="maxpool3x3", optional=True)
    g.add_edge(2, 3)
    g.add_edge(1, 3, optional=True)
    g.add_edge(3, 4)
    return g


def _user_space() -> GraphSpace:
    return GraphSpace(_user_template(), name="user", ops={"cbr3x3": lambda c: ConvBNReLU(c, c, 3)}, C=8)


class TestGraphContract(SearchSpaceTestCase):
    space = example_graph_space()


class TestUserGraphContract(SearchSpaceTestCase):
    space = _user_space()
    n_roundtrip = 300


def test_builtin_ops_match_their_factories() -> None:
    assert set(GRAPH_OPS) == set(BUILTIN_FACTORIES)


def _brute_force_count(space: GraphSpace) -> int:
    points = space.choice_points
    count = 0
    for combo in itertools.product(*points.values()):
        try:
            space.from_choices(dict(zip(points, combo)))
        except InvalidArchitecture as exc:
            assert "is not reachable from the input" in str(exc)
            continue
        count += 1
    return count


def test_example_space_size() -> None:
    space = example_graph_space()
    assert space.name == "graph"
    assert list(space.choice_points) == ["a", "b", "c", "edge(a,c)", "edge(b,c)"]
    # 3 * 3 * 2 node choices; of the four on/off settings of the optional edges, both-off cuts the output
    assert space.size == 18 * 3 == 54 == _brute_force_count(space)
    archs = list(space.enumerate())
    assert len({a.hash for a in archs}) == 54


def test_user_space_size() -> None:
    space = _user_space()
    # edge(1,2): identity|conv1x1|off, edge(0,2): maxpool3x3|off, edge(1,3): on|off
    # invalid: node 3 cut off from the input, i.e. edge(1,3) off and node 2 without input
    # (edge(1,2) and edge(0,2) both off): 1 of 3 * 2 * 2 = 12 settings, 2 + 2 + 1 = ... counted by weight
    valid_edge_weights = sum(
        1 for e12 in ("identity", "conv1x1", "off") for e02 in ("maxpool3x3", "off") for e13 in ("on", "off")
        if not (e13 == "off" and e12 == "off" and e02 == "off")
    )  # fmt: skip
    assert valid_edge_weights == 11
    assert space.size == 3 * 2 * 11 == 66 == _brute_force_count(space)


def test_docstring_example_space() -> None:
    g = nx.DiGraph()
    g.add_node("in", op="input")
    g.add_node("a", choices=["conv3x3", "conv5x5", "maxpool3x3"])
    g.add_node("b", choices=["conv1x1", "identity"])
    g.add_node("out", op="output")
    g.add_edges_from([("in", "a"), ("a", "b"), ("b", "out")])
    g.add_edge("in", "b", optional=True)
    g.add_edge("a", "out", optional=True, choices=["identity", "avgpool3x3"])
    space = GraphSpace(g, name="mine")
    assert space.size == 36
    arch = space.from_string("a=conv5x5;b=identity;edge(in,b)=off;edge(a,out)=avgpool3x3")
    assert sorted(arch.graph.edges) == [("a", "b"), ("a", "out"), ("b", "out"), ("in", "a")]
    assert arch.graph.edges["a", "out"] == {"op": "avgpool3x3"}
    import torch

    assert space.build(arch, C=16)(torch.randn(2, 3, 8, 8)).shape == (2, 10)


def test_parameter_count_and_dead_nodes_are_not_built() -> None:
    space = example_graph_space()
    C = 4
    stem, conv3, lastact, classifier = 3 * C * 9 + 2 * C, 9 * C * C + 2 * C, 2 * C, C * 10 + 10
    # b's edge to c is off, so b lies on no input-output path and is not built
    net = space.build(space.from_string(EXAMPLE), C=C)
    assert count_params(net) == stem + conv3 + lastact + classifier == 326
    assert [key for key, _, _ in net.plan] == ["a", "c", "out"]
    both = space.build(space.from_string(EXAMPLE.replace("edge(b,c)=off", "edge(b,c)=on")), C=C)
    assert count_params(both) == 326 + conv3


def test_node_sums_inputs_and_edge_ops_apply() -> None:
    import torch

    space = _user_space()
    arch = space.from_string("1=zero;3=identity;edge(0,2)=maxpool3x3;edge(1,2)=off;edge(1,3)=on")
    net = space.build(arch, C=4).eval()
    assert set(net.edge_ops) == {"0->2"} and set(net.node_ops) == {"n_1", "n_2", "n_3"}
    x = torch.randn(2, 3, 8, 8)
    stem = net.stem(x)
    node2 = net.node_ops["n_2"](torch.nn.functional.max_pool2d(stem, 3, 1, 1))
    expected = net.classifier(net.global_pooling(net.lastact(node2 + torch.zeros_like(stem))).flatten(1))
    assert torch.allclose(net(x), expected, atol=1e-6)


def test_unreachable_output_is_rejected_and_never_sampled() -> None:
    space = example_graph_space()
    with pytest.raises(InvalidArchitecture) as info:
        space.from_string("a=conv3x3;b=conv3x3;c=identity;edge(a,c)=off;edge(b,c)=off")
    assert str(info.value) == (
        "GraphSpace 'graph': the output 'out' is not reachable from the input 'in' "
        "with the optional edge(s) ['edge(a,c)', 'edge(b,c)'] off"
    )
    rng = np.random.default_rng(0)
    strings = {space.to_string(space.sample(rng)) for _ in range(300)}
    assert not any("edge(a,c)=off;edge(b,c)=off" in s for s in strings)
    assert len(strings) > 40
    neigh = space.neighbours(space.from_string(EXAMPLE))
    # a: 2, b: 2, c: 1, edge(a,c): off would cut the output, edge(b,c): on
    assert len(neigh) == 6


def test_suggest_offers_off_only_while_the_output_stays_reachable() -> None:
    import optuna

    space = example_graph_space()
    params = {"a": "conv5x5", "b": "conv1x1", "c": "conv3x3", "edge(a,c)": "off"}
    # edge(b,c) is the last way into c, so it is forced on and asks Optuna nothing
    arch = space.suggest(optuna.trial.FixedTrial(params))
    assert space.to_string(arch) == "a=conv5x5;b=conv1x1;c=conv3x3;edge(a,c)=off;edge(b,c)=on"
    user = _user_space()
    params = {"1": "cbr3x3", "3": "identity", "edge(0,2)": "off", "edge(1,2)": "off", "edge(1,3)": "off"}
    with pytest.raises(InvalidArchitecture, match="is not reachable"):
        user.from_choices(params)
    # edges are asked in networkx's edge order: with edge(0,2) and edge(1,2) off, edge(1,3) is forced on
    assert user.to_string(user.suggest(optuna.trial.FixedTrial(params))).endswith("edge(1,3)=on")
    params = {**params, "edge(0,2)": "maxpool3x3"}
    assert user.to_string(user.suggest(optuna.trial.FixedTrial(params))) == (
        "1=cbr3x3;3=identity;edge(0,2)=maxpool3x3;edge(1,2)=off;edge(1,3)=off"
    )
    g = nx.DiGraph([("in", "x"), ("x", "out")])
    g.add_node("in", op="input")
    g.add_node("x", op="conv3x3")
    g.add_node("out", op="output")
    g.edges["x", "out"].update(optional=True, choices=["identity", "conv1x1"])
    chain = GraphSpace(g, name="chain")
    arch = chain.suggest(optuna.trial.FixedTrial({"edge(x,out)|on": "conv1x1"}))
    assert chain.to_string(arch) == "edge(x,out)=conv1x1"


def test_sampling_a_space_where_almost_nothing_is_valid() -> None:
    g = nx.DiGraph()
    names = ["in"] + [f"n{i}" for i in range(10)] + ["out"]
    for name in names:
        g.add_node(name, op="input" if name == "in" else "output" if name == "out" else "identity")
    g.add_edges_from(zip(names, names[1:]), optional=True)
    space = GraphSpace(g, name="fragile")
    assert space.size == 1  # every edge must stay on: 1 of 2**11 settings
    rng = np.random.default_rng(0)
    archs = {space.sample(rng).hash for _ in range(5)}
    assert len(archs) == 1
    assert space.neighbours(space.sample(rng)) == []
    assert space.to_string(space.sample(rng)) == ";".join(f"edge({u},{v})=on" for u, v in zip(names, names[1:]))


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "the string has 5 ';'-separated entries ['a', 'b', 'c', 'edge(a,c)', 'edge(b,c)'], got 0 in ''"),
        ("a=conv3x3;b=conv3x3;c=identity;edge(a,c)=on", "5 ';'-separated entries"),
        ("b=conv3x3;a=conv3x3;c=identity;edge(a,c)=on;edge(b,c)=on", "entry 1 must read 'a=VALUE', got 'b=conv3x3'"),
        ("a:conv3x3;b=conv3x3;c=identity;edge(a,c)=on;edge(b,c)=on", "entry 1 must read 'a=VALUE', got 'a:conv3x3'"),
        ("a=conv7x7;b=conv3x3;c=identity;edge(a,c)=on;edge(b,c)=on", "a must be one of ['conv3x3', 'conv5x5', 'maxp"),
        ("a=conv3x3;b=conv3x3;c=identity;edge(a,c)=yes;edge(b,c)=on", "edge(a,c) must be one of ['on', 'off']"),
        ("a=conv3x3;b=conv3x3;c=zero;edge(a,c)=on;edge(b,c)=on", "c must be one of ['conv3x3', 'identity']"),
        (EXAMPLE + ";", "5 ';'-separated entries"),
    ],
)  # fmt: skip
def test_malformed_strings(text: str, message: str) -> None:
    with pytest.raises(InvalidArchitecture) as info:
        example_graph_space().from_string(text)
    assert message in str(info.value)


def test_malformed_graphs() -> None:
    space = example_graph_space()
    arch = space.from_string(EXAMPLE)

    def graph() -> nx.DiGraph:
        return nx.DiGraph(arch.graph)

    with pytest.raises(InvalidArchitecture, match="expected an architecture of space 'graph', got one of 'user'"):
        space.choices(Arch(graph(), "user"))
    g = graph()
    g.add_node("z", op="conv3x3", name="z")
    with pytest.raises(InvalidArchitecture, match="the nodes must be the template's"):
        space.validate(Arch(g, "graph"))
    g = graph()
    g.nodes["a"]["name"] = "b"
    with pytest.raises(InvalidArchitecture, match="node 'a' must carry name='a' and an op of"):
        space.validate(Arch(g, "graph"))
    g = graph()
    g.nodes["c"]["op"] = "conv5x5"
    with pytest.raises(InvalidArchitecture, match="node 'c' must carry name='c' and an op of \\['conv3x3', 'ide"):
        space.validate(Arch(g, "graph"))
    g = graph()
    g.add_edge("in", "c")
    with pytest.raises(InvalidArchitecture, match="edge edge\\(in,c\\) with \\{\\} is not an edge of the template"):
        space.validate(Arch(g, "graph"))
    g = graph()
    g.edges["a", "c"]["op"] = "identity"
    with pytest.raises(InvalidArchitecture, match="edge edge\\(a,c\\) with \\{'op': 'identity'\\} is not an edge"):
        space.validate(Arch(g, "graph"))
    g = graph()
    g.remove_edge("a", "c")
    with pytest.raises(InvalidArchitecture, match="not reachable"):
        space.validate(Arch(g, "graph"))
    with pytest.raises(InvalidArchitecture, match="no graph attributes are allowed, got \\['C'\\]"):
        space.validate(Arch(graph(), "graph", attrs={"C": 4}))
    with pytest.raises(InvalidArchitecture, match="choices missing for \\['c'\\], unknown choice points \\['d'\\]"):
        space.from_choices({"a": "conv3x3", "b": "conv3x3", "d": "x", "edge(a,c)": "on", "edge(b,c)": "on"})


def _template(**changes: Any) -> nx.DiGraph:
    g = nx.DiGraph()
    g.add_node("in", op="input")
    g.add_node("a", **changes.get("a", {"choices": ["conv3x3", "identity"]}))
    g.add_node("out", op="output")
    g.add_edge("in", "a", **changes.get("edge", {}))
    g.add_edge("a", "out")
    return g


@pytest.mark.parametrize(
    ("template", "kwargs", "message"),
    [
        (_template(a={"choices": ["conv3x3", "conv7x7"]}), {}, "node 'a' has unknown op(s) ['conv7x7']; known"),
        (_template(a={"op": "sepconv"}), {}, "node 'a' has unknown op(s) ['sepconv']; known ops:"),
        (_template(edge={"choices": ["identity", "dil_conv"]}), {}, "edge (in,a) has unknown op(s) ['dil_conv']"),
        (_template(a={}), {}, "node 'a' needs either op=... or choices=[...], got neither"),
        (_template(a={"op": "zero", "choices": ["zero"]}), {}, "needs either op=... or choices=[...], got both"),
        (_template(a={"choices": []}), {}, "node 'a' needs a non-empty list of distinct op names as choices, got []"),
        (_template(a={"choices": "conv3x3"}), {}, "distinct op names as choices, got 'conv3x3'"),
        (_template(a={"choice": ["zero"]}), {}, "node 'a' has unknown attribute(s) ['choice']; allowed:"),
        (_template(edge={"optional": 1}), {}, "edge (in,a): optional must be True or False, got 1"),
        (_template(edge={"weight": 2}), {}, "edge (in,a) has unknown attribute(s) ['weight']"),
        (_template(a={"op": "output"}), {}, "got {'input': ['in'], 'output': ['a', 'out']}"),
        (nx.DiGraph([("in", "out")]), {}, "exactly one op='input' and one op='output' node"),
        (nx.MultiDiGraph(), {}, "the template must be a networkx.DiGraph, got MultiDiGraph"),
        (_template(), {"C": 0}, "C must be an int >= 1, got 0"),
        (_template(), {"ops": {"conv3x3": lambda c: None}}, "extra op name must be letters, digits or '_' and neither"),
        (_template(), {"ops": {"my op": lambda c: None}}, "got 'my op'"),
        (_template(), {"ops": {"mine": 3}}, "the factory of op 'mine' must be callable"),
        (_template(), {"name": "bad name"}, "GraphSpace: name must be letters, digits, '-' or '_', got 'bad name'"),
    ],
)  # fmt: skip
def test_template_errors(template: nx.DiGraph, kwargs: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError) as info:
        GraphSpace(template, **{"name": "t", **kwargs})
    assert message in str(info.value)


def test_unknown_op_in_the_template_raises_at_construction() -> None:
    with pytest.raises(ValueError) as info:
        GraphSpace(_template(a={"choices": ["conv3x3", "conv7x7"]}), name="t")
    assert str(info.value) == (
        "GraphSpace 't': node 'a' has unknown op(s) ['conv7x7']; known ops: ['conv1x1', 'conv3x3', 'conv5x5', "
        "'maxpool3x3', 'avgpool3x3', 'identity', 'zero'] (add ops with GraphSpace(..., ops={name: factory}))"
    )
    extra = {"conv7x7": BUILTIN_FACTORIES["zero"]}
    space = GraphSpace(_template(a={"choices": ["conv3x3", "conv7x7"]}), name="t", ops=extra)
    assert space.known_ops[-1] == "conv7x7" and space.size == 2


def test_template_structure_errors() -> None:
    g = _template()
    g.add_edge("a", "in")
    with pytest.raises(ValueError, match="the template must be acyclic"):
        GraphSpace(g, name="t")
    g = nx.relabel_nodes(_template(), {"a": "a b"})
    with pytest.raises(ValueError, match="node names must be distinct ints or strings of letters, digits and '_'"):
        GraphSpace(g, name="t")
    g = nx.relabel_nodes(_template(), {"a": 1})
    g.add_node("1", op="zero")
    g.add_edges_from([("in", "1"), ("1", "out")])
    with pytest.raises(ValueError, match="node names must be distinct"):
        GraphSpace(g, name="t")
    g = _template()
    g.add_node("lost", op="conv3x3")
    g.add_edge("in", "lost")
    with pytest.raises(ValueError, match="node\\(s\\) \\['lost'\\] lie on no path from the input to the output"):
        GraphSpace(g, name="t")
    g = _template()
    g.remove_edge("a", "out")
    with pytest.raises(ValueError, match="the output 'out' is not reachable from the input 'in'"):
        GraphSpace(g, name="t")
    g = _template()
    g.nodes["in"]["choices"] = ["zero"]
    with pytest.raises(ValueError, match="the input and output nodes take no choices"):
        GraphSpace(g, name="t")


def test_build_errors_and_settings() -> None:
    space = GraphSpace(_template(), name="t", ops={"bad": lambda c: 3}, C=6, num_classes=4, in_channels=1)
    assert space.input_shape == (1, 32, 32)
    arch = space.from_string("a=conv3x3")
    net = space.build(arch)
    assert net.stem[0].weight.shape == (6, 1, 3, 3) and net.classifier.weight.shape == (4, 6)
    assert space.build(arch, C=2).classifier.weight.shape == (4, 2)
    with pytest.raises(ValueError, match="GraphSpace.build: C must be an int >= 1, got 0"):
        space.build(arch, C=0)
    with pytest.raises(ValueError, match="num_classes must be an int >= 1, got 1.5"):
        space.build(arch, num_classes=1.5)  # type: ignore[arg-type]
    bad = GraphSpace(_template(a={"op": "bad"}), name="t", ops={"bad": lambda c: 3})
    assert bad.size == 1 and bad.choice_points == {}
    with pytest.raises(TypeError, match="the factory of op 'bad' must return an nn.Module, got int"):
        bad.build(bad.from_string(""))


def test_json_round_trip_keeps_int_node_names() -> None:
    space = _user_space()
    arch = space.from_string("1=cbr3x3;3=avgpool3x3;edge(0,2)=off;edge(1,2)=conv1x1;edge(1,3)=on")
    back = space.from_json(arch.to_json())
    assert back == arch and set(back.graph.nodes) == {0, 1, 2, 3, 4}
    assert back.graph.nodes[2] == {"op": "cbr3x3", "name": "2"}
