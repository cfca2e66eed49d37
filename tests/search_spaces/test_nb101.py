from __future__ import annotations

import networkx as nx
import numpy as np
import optuna
import pytest
import torch

from wsnas import Arch, InvalidArchitecture, count_params
from wsnas.search_spaces import NB101, NB101_OPS
from wsnas.search_spaces._nb101_net import NB101Cell, compute_vertex_channels
from wsnas.testing import SearchSpaceTestCase

IN, OUT = "input", "output"
C3, C1, MP = "conv3x3-bn-relu", "conv1x1-bn-relu", "maxpool3x3"

# NAS-Bench-101's Inception-like example cell (its README): input feeds 1, 2, 3 and 5; 3 feeds 4; 1, 2, 4, 5
# feed the output.
INCEPTION = (
    [
        [0, 1, 1, 1, 0, 1, 0],
        [0, 0, 0, 0, 0, 0, 1],
        [0, 0, 0, 0, 0, 0, 1],
        [0, 0, 0, 0, 1, 0, 0],
        [0, 0, 0, 0, 0, 0, 1],
        [0, 0, 0, 0, 0, 0, 1],
        [0, 0, 0, 0, 0, 0, 0],
    ],
    [IN, C1, C3, C3, C3, MP, OUT],
)
# input -> 1, 2, 3 -> output (a concatenation of three nodes) plus input -> output
CONCAT = ([[0, 1, 1, 1, 1], [0, 0, 0, 0, 1], [0, 0, 0, 0, 1], [0, 0, 0, 0, 1], [0, 0, 0, 0, 0]], [IN, C3, C1, MP, OUT])


class TestNB101Contract(SearchSpaceTestCase):
    space = NB101()


def _conv_bn(c_in: int, c_out: int, k: int) -> int:
    """A bias-free kxk conv plus BN gamma and beta."""
    return c_in * c_out * k * k + 2 * c_out


def _inception_params(C: int, stacks: int = 3, cells: int = 3, classes: int = 10) -> int:
    """The Inception-like cell's network worked out by hand (C divisible by 4: each of the 4 output
    feeders gets c_out/4 channels, node 3 as many as node 4 which it feeds)."""
    total = _conv_bn(3, C, 3)  # stem
    c_prev = C
    for s in range(stacks):
        c = C * 2**s
        for _ in range(cells):
            q = c // 4
            total += 4 * _conv_bn(c_prev, q, 1)  # input projections to nodes 1, 2, 3, 5
            total += _conv_bn(q, q, 1) + 3 * _conv_bn(q, q, 3)  # node ops (max-pool has none)
            c_prev = c
    return total + c_prev * classes + classes


def test_parameter_count_by_hand_and_the_benchmarks_figure() -> None:
    space = NB101()
    arch = space.from_spec(*INCEPTION)
    assert count_params(space.build(arch, C=8, stacks=3, cells_per_stack=2)) == _inception_params(8, cells=2)
    assert count_params(space.build(arch, C=16, stacks=2, cells_per_stack=1)) == _inception_params(16, 2, 1)
    # 2,694,282 trainable parameters is what NAS-Bench-101 lists for this cell at its full size
    assert _inception_params(128) == 2_694_282
    assert count_params(space.build(arch)) == 2_694_282


def test_parameter_count_with_skip_projection_and_truncation() -> None:
    # input -> 1 (conv3x3) -> 2 (conv1x1) -> output, 1 -> output, input -> output; C = 5: nodes 1 and 2
    # feed the output with 3 and 2 channels, so 1's value is truncated from 3 to 2 channels into node 2
    space = NB101()
    m = [[0, 1, 0, 1], [0, 0, 1, 1], [0, 0, 0, 1], [0, 0, 0, 0]]
    arch = space.from_spec(m, [IN, C3, C1, OUT])
    net = space.build(arch, C=5, stacks=1, cells_per_stack=1)
    cell = net.cells[0]
    assert cell.vertex_channels == (5, 3, 2, 5)
    expected = _conv_bn(3, 5, 3) + _conv_bn(5, 3, 1) + _conv_bn(3, 3, 3) + _conv_bn(2, 2, 1)
    expected += _conv_bn(5, 5, 1) + 5 * 10 + 10  # output projection, classifier
    assert count_params(net) == expected
    assert net(torch.randn(2, 3, 8, 8)).shape == (2, 10)


