"""Transfer: a predictor trained on NB201 scores NB101 and MacroCNN networks, warns about layer types it never
saw, fine-tunes on a few labels of the new space, keeps its history (``wsnas predictor finetune``:
tests/cli/test_predictor.py).

The NB201 predictor is tiny (the ``saved_predictor`` fixture: hidden 8, one layer, two members, a few epochs
on synthetic targets): these tests check the plumbing, not the quality (``benchmarks/transfer.py`` measures
that on real zoos).
"""

from __future__ import annotations

import copy
import warnings

import networkx as nx
import numpy as np
import pytest
import torch
import torch.nn as nn

from wsnas.predictors import (
    TRANSFER_SIZES,
    EncoderConfig,
    UnseenLayerWarning,
    WeightPredictor,
    layer_types,
    load,
    seen_layer_types,
)
from wsnas.search_spaces import GraphSpace, get_space
from wsnas.training import sample_distinct

NB201, NB101, MACRO = get_space("nb201"), get_space("nb101"), get_space("macro")
TINY = EncoderConfig(hidden=8, layers=1)
CHECK = 8  # architectures of the new space checked for layer types (the default is 32)


@pytest.fixture(scope="module")
def on_nb101(saved_predictor):
    with pytest.warns(UnseenLayerWarning):
        return load(saved_predictor[0]).transfer("nb101", check=CHECK)


def test_the_card_records_the_layer_types_seen_in_training(saved_predictor) -> None:
    path, pred = saved_predictor
    types = pred.layer_types
    assert {"Conv2d 3x3", "Conv2d 1x1", "BatchNorm2d", "AvgPool2d 3x3", "Linear", "edge:conv", "act:relu"} <= set(types)
    assert "MaxPool2d 3x3" not in types and "edge:max_pool" not in types and types == sorted(types)
    assert load(path).card["layer_types"] == types
    assert [(e["event"], e["space"]) for e in pred.history] == [("fit", "nb201")]


@pytest.mark.parametrize("space", [NB101, MACRO], ids=["nb101", "macro"])
def test_a_loaded_nb201_predictor_scores_another_space_end_to_end(saved_predictor, space, tmp_path) -> None:
    with pytest.warns(UnseenLayerWarning, match=f"search space '{space.name}'"):
        pred = load(saved_predictor[0]).transfer(space, check=CHECK)
    assert pred.space is space and pred.candidates.size == TRANSFER_SIZES[space.name] and pred.fitted
    archs = sample_distinct(space, 5, 1)
    out = pred.predict(archs)
    assert out.score.shape == (5,) and np.isfinite(out.score).all() and np.ptp(out.score) > 0
    for a, b in zip(pred.members, saved_predictor[1].members):  # the same trained weights
        assert all((a.state_dict()[k] == v).all() for k, v in b.state_dict().items())
    event = pred.history[-1]
    assert event["event"] == "transfer" and (event["from_space"], event["space"]) == ("nb201", space.name)
    assert event["unseen_layer_types"] and pred.layer_types == saved_predictor[1].layer_types
    pred.save(tmp_path / "p.safetensors")  # a registered target space loads by name
    again = load(tmp_path / "p.safetensors")
    assert again.space.name == space.name and again.target == pred.target
    assert np.array_equal(again.predict(archs).score, out.score)


def test_unseen_layer_types_are_named_in_a_warning(saved_predictor) -> None:
    with pytest.warns(UnseenLayerWarning) as caught:
        load(saved_predictor[0]).transfer(MACRO, check=CHECK)
    text = str(caught[0].message)
    assert "Conv2d 5x5 depthwise" in text or "Conv2d 7x7 depthwise" in text
    g = nx.DiGraph()
    g.add_node("in", op="input")
    g.add_node("a", choices=["gelu_conv5x5", "conv3x3"])
    g.add_node("out", op="output")
    g.add_edges_from([("in", "a"), ("a", "out")])
    ops = {"gelu_conv5x5": lambda c: nn.Sequential(nn.Conv2d(c, c, 5, padding=2), nn.GELU())}
    user = GraphSpace(g, name="user_gelu", ops=ops)
    with pytest.warns(UnseenLayerWarning) as caught:
        pred = saved_predictor[1].transfer(user, size={"C": 2})
    text = str(caught[0].message)
    assert "search space 'user_gelu'" in text and "GELU" in text and "Conv2d 5x5" in text and "act:gelu" in text
    assert "Conv2d 3x3," not in text and "ReLU" not in text.replace("GELU", "")
    assert set(pred.history[-1]["unseen_layer_types"]) >= {"GELU", "Conv2d 5x5", "act:gelu"}


