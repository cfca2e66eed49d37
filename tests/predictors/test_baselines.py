"""The baselines: deterministic for a seed, the trainable ones learn a synthetic target and not a shuffled one.

Targets are the number of conv edges of the NB201 cell plus seeded noise; networks are encoded at C=4, N=1.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from wsnas.predictors import EncoderConfig, WeightPredictor
from wsnas.predictors._baselines import ArchGNNBaseline, WeightStatsBaseline, ZeroCostBaseline
from wsnas.predictors._shuffled import ShuffledCandidateGraphs, ShuffledWeightPredictor
from wsnas.predictors._training import spearman
from wsnas.predictors._zc_gbm import ZeroCostGBMBaseline
from wsnas.predictors._zero_cost import ZERO_COST_PROXIES
from wsnas.search_spaces import get_space
from wsnas.training import sample_distinct

SPACE = get_space("nb201")
SIZE = {"C": 4, "N": 1}
GNN = {"hidden": 8, "layers": 1, "epochs": 30}




def conv_count(arch) -> int:
    return sum(d["op"].startswith("nor_conv") for _, _, d in arch.graph.edges(data=True))


@pytest.fixture(scope="module")
def data():
    archs = sample_distinct(SPACE, 90, 0)
    y = np.array([conv_count(a) for a in archs]) + np.random.default_rng(0).normal(0.0, 0.3, len(archs))
    return archs[:60], y[:60], archs[60:], y[60:]


@pytest.mark.parametrize("proxy", ["params", "synflow", "naswot"])
def test_zero_cost_is_deterministic_and_training_free(data, proxy) -> None:
    archs = data[0][:4]
    a = ZeroCostBaseline(SPACE, proxy, size=SIZE, batch_size=8, seed=3)
    b = ZeroCostBaseline(SPACE, proxy, size=SIZE, batch_size=8, seed=3)
    assert a.fit(archs, [1, 2, 3, 4]) is a
    sa, sb = a.predict(archs), b.predict(archs)
    assert sa.shape == (4,) and sa.dtype == np.float64
    assert np.array_equal(sa, sb)
    assert all(math.isfinite(v) or v == -math.inf for v in sa)


def test_zero_cost_knows_every_proxy_and_rejects_others() -> None:
    assert set(ZERO_COST_PROXIES) == {"synflow", "naswot", "snip", "grad_norm", "jacob_cov", "params", "flops"}
    with pytest.raises(ValueError, match="unknown zero-cost proxy 'bogus'"):
        ZeroCostBaseline(SPACE, "bogus")
    with pytest.raises(ValueError, match="batch_size must be >= 2"):
        ZeroCostBaseline(SPACE, "params", batch_size=1)


def test_zero_cost_batch_depends_on_seed_only() -> None:
    x0, _ = ZeroCostBaseline(SPACE, "params", batch_size=8, seed=0).batch()
    x0b, _ = ZeroCostBaseline(SPACE, "params", batch_size=8, seed=0).batch()
    x1, _ = ZeroCostBaseline(SPACE, "params", batch_size=8, seed=1).batch()
    assert x0.shape[0] == 8 and torch.equal(x0, x0b) and not torch.equal(x0, x1)


MAKERS = {
    "gnn": lambda s: ArchGNNBaseline(SPACE, seed=s, **GNN),
    "stats": lambda s: WeightStatsBaseline(SPACE, size=SIZE, seed=s),
    "zc_gbm": lambda s: ZeroCostGBMBaseline(SPACE, seed=s, zero_cost_options={"size": SIZE, "batch_size": 8}),
}


@pytest.mark.parametrize("make", list(MAKERS.values()), ids=list(MAKERS))
def test_trainable_baselines_learn_the_target_not_shuffled_labels(data, make) -> None:
    archs, y, test_archs, test_y = data
    pa = make(0).fit(archs, y).predict(test_archs)
    assert np.array_equal(pa, make(0).fit(archs, y).predict(test_archs)), "not deterministic for a seed"
    real = spearman(pa, test_y)
    fake = spearman(make(0).fit(archs, np.random.default_rng(1).permutation(y)).predict(test_archs), test_y)
    assert real > 0.5 and real > fake + 0.3, (real, fake)


def test_trainable_baselines_need_fitting_and_valid_options(data) -> None:
    with pytest.raises(RuntimeError, match="call fit"):
        ArchGNNBaseline(SPACE).predict(data[0][:2])
    with pytest.raises(RuntimeError, match="call fit"):
        WeightStatsBaseline(SPACE).predict(data[0][:2])
    with pytest.raises(ValueError, match="hidden must be an int >= 1"):
        ArchGNNBaseline(SPACE, hidden=0)
    with pytest.raises(ValueError, match="one target per architecture"):
        ArchGNNBaseline(SPACE, **GNN).fit(data[0][:5], [1.0, 2.0])


def test_weight_stats_features_are_fixed_length(data) -> None:
    b = WeightStatsBaseline(SPACE, size=SIZE)
    f = b.features(data[0][:5])
    assert f.shape[0] == 5 and np.isfinite(f).all()
    assert f.shape == b.features(data[2][:5]).shape


def test_shuffled_graphs_keep_structure_and_values_but_not_order(data) -> None:
    from wsnas.encoding import CandidateGraphs

    archs = data[0][:3]
    real = CandidateGraphs(SPACE, size=SIZE).graphs(archs, 0)
    shuf = ShuffledCandidateGraphs(SPACE, size=SIZE, shuffle_seed=0).graphs(archs, 0)
    again = ShuffledCandidateGraphs(SPACE, size=SIZE, shuffle_seed=0).graphs(archs, 0)
    assert torch.equal(real.edge_index, shuf.edge_index)
    assert torch.equal(shuf.edge_feat, again.edge_feat)
    assert not torch.equal(real.edge_feat, shuf.edge_feat)
    # a permutation within each tensor keeps the multiset of kernel values
    assert torch.allclose(real.edge_feat.sum(), shuf.edge_feat.sum(), rtol=1e-4)


def test_shuffled_weight_predictor_is_a_weight_predictor(data) -> None:
    archs, y = data[0][:12], data[1][:12]
    opts = {"encoder": EncoderConfig(hidden=8, layers=1, kernel_size=3), "ensemble": 1, "size": SIZE, "device": "cpu"}
    fit = {"epochs": 2, "batch_size": 8, "progress": False}
    p = ShuffledWeightPredictor(SPACE, **opts).fit(archs, y, **fit)
    q = ShuffledWeightPredictor(SPACE, **opts).fit(archs, y, **fit)
    assert isinstance(p, WeightPredictor) and isinstance(p.candidates, ShuffledCandidateGraphs)
    assert np.array_equal(p.predict(archs).score, q.predict(archs).score)
    r = WeightPredictor(SPACE, **opts).fit(archs, y, **fit)
    assert not np.array_equal(p.predict(archs).score, r.predict(archs).score)