def test_channel_split_of_a_concatenation_cell() -> None:
    space = NB101()
    arch = space.from_spec(*CONCAT)
    m, ops = space.benchmark_spec(arch)
    assert compute_vertex_channels(16, 16, m.tolist()) == [16, 6, 5, 5, 16]
    cell = NB101Cell(m.tolist(), ops, 8, 16)
    assert cell.vertex_channels == (8, 6, 5, 5, 16)
    # the three feeders are interchangeable, so NAS-Bench-101's order is the smallest op labelling: conv3x3
    # first, and it gets the remainder channel (the string's canonical order puts conv1x1 first)
    assert ops == (IN, C3, C1, MP, OUT) and space.spec(arch)[1] == (IN, C1, C3, MP, OUT)
    assert cell.ops["1"][0].kernel_size == (3, 3) and cell.ops["1"][0].out_channels == 6
    assert cell.ops["2"][0].kernel_size == (1, 1) and cell.ops["2"][0].out_channels == 5
    assert space.build(arch, C=16, stacks=1, cells_per_stack=1).cells[0].vertex_channels == (16, 6, 5, 5, 16)
    assert cell.proj["3"][0].out_channels == 5 and cell.proj["4"][0].out_channels == 16
    out = cell(torch.randn(2, 8, 6, 6))
    assert out.shape == (2, 16, 6, 6)
    # a chain node takes the channels of its successor; the input-only cell projects to c_out
    assert compute_vertex_channels(4, 16, [[0, 1, 0, 0], [0, 0, 1, 0], [0, 0, 0, 1], [0, 0, 0, 0]]) == [4, 16, 16, 16]
    assert compute_vertex_channels(4, 16, [[0, 1], [0, 0]]) == [4, 16]
    with pytest.raises(ValueError, match="2 output channels cannot be split across the 3 nodes"):
        space.build(arch, C=2)


def test_pruning_removes_extraneous_nodes() -> None:
    space = NB101()
    # node 2 is a dead end (no path to the output), node 3 is unreachable from the input
    m = [[0, 1, 1, 0, 0], [0, 0, 0, 0, 1], [0, 0, 0, 0, 0], [0, 0, 0, 0, 1], [0, 0, 0, 0, 0]]
    arch = space.from_spec(m, [IN, C3, MP, C1, OUT])
    pruned = space.from_spec([[0, 1, 0], [0, 0, 1], [0, 0, 0]], [IN, C3, OUT])
    assert arch.graph.number_of_nodes() == 3 and arch.graph.number_of_edges() == 2
    assert arch == pruned and arch.hash == pruned.hash
    assert space.from_spec(np.asarray(m, dtype=bool), np.asarray([IN, C3, MP, C1, OUT])) == pruned
    assert space.to_string(arch) == space.to_string(pruned) == "input,conv3x3-bn-relu,output|010,001,000"
    # the edge limit counts after pruning: 10 edges, of which 3 hang off a dead-end node
    m = np.triu(np.ones((7, 7), dtype=int), 1)
    m[:5, 5] = 0
    m[5, :] = 0
    m[1, 5] = m[2, 5] = m[3, 5] = 1
    m[0, 2] = m[0, 3] = m[0, 4] = m[1, 3] = m[1, 4] = m[2, 4] = 0
    assert m.sum() == 12
    arch = space.from_spec(m, [IN, C3, C3, C3, C3, MP, OUT])
    assert arch.graph.number_of_nodes() == 6 and arch.graph.number_of_edges() == 9


