from __future__ import annotations

import itertools

import networkx as nx
import numpy as np
import pytest

from wsnas import Arch, InvalidArchitecture, count_params
from wsnas.search_spaces import MACRO_WIDTHS, MacroCNN
from wsnas.search_spaces._macro_net import InvertedBottleneck
from wsnas.testing import SearchSpaceTestCase

SMALLEST = "w16:k3e1s0/w32:k3e1s0/w64:k3e1s0"
MIXED = "w16:k3e1s0-k5e6s1/w32:k3e1s0/w64:k7e3s0"
OK_TAIL = "/w32:k3e1s0/w64:k3e1s0"


class TestMacroContract(SearchSpaceTestCase):
    space = MacroCNN()


def _block_params(c_in: int, c_out: int, k: int, e: int) -> int:
    """Bias-free convs plus BN gamma/beta: [1x1 expand + BN] + kxk depthwise + BN + 1x1 project + BN."""
    hidden = c_in * e
    expand = c_in * hidden + 2 * hidden if e > 1 else 0
    return expand + hidden * k * k + 2 * hidden + hidden * c_out + 2 * c_out


def test_parameter_count_by_hand() -> None:
    space = MacroCNN()
    stem = 3 * 16 * 9 + 2 * 16
    classifier = 64 * 10 + 10
    # the smallest network: one k3e1 block per stage, no expand convs
    smallest = stem + _block_params(16, 16, 3, 1) + _block_params(16, 32, 3, 1) + _block_params(32, 64, 3, 1)
    assert smallest + classifier == 464 + 464 + 752 + 2528 + 650 == 4858
    assert count_params(space.build(space.from_string(SMALLEST))) == 4858
    # expansion 6 with a skip in stage 1 (16 -> 96 -> 16), expansion 3 with kernel 7 in stage 3 (32 -> 96 -> 64)
    mixed = stem + 464 + _block_params(16, 16, 5, 6) + 752 + _block_params(32, 64, 7, 3) + classifier
    assert _block_params(16, 16, 5, 6) == 1728 + 2592 + 1568
    assert mixed == 22650
    assert count_params(space.build(space.from_string(MIXED))) == 22650


def test_width_mult_scales_every_width_and_keeps_skips() -> None:
    space = MacroCNN()
    arch = space.from_string("w24:k3e1s0-k3e3s1/w48:k5e1s0/w96:k3e1s0")
    net = space.build(arch, width_mult=0.25, num_classes=7, in_channels=1)
    assert net.stem[0].weight.shape == (4, 1, 3, 3)
    assert [b.body[-1].num_features for b in net.blocks] == [6, 6, 12, 24]
    assert [b.skip for b in net.blocks] == [False, True, False, False]
    assert net.classifier.weight.shape == (7, 24)
    import torch

    assert net(torch.randn(3, 1, 16, 16)).shape == (3, 7)


def test_residual_block_adds_its_input() -> None:
    import torch

    torch.manual_seed(0)
    block = InvertedBottleneck(4, 4, 3, 3, stride=1, skip=True).eval()
    x = torch.randn(2, 4, 8, 8)
    assert torch.allclose(block(x), x + block.body(x))
    with pytest.raises(ValueError, match="needs stride 1 and c_in == c_out, got stride=2, c_in=4, c_out=4"):
        InvertedBottleneck(4, 4, 3, 1, stride=2, skip=True)


def test_size_of_the_full_space() -> None:
    per_stage = 3 * 9 * (1 + 18 + 18**2 + 18**3)
    assert MacroCNN().size == per_stage**3 == 4_634_492_442_328_125
    with pytest.raises(NotImplementedError, match="holds 4634492442328125 architectures; enumerate"):
        MacroCNN().enumerate()


def test_size_matches_brute_force_on_a_reduced_space() -> None:
    space = MacroCNN(widths=((8, 16), (16,), (32,)), max_depth=2, kernels=(3, 5), expansions=(1,))
    assert space.size == (2 * 10) * 10 * 10 == 2000
    seen = set()
    raw_block = list(itertools.product((3, 5), (1,), (False, True)))  # skip tried on first blocks too
    stage_raw = [
        [(w, blocks) for w in widths for d in (1, 2) for blocks in itertools.product(raw_block, repeat=d)]
        for widths in space.widths
    ]
    rejected = 0
    for stages in itertools.product(*stage_raw):
        try:
            seen.add(space.from_stages(stages).hash)
        except InvalidArchitecture as exc:
            assert "its skip must be off" in str(exc)
            rejected += 1
    assert len(seen) == space.size and rejected > 0
    listed = list(space.enumerate())
    assert len(listed) == 2000 and {a.hash for a in listed} == seen


