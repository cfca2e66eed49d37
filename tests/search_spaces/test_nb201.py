from __future__ import annotations

import numpy as np
import pytest

from wsnas import InvalidArchitecture, count_params
from wsnas.search_spaces import NB201, NB201_OPS, get_space
from wsnas.testing import SearchSpaceTestCase

ALL_CONV3 = "|nor_conv_3x3~0|+|nor_conv_3x3~0|nor_conv_3x3~1|+|nor_conv_3x3~0|nor_conv_3x3~1|nor_conv_3x3~2|"
EXAMPLE = "|nor_conv_3x3~0|+|nor_conv_3x3~0|avg_pool_3x3~1|+|skip_connect~0|nor_conv_3x3~1|skip_connect~2|"


class TestNB201Contract(SearchSpaceTestCase):
    space = NB201()
    build_kwargs = {"C": 4, "N": 1}


def _cell_params(c: int, convs3: int, convs1: int) -> int:
    """ReLU-Conv-BN edges: a bias-free kxk conv (c*c*k*k) plus BN gamma and beta (2c)."""
    return convs3 * (9 * c * c + 2 * c) + convs1 * (c * c + 2 * c)


def _benchmark_params(C: int, N: int, convs3: int, convs1: int, classes: int = 10) -> int:
    """The NAS-Bench-201 network's parameter count, worked out from its structure by hand."""
    stem = 3 * C * 9 + 2 * C
    cells = N * sum(_cell_params(c, convs3, convs1) for c in (C, 2 * C, 4 * C))
    blocks = 0
    for c_in, c_out in ((C, 2 * C), (2 * C, 4 * C)):
        # conv_a 3x3 stride 2 + BN, conv_b 3x3 + BN, shortcut 1x1 conv (no BN, no bias)
        blocks += 9 * c_in * c_out + 2 * c_out + 9 * c_out * c_out + 2 * c_out + c_in * c_out
    lastact = 2 * 4 * C
    classifier = 4 * C * classes + classes
    return stem + cells + blocks + lastact + classifier


def test_all_conv3x3_parameter_count_matches_the_benchmark() -> None:
    space = NB201()
    net = space.build(space.from_string(ALL_CONV3), C=16, N=5)
    # 1,531,546 is the figure NAS-Bench-201 lists for its largest cell (1.53 MB) at C=16, N=5
    assert _benchmark_params(16, 5, convs3=6, convs1=0) == 1_531_546
    assert count_params(net) == 1_531_546


@pytest.mark.parametrize("text", [EXAMPLE, ALL_CONV3])
def test_parameter_count_formula_for_mixed_cells(text: str) -> None:
    space = NB201()
    ops = space.ops(space.from_string(text))
    expected = _benchmark_params(8, 2, convs3=ops.count("nor_conv_3x3"), convs1=ops.count("nor_conv_1x1"))
    assert count_params(space.build(space.from_string(text), C=8, N=2)) == expected


def test_string_form_is_the_benchmarks() -> None:
    space = NB201()
    arch = space.from_string(EXAMPLE)
    assert space.to_string(arch) == EXAMPLE
    assert space.ops(arch) == (
        "nor_conv_3x3",
        "nor_conv_3x3",
        "avg_pool_3x3",
        "skip_connect",
        "nor_conv_3x3",
        "skip_connect",
    )


def test_enumerate_yields_every_cell_once() -> None:
    space = NB201()
    archs = list(space.enumerate())
    assert len(archs) == space.size == 15_625 == len(NB201_OPS) ** 6
    assert len({a.hash for a in archs}) == 15_625
    assert len({space.to_string(a) for a in archs}) == 15_625


def test_neighbours_count() -> None:
    space = NB201()
    assert len(space.neighbours(space.from_string(EXAMPLE))) == 6 * 4


def test_registry() -> None:
    assert isinstance(get_space("NB201"), NB201)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "3 '+'-separated node groups, got 1"),
        ("|nor_conv_3x3~0|+|nor_conv_3x3~0|avg_pool_3x3~1|", "3 '+'-separated node groups, got 2"),
        ("nor_conv_3x3~0|+|none~0|none~1|+|none~0|none~1|none~2|", "node group 1 must be enclosed in '|'"),
        ("|none~0|none~0|+|none~0|none~1|+|none~0|none~1|none~2|", "node group 1 must have 1 edge(s), got 2"),
        ("|none~1|+|none~0|none~1|+|none~0|none~1|none~2|", "edge 0->1 must read 'OP~0', got 'none~1'"),
        ("|conv_5x5~0|+|none~0|none~1|+|none~0|none~1|none~2|", "unknown op 'conv_5x5'"),
        ("|none0|+|none~0|none~1|+|none~0|none~1|none~2|", "must read 'OP~0', got 'none0'"),
    ],
)
def test_malformed_strings(text: str, message: str) -> None:
    with pytest.raises(InvalidArchitecture, match=None) as info:
        NB201().from_string(text)
    assert message in str(info.value)


def test_from_ops_and_build_errors() -> None:
    space = NB201()
    with pytest.raises(InvalidArchitecture, match="needs 6 edge ops, got 2"):
        space.from_ops(["none", "none"])
    with pytest.raises(InvalidArchitecture, match="unknown op 'conv'"):
        space.from_ops(["conv"] * 6)
    with pytest.raises(ValueError, match="C must be an int >= 1, got 0"):
        space.build(space.from_string(EXAMPLE), C=0)


def test_sample_is_uniform_enough() -> None:
    rng = np.random.default_rng(0)
    counts = dict.fromkeys(NB201_OPS, 0)
    for _ in range(500):
        for op in NB201().ops(NB201().sample(rng)):
            counts[op] += 1
    assert min(counts.values()) > 500 * 6 / 5 * 0.8


def test_build_for_encoding_interleaves_sizes_threads_and_copies() -> None:
    """The recycled networks stay exact when sizes alternate, in other threads, and after copying."""
    import copy
    import pickle
    import threading

    from wsnas.encoding import graph_template, weight_spec

    space = NB201()
    rng = np.random.default_rng(3)
    archs = [space.sample(rng) for _ in range(40)]

    def same(arch, size) -> bool:  # noqa: ANN001
        got, want = space.build_for_encoding(arch, **size), space.build(arch, **size)
        a, b = graph_template(got), graph_template(want)
        return weight_spec(got) == weight_spec(want) and a.num_edges == b.num_edges and all(
            (x == y).all() for x, y in ((a.edge_index, b.edge_index), (a.edge_type, b.edge_type))
        )

    for k, arch in enumerate(archs):
        assert same(arch, {"C": 2, "N": 1} if k % 2 else {"C": 4, "N": 2})
    results: list[bool] = []
    worker = threading.Thread(target=lambda: results.extend(same(a, {"C": 2, "N": 1}) for a in archs[:10]))
    worker.start()
    worker.join()
    assert results == [True] * 10
    for clone in (copy.deepcopy(space), pickle.loads(pickle.dumps(space))):
        assert weight_spec(clone.build_for_encoding(archs[0], C=2, N=1)) == weight_spec(space.build(archs[0], C=2, N=1))