def test_a_space_with_only_seen_layer_types_does_not_warn(saved_predictor) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        pred = saved_predictor[1].transfer(NB201, size={"C": 4, "N": 1}, check=CHECK)
    assert pred.history[-1]["unseen_layer_types"] == [] and pred.candidates.size == {"C": 4, "N": 1}


def test_a_file_without_a_layer_type_record_still_warns(saved_predictor) -> None:
    old = copy.deepcopy(saved_predictor[1])
    old.layer_types = None  # as a file written before the record existed
    assert set(seen_layer_types(old)) >= {"Conv2d 3x3", "edge:avg_pool"}
    with pytest.warns(UnseenLayerWarning, match="edge:max_pool"):
        old.transfer(NB101, check=CHECK)


def test_fine_tuning_a_transferred_predictor_changes_predictions_and_lowers_the_loss(on_nb101) -> None:
    pred = copy.deepcopy(on_nb101)
    archs = sample_distinct(NB101, 12, 3)
    y = 0.2 + 0.01 * np.array([len(a.graph) for a in archs], dtype=float)  # another space, other units
    before_scores = pred.predict(archs).score
    pred.fine_tune(archs, y, epochs=8, lr=3e-3, batch_size=6)
    event = pred.history[-1]
    assert event["event"] == "fine_tune" and event["space"] == "nb101" and event["restandardised"]
    assert event["train_loss"] < event["train_loss_before"]
    assert pred.loss(archs, y) == pytest.approx(event["train_loss"], rel=1e-5)
    assert not np.allclose(pred.predict(archs).score, before_scores)
    assert pred.target["space"] == "nb101" and pred.target["mean"] == pytest.approx(float(y.mean()))
    assert [e["event"] for e in pred.history] == ["fit", "transfer", "fine_tune"]
    assert set(pred.layer_types) >= {"MaxPool2d 3x3", "edge:max_pool"}  # now seen
    pred.fine_tune(archs, y, epochs=1)  # the second fine-tuning keeps the new space's statistics
    assert not pred.history[-1]["restandardised"]
    assert on_nb101.history[-1]["event"] == "transfer"  # the original is untouched


def test_adapt_gives_unseen_types_the_weights_of_their_nearest_seen_type(saved_predictor) -> None:
    from wsnas.encoding import EDGE_TYPES

    with pytest.warns(UnseenLayerWarning):
        pred = saved_predictor[1].transfer(NB101, adapt=True, check=CHECK)
    assert pred.history[-1]["adapted"] == {"edge:max_pool": "edge:avg_pool"}
    mp, ap = EDGE_TYPES.index("max_pool"), EDGE_TYPES.index("avg_pool")
    for m, src in zip(pred.members, saved_predictor[1].members):
        assert torch.equal(m.edge_type.weight[mp], src.edge_type.weight[ap])
        assert not torch.equal(src.edge_type.weight[mp], src.edge_type.weight[ap])  # the source is untouched
    with pytest.warns(UnseenLayerWarning):
        pred = saved_predictor[1].transfer(MACRO, adapt=True, check=CHECK)
    assert pred.history[-1]["adapted"] == {"kernels": "read through their centre 3x3"}
    k = TINY.kernel_size
    cols = pred.members[0].edge_in.weight[:, : k * k].reshape(-1, k, k)
    assert (cols[:, :2] == 0).all() and (cols[:, :, 5:] == 0).all() and (cols[:, 2:5, 2:5] != 0).any()


def test_transfer_rejects_bad_input(saved_predictor) -> None:
    with pytest.raises(ValueError, match="cannot build networks at size"):
        saved_predictor[1].transfer(NB101, size={"C": 0}, check=CHECK)
    with pytest.raises(ValueError, match="cannot build networks at size"):
        saved_predictor[1].transfer(MACRO, size={"depth": 3}, check=CHECK)
    with pytest.raises(TypeError, match="SearchSpace"):
        saved_predictor[1].transfer(42)
    with pytest.raises(RuntimeError, match="fitted"):
        WeightPredictor(NB201, encoder=TINY, ensemble=1).transfer(NB101)
    with pytest.raises(ValueError, match="check must be"):
        saved_predictor[1].transfer(NB101, check=0)
    with pytest.raises(ValueError, match="cannot build"):
        layer_types(WeightPredictor(NB101, encoder=TINY, ensemble=1, size={"C": 0}).candidates, n=4)