def test_neighbours_of_the_smallest_network() -> None:
    space = MacroCNN()
    neigh = {space.to_string(a) for a in space.neighbours(space.from_string(SMALLEST))}
    # per stage: 2 other widths, 3 other depths, 2 other kernels, 2 other expansions (no skip on block 1)
    assert len(neigh) == 3 * 9
    assert "w16:k3e1s0-k3e1s1-k3e1s1/w32:k3e1s0/w64:k3e1s0" in neigh
    assert "w24:k3e1s0/w32:k3e1s0/w64:k3e1s0" in neigh
    assert "w16:k3e1s0/w32:k3e1s0/w64:k7e1s0" in neigh
    mixed = {space.to_string(a) for a in space.neighbours(space.from_string(MIXED))}
    assert "w16:k3e1s0-k5e6s0/w32:k3e1s0/w64:k7e3s0" in mixed  # the skip toggled
    assert "w16:k3e1s0/w32:k3e1s0/w64:k7e3s0" in mixed  # depth 1


def test_suggest_uses_stable_param_names() -> None:
    import optuna

    params = {
        "stage1_width": 24, "stage1_depth": 2, "stage1_block1_kernel": 5, "stage1_block1_expansion": 3,
        "stage1_block2_kernel": 7, "stage1_block2_expansion": 1, "stage1_block2_skip": True,
        "stage2_width": 64, "stage2_depth": 1, "stage2_block1_kernel": 3, "stage2_block1_expansion": 6,
        "stage3_width": 128, "stage3_depth": 1, "stage3_block1_kernel": 7, "stage3_block1_expansion": 1,
    }  # fmt: skip
    space = MacroCNN()
    arch = space.suggest(optuna.trial.FixedTrial(params))
    assert space.to_string(arch) == "w24:k5e3s0-k7e1s1/w64:k3e6s0/w128:k7e1s0"


def test_graph_attributes() -> None:
    space = MacroCNN()
    arch = space.from_string(MIXED)
    blocks = [d for _, d in arch.graph.nodes(data=True) if d["op"] == "block"]
    assert blocks[1] == {"op": "block", "stage": 1, "kernel": 5, "expansion": 6, "skip": True, "width": 16}
    assert [b["stage"] for b in blocks] == [1, 1, 2, 3]
    assert space.stages(arch) == ((16, ((3, 1, False), (5, 6, True))), (32, ((3, 1, False),)), (64, ((7, 3, False),)))


def test_sample_covers_every_depth_and_choice() -> None:
    space, rng = MacroCNN(), np.random.default_rng(0)
    stages = [space.stages(space.sample(rng)) for _ in range(300)]
    assert {len(s[0][1]) for s in stages} == {1, 2, 3, 4}
    assert {s[2][0] for s in stages} == set(MACRO_WIDTHS[2])
    assert {b[0] for s in stages for b in s[1][1]} == {3, 5, 7}
    assert all(not st[1][0][2] for s in stages for st in s)  # first blocks never skip


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "has 3 '/'-separated stages, got 1 in ''"),
        ("w16:k3e1s0/w32:k3e1s0", "has 3 '/'-separated stages, got 2"),
        ("16:k3e1s0" + OK_TAIL, "stage 1 must read 'wWIDTH:BLOCK-BLOCK...', got '16:k3e1s0'"),
        ("w016:k3e1s0" + OK_TAIL, "stage 1 must read 'wWIDTH:BLOCK-BLOCK...', got 'w016:k3e1s0'"),
        (" w16:k3e1s0" + OK_TAIL, "stage 1 must read 'wWIDTH:BLOCK-BLOCK...'"),
        ("w16:k3e1" + OK_TAIL, "stage 1 block 1 must read 'k<kernel>e<expansion>s<0|1>', got 'k3e1'"),
        ("w16:" + OK_TAIL, "stage 1 block 1 must read 'k<kernel>e<expansion>s<0|1>', got ''"),
        ("w16:k3e1s0-k3e1s2" + OK_TAIL, "stage 1 block 2 must read 'k<kernel>e<expansion>s<0|1>', got 'k3e1s2'"),
        ("w16:k\u0663e1s0" + OK_TAIL, "stage 1 block 1 must read"),
        ("w20:k3e1s0" + OK_TAIL, "stage 1: width must be one of [16, 24, 32], got 20"),
        ("w16:k4e1s0" + OK_TAIL, "stage 1 block 1: kernel must be one of [3, 5, 7], got 4"),
        ("w16:k3e2s0" + OK_TAIL, "stage 1 block 1: expansion must be one of [1, 3, 6], got 2"),
        ("w16:k3e1s1" + OK_TAIL, "stage 1 block 1: the first block of a stage changes the width or the resolution"),
        ("w16:" + "-".join(["k3e1s0"] * 5) + OK_TAIL, "stage 1: depth must be between 1 and 4, got 5"),
        ("w16:k3e1s0/w32:k3e1s0/w64:k3e1s0/", "has 3 '/'-separated stages, got 4"),
    ],
)
def test_malformed_strings(text: str, message: str) -> None:
    with pytest.raises(InvalidArchitecture) as info:
        MacroCNN().from_string(text)
    assert message in str(info.value)


