"""Zero-cost proxies + gradient boosting: one network per architecture for every proxy, the same values as the
single-proxy baseline, and a regressor that reads both the proxies and the architecture's tokens."""

from __future__ import annotations

import numpy as np
import pytest

from wsnas.predictors import ZERO_COST_PROXIES, ZeroCostBaseline, ZeroCostGBMBaseline, ZeroCostScores, arch_tokens
from wsnas.predictors._training import spearman
from wsnas.search_spaces import get_space
from wsnas.training import sample_distinct

SPACE = get_space("nb201")
SIZE = {"C": 4, "N": 1}


def test_scores_equal_the_single_proxy_baseline_and_are_memoised() -> None:
    archs = sample_distinct(SPACE, 4, 3)
    scores = ZeroCostScores(SPACE, size=SIZE, batch_size=8, seed=1)
    m = scores.matrix(archs)
    assert m.shape == (4, len(ZERO_COST_PROXIES))
    for j, name in enumerate(ZERO_COST_PROXIES):
        single = ZeroCostBaseline(SPACE, name, size=SIZE, batch_size=8, seed=1).predict(archs)
        np.testing.assert_array_equal(m[:, j], single, err_msg=name)
    again = scores.matrix([SPACE.to_string(a) for a in reversed(archs)])
    np.testing.assert_array_equal(again, m[::-1])
    assert scores.matrix([]).shape == (0, len(ZERO_COST_PROXIES))


def test_tokens_are_the_one_hot_of_each_nb201_edge() -> None:
    arch = SPACE.from_string("|nor_conv_3x3~0|+|skip_connect~0|none~1|+|avg_pool_3x3~0|nor_conv_1x1~1|none~2|")
    edge_tokens = {t for t in arch_tokens(arch) if "->" in t}
    assert len(edge_tokens) == 6 and any(t.endswith(":nor_conv_1x1") for t in edge_tokens)
    other = SPACE.neighbours(arch)[0]
    assert len(arch_tokens(arch) ^ arch_tokens(other)) == 2  # one edge changed: one token out, one in


def test_the_regressor_uses_the_tokens() -> None:
    # a target that only the architecture encoding explains: the op on one particular edge
    archs = sample_distinct(SPACE, 80, 5)
    edge = lambda a: next(d["op"] for u, v, d in sorted(a.graph.edges(data=True), key=str) if d.get("op"))  # noqa: E731
    ops = sorted({edge(a) for a in archs})
    y = np.array([ops.index(edge(a)) for a in archs], dtype=float)
    opts = {"size": SIZE, "batch_size": 8}
    with_tokens = ZeroCostGBMBaseline(SPACE, zero_cost_options=opts).fit(archs[:60], y[:60]).predict(archs[60:])
    assert spearman(with_tokens, y[60:]) > 0.95
    assert len(ZeroCostGBMBaseline(SPACE, zero_cost_options=opts).features(archs[:3])[0]) == len(ZERO_COST_PROXIES)
    with pytest.raises(RuntimeError, match="call fit"):
        ZeroCostGBMBaseline(SPACE).predict(archs[:2])