def test_unpruned_or_foreign_graphs_are_rejected() -> None:
    space = NB101()
    g = nx.DiGraph([("i", "a"), ("a", "o"), ("i", "b")])
    nx.set_node_attributes(g, {"i": IN, "a": C3, "b": MP, "o": OUT}, "op")
    with pytest.raises(InvalidArchitecture, match="must be pruned: 1 of its nodes lie on no input->output path"):
        space.to_string(Arch(g, "nb101"))
    g.remove_node("b")
    assert space.to_string(Arch(g, "nb101")) == "input,conv3x3-bn-relu,output|010,001,000"
    with pytest.raises(InvalidArchitecture, match="no graph attributes, got {'width': 3}"):
        space.to_string(Arch(g, "nb101", attrs={"width": 3}))
    with pytest.raises(InvalidArchitecture, match="space 'nb101', got one of 'nb201'"):
        space.spec(Arch(g, "nb201"))
    h = nx.DiGraph(g)
    h.edges["i", "a"]["op"] = "skip"
    with pytest.raises(InvalidArchitecture, match="plain wires, but edge 'i'->'a' has {'op': 'skip'}"):
        space.to_string(Arch(h, "nb101"))
    h = nx.DiGraph(g)
    h.nodes["a"]["kernel"] = 3
    with pytest.raises(InvalidArchitecture, match=r"only an 'op' attribute, node 'a' has \['kernel', 'op'\]"):
        space.to_string(Arch(h, "nb101"))
    with pytest.raises(InvalidArchitecture, match="expected an Arch of space 'nb101', got str"):
        space.to_string("input,output|01,00")  # type: ignore[arg-type]


def test_isomorphic_orders_hash_equal() -> None:
    space = NB101()
    a = space.from_spec(*INCEPTION)
    perm = [0, 5, 3, 4, 2, 1, 6]  # another topological order of the same cell
    m = np.asarray(INCEPTION[0])[np.ix_(perm, perm)]
    assert not np.tril(m).any()
    b = space.from_spec(m, [INCEPTION[1][k] for k in perm])
    assert a == b and a.hash == b.hash
    assert space.to_string(a) == space.to_string(b)
    assert space.to_string(a) == (
        "input,conv1x1-bn-relu,conv3x3-bn-relu,conv3x3-bn-relu,conv3x3-bn-relu,maxpool3x3,output"
        "|0110110,0000001,0001000,0000001,0000001,0000001,0000000"
    )  # the smallest string of the 60 topological orders: the chain 2->3 first, the parallel conv3x3 at 4
    different = space.from_spec(INCEPTION[0], [IN, C1, C3, C3, C3, C3, OUT])
    assert different != a and different.hash != a.hash
    longer_chain = np.asarray(INCEPTION[0])
    longer_chain[0, 5], longer_chain[4, 5] = 0, 1  # max-pool after the two conv3x3 instead of beside them
    other = space.from_spec(longer_chain, INCEPTION[1])
    assert other.graph.number_of_edges() == 9 and other.hash != a.hash


@pytest.mark.parametrize(
    ("matrix", "ops", "message"),
    [
        ([[0, 1], [0]], [IN, OUT], "the matrix is not a rectangular array"),
        ([[0, 1, 0], [0, 0, 1]], [IN, OUT], "the matrix must be square, got shape (2, 3)"),
        ([[0]], [IN], "at least 2 nodes (input and output), got a 1x1 matrix"),
        ([["0", "1"], ["0", "0"]], [IN, OUT], "matrix entries must be 0 or 1, got dtype <U1"),
        ([[0, 2], [0, 0]], [IN, OUT], "matrix entries must be 0 or 1, got matrix[0][1] = 2"),
        ([[0, 1, 0], [0, 0, 1], [0, 1, 0]], [IN, C3, OUT], "strictly upper-triangular (edges i->j with i < j"),
        ([[0, 1, 0], [0, 0, 1], [0, 1, 0]], [IN, C3, OUT], "only), got matrix[2][1] = 1"),
        ([[0, 1], [0, 1]], [IN, OUT], "upper-triangular (edges i->j with i < j only), got matrix[1][1] = 1"),
        ([[0, 1], [0, 0]], "io", "ops must be a list of op names, got str"),
        ([[0, 1], [0, 0]], None, "ops must be a list of op names, got NoneType"),
        ([[0, 1, 0], [0, 0, 1], [0, 0, 0]], [IN, OUT], "the matrix is 3x3, so 3 ops are needed, got 2"),
        ([[0, 1], [0, 0]], [C3, OUT], "ops[0] must be 'input', got 'conv3x3-bn-relu'"),
        ([[0, 1, 1], [0, 0, 1], [0, 0, 0]], [IN, C3, MP], "ops[2] (the last) must be 'output', got 'maxpool3x3'"),
        ([[0, 1, 1], [0, 0, 1], [0, 0, 0]], [IN, "conv5x5", OUT], "ops[1] is 'conv5x5'; an intermediate op must"),
        ([[0, 1, 1], [0, 0, 1], [0, 0, 0]], [IN, OUT, OUT], "ops[1] is 'output'; an intermediate op"),
        ([[0, 1, 0], [0, 0, 0], [0, 0, 0]], [IN, C3, OUT], "the output (node 2) is not reachable from the input"),
        (np.eye(8, k=1, dtype=int), [IN, *[C3] * 6, OUT], "at most 7 nodes are allowed after pruning, got 8"),
    ],
)
def test_from_spec_errors(matrix: object, ops: object, message: str) -> None:
    with pytest.raises(InvalidArchitecture) as info:
        NB101().from_spec(matrix, ops)  # type: ignore[arg-type]
    assert message in str(info.value)


