"""The trainable predictor: it learns a ranking, is deterministic for a seed, fine-tunes, reads zoos.

Targets are synthetic and computed from the architecture (number of conv ops in the NB201 cell plus
seeded noise), so a working predictor must rank them well. Encoders are tiny and networks are encoded at
C=4 to keep the whole file within a few seconds.
"""

from __future__ import annotations

import copy
import json

import numpy as np
import pytest
import torch

from wsnas import InvalidArchitecture, ZooRecord, generate, graph_template, weight_spec
from wsnas.encoding import CandidateGraphs, build_batch
from wsnas.predictors import EncoderConfig, Prediction, WeightPredictor, pairwise_ranking_loss
from wsnas.predictors._prior import blend, standardised_sizes
from wsnas.predictors._training import spearman
from wsnas.search_spaces import get_space
from wsnas.training import Zoo, sample_distinct

SPACE = get_space("nb201")
SIZE = {"C": 4, "N": 1}
TINY = EncoderConfig(hidden=8, layers=1, kernel_size=3)
# the encoder ensemble alone: the size prior (tests/predictors/test_prior.py) would follow the conv count, which
# goes with the parameter count, even from shuffled labels
FIT = {"epochs": 20, "batch_size": 16, "lr": 3e-3, "patience": 5, "progress": False, "size_prior": False}




def conv_count(arch) -> int:
    return sum(d["op"].startswith("nor_conv") for _, _, d in arch.graph.edges(data=True))


def synthetic(n: int, seed: int) -> tuple[list, np.ndarray]:
    archs = sample_distinct(SPACE, n, seed)
    noise = np.random.default_rng(seed).normal(0.0, 0.3, n)
    return archs, np.array([conv_count(a) for a in archs]) + noise


def predictor(seed: int = 0, ensemble: int = 2) -> WeightPredictor:
    return WeightPredictor(SPACE, encoder=TINY, ensemble=ensemble, seed=seed, size=SIZE, device="cpu")


@pytest.fixture(scope="module")
def data():
    return synthetic(60, 0)


@pytest.fixture(scope="module")
def fitted(data):
    return predictor().fit(*data, **FIT)


@pytest.fixture(scope="module")
def small():
    """A quick fit (few archs, few epochs) for the properties that do not need a good predictor."""
    archs, y = synthetic(16, 3)
    return predictor(seed=5).fit(archs, y, epochs=3, batch_size=8, progress=False), archs, y


def test_fit_ranks_synthetic_targets_and_beats_shuffled_labels(fitted, data) -> None:
    assert fitted.history[-1]["val_spearman"] > 0.5
    test_archs, test_y = synthetic(30, 11)
    real = spearman(fitted.predict(test_archs).score, test_y)
    archs, y = data
    shuffled = predictor().fit(archs, np.random.default_rng(1).permutation(y), **FIT)
    fake = spearman(shuffled.predict(test_archs).score, test_y)
    assert real > 0.5 and real > fake + 0.2, (real, fake)


def test_fit_is_deterministic_for_a_seed(small) -> None:
    pred, archs, y = small
    again = predictor(seed=5).fit(archs, y, epochs=3, batch_size=8, progress=False)
    other = predictor(seed=6).fit(archs, y, epochs=3, batch_size=8, progress=False)
    a, b, c = (p.predict(archs[:6]) for p in (pred, again, other))
    assert np.array_equal(a.score, b.score) and np.array_equal(a.uncertainty, b.uncertainty)
    assert not np.allclose(a.score, c.score)
    assert pred.history == again.history


def test_predict_accepts_strings_and_archs(small) -> None:
    pred, archs, _ = small
    out = pred.predict(archs[:5])
    assert isinstance(out, Prediction) and len(out) == 5
    assert out.score.dtype == np.float64 and out.score.shape == (5,) and out.uncertainty.shape == (5,)
    assert (out.uncertainty >= 0).all() and (out.uncertainty > 0).any()
    strings = [SPACE.to_string(a) for a in archs[:5]]
    assert np.array_equal(pred.predict(strings).score, out.score)
    batched = pred.predict(strings, batch_size=2)  # other batch boundaries give the same scores
    assert np.allclose(batched.score, out.score, atol=1e-6, rtol=0)