def _graph(arch: Arch) -> nx.DiGraph:
    return nx.DiGraph(arch.graph)


def test_malformed_graphs() -> None:
    space = MacroCNN()
    arch = space.from_string(MIXED)
    with pytest.raises(InvalidArchitecture, match="expected an architecture of space 'macro', got one of 'nb201'"):
        space.stages(Arch(_graph(arch), "nb201"))
    with pytest.raises(InvalidArchitecture, match="expected an Arch of space 'macro', got str"):
        space.stages(MIXED)  # type: ignore[arg-type]
    g = _graph(arch)
    g.add_edge(1, 3)
    with pytest.raises(InvalidArchitecture, match="must be a chain input -> blocks -> output; node 1 breaks it"):
        space.validate(Arch(g, "macro"))
    g = _graph(arch)
    g.add_node("extra", op="block")
    with pytest.raises(InvalidArchitecture, match="must be a chain; 1 node\\(s\\) lie off it"):
        space.validate(Arch(g, "macro"))
    g = _graph(arch)
    g.nodes[2]["skip"] = 1
    with pytest.raises(InvalidArchitecture, match="stage 1 block 2: skip must be a bool, got 1"):
        space.validate(Arch(g, "macro"))
    g = _graph(arch)
    g.nodes[2]["stage"] = True
    with pytest.raises(InvalidArchitecture, match="a block's stage must be an int, got True"):
        space.validate(Arch(g, "macro"))
    g = _graph(arch)
    g.nodes[2]["extra"] = 0
    with pytest.raises(InvalidArchitecture, match="block nodes carry exactly"):
        space.validate(Arch(g, "macro"))
    g = _graph(arch)
    g.nodes[3]["stage"], g.nodes[4]["stage"] = 3, 2
    with pytest.raises(InvalidArchitecture, match="run through stages 1, 2, 3 in order, got stages \\[1, 3, 2\\]"):
        space.validate(Arch(g, "macro"))
    g = _graph(arch)
    g.nodes[2]["width"] = 24
    with pytest.raises(InvalidArchitecture, match="all blocks of stage 1 share one width, got \\['16', '24'\\]"):
        space.validate(Arch(g, "macro"))
    with pytest.raises(InvalidArchitecture, match="has no graph attributes, got \\['depth'\\]"):
        space.validate(Arch(_graph(arch), "macro", attrs={"depth": 3}))
    g = _graph(arch)
    g.edges[0, 1]["op"] = "skip"
    with pytest.raises(InvalidArchitecture, match="has plain edges without attributes"):
        space.validate(Arch(g, "macro"))


def test_from_stages_errors() -> None:
    space = MacroCNN()
    with pytest.raises(InvalidArchitecture, match="has 3 stages, got 1"):
        space.from_stages([(16, [(3, 1, False)])])
    with pytest.raises(InvalidArchitecture, match="block 1: expected \\(kernel, expansion, skip\\), got \\(3, 1\\)"):
        space.from_stages([(16, [(3, 1, False)]), (32, [(3, 1)]), (64, [(3, 1, False)])])
    with pytest.raises(InvalidArchitecture, match="stage 3 block 1: kernel must be one of \\[3, 5, 7\\], got 3.0"):
        space.from_stages([(16, [(3, 1, False)]), (32, [(3, 1, False)]), (64, [(3.0, 1, False)])])


def test_constructor_and_build_errors() -> None:
    with pytest.raises(ValueError, match="widths must hold the choices of 3 stages, got 2"):
        MacroCNN(widths=((16,), (32,)))
    with pytest.raises(ValueError, match="kernels must be odd \\(padding k // 2 keeps .*\\), got \\(3, 4\\)"):
        MacroCNN(kernels=(3, 4))
    with pytest.raises(ValueError, match="expansions must be a non-empty sequence of distinct .* ints, got \\(1, 1\\)"):
        MacroCNN(expansions=(1, 1))
    with pytest.raises(ValueError, match="widths\\[1\\] must be a non-empty sequence of distinct .* got \\(\\)"):
        MacroCNN(widths=((16,), (), (64,)))
    with pytest.raises(ValueError, match="max_depth must be an int >= 1, got 0"):
        MacroCNN(max_depth=0)
    with pytest.raises(ValueError, match="stem_width must be an int >= 1, got 2.5"):
        MacroCNN(stem_width=2.5)  # type: ignore[arg-type]
    space = MacroCNN()
    arch = space.from_string(SMALLEST)
    with pytest.raises(ValueError, match="width_mult must be a number > 0, got 0"):
        space.build(arch, width_mult=0)
    with pytest.raises(ValueError, match="num_classes must be an int >= 1, got 0"):
        space.build(arch, num_classes=0)
    with pytest.raises(ValueError, match="in_channels must be an int >= 1, got True"):
        space.build(arch, in_channels=True)