def test_nine_edge_limit() -> None:
    space = NB101()
    m = np.eye(7, k=1, dtype=int)  # a 6-edge chain
    m[0, 2] = m[0, 3] = m[0, 4] = 1
    arch = space.from_spec(m, [IN, *[C3] * 5, OUT])
    assert arch.graph.number_of_edges() == 9
    m[0, 5] = 1
    with pytest.raises(InvalidArchitecture, match="at most 9 edges are allowed after pruning, got 10"):
        space.from_spec(m, [IN, *[C3] * 5, OUT])
    assert all(a.graph.number_of_edges() <= 9 for a in TestNB101Contract()._samples(300, seed=11))


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "'OPS|ROWS' with exactly one '|', got ''"),
        ("input,output", "'OPS|ROWS' with exactly one '|'"),
        ("input,output|01|00", "'OPS|ROWS' with exactly one '|'"),
        ("input,output|01", "lists 2 op(s) but 1 matrix row(s)"),
        ("input,output|01,0", "matrix row 1 must be 2 characters '0' or '1', got '0'"),
        ("input,output|01,0x", "matrix row 1 must be 2 characters '0' or '1', got '0x'"),
        ("input,output|0\u0661,00", "matrix row 0 must be 2 characters '0' or '1'"),
        ("input, output|01,00", "ops[1] (the last) must be 'output', got ' output'"),
        ("input,output|00,00", "the output (node 1) is not reachable from the input (node 0)"),
        ("input,output|01,10", "strictly upper-triangular"),
    ],
)
def test_malformed_strings(text: str, message: str) -> None:
    with pytest.raises(InvalidArchitecture) as info:
        NB101().from_string(text)
    assert message in str(info.value)


def test_string_form_accepts_any_order_and_writes_the_canonical_one() -> None:
    space = NB101()
    text = "input,maxpool3x3,conv3x3-bn-relu,output|0110,0001,0001,0000"
    arch = space.from_string(text)
    canonical = "input,conv3x3-bn-relu,maxpool3x3,output|0110,0001,0001,0000"
    assert space.to_string(arch) == canonical
    assert space.from_string(canonical) == arch
    assert space.from_string(f"  {canonical}\n") == arch
    with pytest.raises(InvalidArchitecture, match="must be a str, got int"):
        space.from_string(3)  # type: ignore[arg-type]


def _fixed(edges: set[tuple[int, int]], ops: list[str]) -> optuna.trial.FixedTrial:
    params: dict[str, object] = {f"edge_{i}_{j}": int((i, j) in edges) for i in range(7) for j in range(i + 1, 7)}
    params.update({f"op_{v}": op for v, op in enumerate(ops, start=1)})
    return optuna.trial.FixedTrial(params)