def test_predict_needs_valid_input_and_a_fitted_predictor(small) -> None:
    pred, archs, y = small
    with pytest.raises(InvalidArchitecture):
        pred.predict(["|nope~0|"])
    with pytest.raises(RuntimeError, match="fitted"):
        predictor().predict(archs[:2])
    with pytest.raises(ValueError, match="one target per architecture"):
        predictor().fit(archs, y[:-1])
    with pytest.raises(ValueError, match="finite"):
        predictor().fit(archs, np.where(np.arange(len(y)) == 2, np.nan, y))
    with pytest.raises(ValueError, match="ensemble must be an int >= 1"):
        WeightPredictor(SPACE, ensemble=0)


def test_fine_tune_changes_predictions_lowers_loss_and_records_history(small) -> None:
    pred = copy.deepcopy(small[0])
    archs, y = synthetic(24, 21)
    y = -y  # new labels that disagree with what it learnt
    before_scores = pred.predict(archs).score
    before = pred.loss(archs, y)
    pred.fine_tune(archs, y, epochs=5, lr=3e-3, batch_size=8)
    assert pred.loss(archs, y) < before
    assert not np.allclose(pred.predict(archs).score, before_scores)
    event = pred.history[-1]
    assert event["event"] == "fine_tune" and event["n"] == 24 and event["train_loss"] < event["train_loss_before"]
    assert [e["event"] for e in pred.history] == ["fit", "fine_tune"]
    assert [e["event"] for e in small[0].history] == ["fit"]


def test_card_is_json_ready_and_describes_the_predictor(small) -> None:
    card = small[0].card
    json.dumps(card, allow_nan=False)
    assert card["space"] == "nb201" and card["ensemble"] == 2 and card["seed"] == 5
    assert card["encoding"] == {
        "size": SIZE,
        "init": "kaiming_normal",
        "input_shape": [1, 3, 32, 32],
        "generator_seed": 5,
    }
    assert card["encoder"]["hidden"] == 8 and card["encoder"]["layers"] == 1
    assert card["training_data"]["n"] == 16 and card["wsnas_version"]
    assert card["history"][0]["event"] == "fit" and "val_spearman" in card["history"][0]
    assert card["evaluation"] == {}


def test_pairwise_ranking_loss_prefers_the_right_order() -> None:
    t = torch.tensor([0.0, 1.0, 2.0])
    right = pairwise_ranking_loss(torch.tensor([0.0, 5.0, 10.0]), t)
    wrong = pairwise_ranking_loss(torch.tensor([10.0, 5.0, 0.0]), t)
    assert right < 0.01 < 5 < wrong
    assert float(pairwise_ranking_loss(torch.tensor([1.0, 2.0]), torch.tensor([3.0, 3.0]))) == 0.0


def _record(arch, acc: float, diverged: bool = False, seed: int = 0) -> ZooRecord:
    return ZooRecord(
        space="nb201", arch=SPACE.to_string(arch), arch_hash=arch.hash, seed=seed, task="synthetic",
        task_fingerprint="f" * 16, val_acc=acc, val_loss=1.0, val_acc_curve=[acc], val_loss_curve=[1.0],
        train_loss_curve=[1.0], train_seconds=1.0, params=1, flops=1, diverged=diverged, init="kaiming_normal",
        wsnas_version="0.1.0", timestamp="2025-01-01T00:00:00+00:00",
    )  # fmt: skip