def test_suggest_repairs_invalid_suggestions() -> None:
    space = NB101()
    ops = [C3, C1, MP, C3, C1]
    # no path: the input->output edge is added, the unreachable node 1 is pruned
    assert space.to_string(space.suggest(_fixed({(1, 6)}, ops))) == "input,output|01,00"
    # a valid suggestion is taken as it is
    chain = {(0, 1), (1, 2), (2, 3), (3, 4), (4, 5), (5, 6)}
    assert space.suggest(_fixed(chain, ops)) == space.from_spec(np.eye(7, k=1, dtype=int), [IN, *ops, OUT])
    # all 21 edges: drop in row-major order the edges whose removal prunes no node, down to 9
    everything = {(i, j) for i in range(7) for j in range(i + 1, 7)}
    kept = [(0, 1), (1, 2), (2, 3), (3, 4), (3, 5), (3, 6), (4, 5), (4, 6), (5, 6)]
    m = np.zeros((7, 7), dtype=int)
    for i, j in kept:
        m[i, j] = 1
    arch = space.suggest(_fixed(everything, ops))
    assert arch == space.from_spec(m, [IN, *ops, OUT])
    assert arch.graph.number_of_nodes() == 7 and arch.graph.number_of_edges() == 9


def test_suggest_param_names_are_stable() -> None:
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    trial = study.ask()
    NB101().suggest(trial)
    expected = {f"edge_{i}_{j}" for i in range(7) for j in range(i + 1, 7)} | {f"op_{v}" for v in range(1, 6)}
    assert set(trial.params) == expected
    assert study.trials[0].distributions["op_3"].choices == NB101_OPS


def test_neighbours_of_the_inception_cell() -> None:
    space = NB101()
    arch = space.from_spec(*INCEPTION)
    neigh = space.neighbours(arch)
    # 10 op changes (all distinct) and 9 edge removals (adding a 10th edge is invalid); removals give
    # only 4 distinct cells: 0->1 / 1->6 prune node 1, 0->2 / 2->6 node 2, 0->5 / 5->6 node 5, and
    # 0->3 / 3->4 / 4->6 the chain 3->4
    assert len(neigh) == 10 + 4
    assert len({a.hash for a in neigh}) == 14 and arch not in neigh
    same_shape = [a for a in neigh if a.graph.number_of_nodes() == 7 and a.graph.number_of_edges() == 9]
    assert len(same_shape) == 10
    assert sorted(a.graph.number_of_nodes() for a in neigh if a not in same_shape) == [5, 6, 6, 6]


def test_neighbours_of_small_cells_include_node_splits() -> None:
    space = NB101()
    smallest = space.from_string("input,output|01,00")
    assert sorted(space.to_string(a) for a in space.neighbours(smallest)) == [
        f"input,{op},output|010,001,000" for op in sorted(NB101_OPS)
    ]
    chain = space.from_string("input,conv3x3-bn-relu,output|010,001,000")
    texts = {space.to_string(a) for a in space.neighbours(chain)}
    assert texts == {
        "input,conv1x1-bn-relu,output|010,001,000",  # op changes
        "input,maxpool3x3,output|010,001,000",
        "input,conv3x3-bn-relu,output|011,001,000",  # flip 0->2 (the other flips disconnect)
        "input,conv1x1-bn-relu,conv3x3-bn-relu,output|0100,0010,0001,0000",  # splits of 0->1 and 1->2
        "input,conv3x3-bn-relu,conv1x1-bn-relu,output|0100,0010,0001,0000",
        "input,conv3x3-bn-relu,conv3x3-bn-relu,output|0100,0010,0001,0000",
        "input,conv3x3-bn-relu,maxpool3x3,output|0100,0010,0001,0000",
        "input,maxpool3x3,conv3x3-bn-relu,output|0100,0010,0001,0000",
    }


def test_size_enumerate_and_build_errors() -> None:
    space = NB101()
    assert space.size == 423_624
    with pytest.raises(NotImplementedError, match="423,624 cells"):
        space.enumerate()
    arch = space.from_spec(*CONCAT)
    for key, value in (("C", 0), ("stacks", 1.5), ("cells_per_stack", True), ("num_classes", -1)):
        with pytest.raises(ValueError, match=f"{key} must be an int >= 1, got {value!r}"):
            space.build(arch, **{key: value})


def test_sample_is_uniform_over_ops() -> None:
    rng = np.random.default_rng(0)
    counts = dict.fromkeys(NB101_OPS, 0)
    for _ in range(300):
        for op in NB101().spec(NB101().sample(rng))[1][1:-1]:
            counts[op] += 1
    total = sum(counts.values())
    assert min(counts.values()) > total / 3 * 0.85