def test_from_zoo_skips_diverged_records_and_describes_the_zoos(tmp_path) -> None:
    archs, y = synthetic(14, 4)
    zoo = Zoo(tmp_path / "zoo.jsonl")
    for a, v in zip(archs[:12], y):
        zoo.append(_record(a, float(v) / 10))
    zoo.append(_record(archs[0], float(y[0]) / 10, seed=1))  # a second seed of one arch: averaged
    zoo.append(_record(archs[12], 0.0, diverged=True))
    zoo.append(_record(archs[13], 0.5, diverged=True))
    pred = WeightPredictor.from_zoo(
        tmp_path / "zoo.jsonl", encoder=TINY, ensemble=1, size=SIZE, epochs=2, progress=False
    )
    data = pred.card["training_data"]
    assert data["n"] == 12 and data["records"] == 13 and data["target"] == "val_acc"
    assert data["zoos"] == [
        {"path": str(tmp_path / "zoo.jsonl"), "records": 15, "used": 13,
         "tasks": [{"task": "synthetic", "fingerprint": "f" * 16}]}
    ]  # fmt: skip
    assert pred.card["target"]["name"] == "val_acc"
    with pytest.raises(ValueError, match="target must be one of"):
        WeightPredictor.from_zoo(tmp_path / "zoo.jsonl", target="nope")
    with pytest.raises(ValueError, match="does not exist"):
        WeightPredictor.from_zoo(tmp_path / "missing.jsonl")


def test_candidate_graphs_match_the_built_networks_and_cache_repeats() -> None:
    archs = sample_distinct(SPACE, 3, 7)
    cands = CandidateGraphs(SPACE, size=SIZE, cache_size=2)
    g = cands.graphs([archs[0], SPACE.to_string(archs[1]), archs[0]], [3, 4, 5])
    assert g.num_graphs == 3 and cands.cached == 2
    nets = [SPACE.build(a, **SIZE) for a in (archs[0], archs[1], archs[0])]
    specs = [weight_spec(n) for n in nets]
    ref = build_batch([graph_template(n, input_shape=(1, 3, 32, 32)) for n in nets], generate(specs, [3, 4, 5]).flat)
    for name in ("node_feat", "edge_index", "edge_feat", "edge_type", "ptr"):
        assert torch.equal(getattr(g, name), getattr(ref, name)), name
    cands.graphs([archs[2]], 0)  # evicts the least recently used entry
    assert cands.cached == 2
    with pytest.raises(ValueError, match="one seed per architecture"):
        cands.graphs(archs, [1, 2])
    with pytest.raises(ValueError, match="at least one"):
        cands.graphs([], 0)


def space_prior_of(pred, *, weight: float) -> dict:
    """A prior for ``pred``'s own space at ``weight`` (statistics from a seeded sample)."""
    from wsnas.predictors._prior import UNSEEN_WEIGHT, space_prior

    entry = space_prior(pred, pred.candidates, weight, seen=True, chosen_on="validation")
    return {"feature": "log_params", "unseen_weight": UNSEEN_WEIGHT, "spaces": {pred.space.name: entry}}


def test_predict_in_worker_processes_gives_the_same_scores(small, data) -> None:
    """workers=2 scores chunks in two fresh processes that load a copy of the predictor: same numbers."""
    pred, archs = small[0], data[0][:50]
    one = pred.predict(archs, batch_size=16)
    two = pred.predict(archs, batch_size=16, workers=2)
    np.testing.assert_array_equal(one.score, two.score)
    np.testing.assert_array_equal(one.uncertainty, two.uncertainty)
    # with a size prior the counts are read where each network is built, in the workers too: same blend
    sized = copy.deepcopy(pred)
    sized.prior = space_prior_of(sized, weight=0.7)
    entry = sized.prior["spaces"][sized.space.name]
    expected = blend(sized._member_scores(archs, 16), standardised_sizes(sized.candidates, archs, entry), entry)
    expected = sized.target["mean"] + sized.target["std"] * expected.mean(0)
    for w in (1, 2):
        np.testing.assert_allclose(sized.predict(archs, batch_size=16, workers=w).score, expected, rtol=1e-12)
    with pytest.raises(ValueError, match="workers must be an int >= 1"):
        pred.predict(archs, workers=0)
