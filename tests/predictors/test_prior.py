"""The size prior: a fit chooses each space's weight on its validation set, predict blends the ensemble with
the parameter count by it, files keep it, transfer carries it, and a predictor without one is unchanged."""

from __future__ import annotations

import hashlib
import json
import warnings

import numpy as np
import pytest
from safetensors import safe_open
from safetensors.torch import save_file
from scipy.stats import rankdata

from wsnas.predictors import EncoderConfig, WeightPredictor, load, spearman
from wsnas.predictors._prior import (
    MAX_WEIGHT,
    MIN_CHOICE,
    PARAMS_ONLY,
    UNSEEN_WEIGHT,
    arch_features,
    blend,
    checked_prior,
    choose_coef,
    choose_weight,
    correlations,
    layer_depth,
    log_params,
    standardised_sizes,
)
from wsnas.search_spaces import get_space
from wsnas.training import sample_distinct

SPACE = get_space("nb201")
SMALL = EncoderConfig(hidden=8, layers=1, kernel_size=3)


def _fit(archs, y, **options) -> WeightPredictor:
    pred = WeightPredictor(SPACE, encoder=SMALL, ensemble=2, seed=3, size={"C": 2, "N": 1})
    return pred.fit(archs, y, epochs=2, batch_size=8, progress=False, **options)


@pytest.fixture(scope="module")
def data() -> tuple[list, np.ndarray]:
    archs = sample_distinct(SPACE, 60, 4)
    sizes = log_params(WeightPredictor(SPACE, size={"C": 2, "N": 1}).candidates, archs)
    return archs, sizes


def sd_ok(entry) -> bool:
    return entry["score_std"] > 0 and entry["chosen_on"] in ("validation", "default", "fine_tune")


def test_choose_weight_follows_the_better_signal() -> None:
    assert choose_weight(0.0, 0.9, 0.0) == MAX_WEIGHT  # the scores say nothing: the size alone
    assert choose_weight(0.9, 0.0, 0.0) == 0.0  # the size says nothing
    assert choose_weight(0.5, 0.5, 0.0) == 1.0  # two independent signals of one strength: an equal blend
    assert choose_weight(0.8, 0.6, 0.75) == 0.0  # the size is only an echo of the scores: it adds nothing
    assert choose_weight(0.4, 0.7, 0.9) == MAX_WEIGHT  # the scores are only an echo of the size
    assert choose_weight(float("nan"), 0.5, 0.2) == 0.0  # too few labels to estimate


def test_the_chosen_weight_is_the_best_blend_on_data_it_describes() -> None:
    rng = np.random.default_rng(0)
    y, a, b = rng.normal(size=(3, 4000))
    scores, sizes = y + 1.2 * a, 0.7 * y + 0.6 * a + b  # correlated with the target and with each other
    w = choose_weight(*correlations(scores / scores.std(), y, sizes / sizes.std()))
    assert 0 < w < MAX_WEIGHT
    blended = spearman(scores / scores.std() + w * sizes / sizes.std(), y)
    for other in (0.0, 0.5 * w, 1.5 * w, 2.0 * w, MAX_WEIGHT):
        assert blended >= spearman(scores / scores.std() + other * sizes / sizes.std(), y) - 1e-3
    # the labelled sizes and the space's scores, when given, are the ones the correlations come from
    r = correlations(scores[:50], y[:50], sizes[:50], labelled_sizes=sizes, labelled_targets=y,
                     space_scores=scores, space_sizes=sizes)  # fmt: skip
    assert r == (spearman(scores[:50], y[:50]), spearman(sizes, y), spearman(scores, sizes))
    assert np.isnan(correlations(scores[:2], y[:2], sizes[:2])).all()


def test_a_size_driven_target_gets_a_weight_and_predict_blends_by_it(data) -> None:
    archs, sizes = data
    pred = _fit(archs, sizes)  # the target is the log parameter count itself: two epochs cannot learn it
    entry = pred.prior["spaces"]["nb201"]
    assert entry["weight"] > 0 and entry["seen"] and entry["size"] == {"C": 2, "N": 1} and sd_ok(entry)
    assert entry["labels"] == len(archs)  # chosen from every label of the space
    assert pred.history[-1]["prior_weights"] == {"nb201": entry["weight"]}
    out = pred.predict(archs)
    members = pred._member_scores(archs, 64)  # [K, n] standardised
    w = entry["weight"]
    sd = entry["score_std"]  # the ensemble's spread over a sample of the space: both terms on one scale
    expected = (members.mean(0) + w * sd * (sizes - entry["mean"]) / entry["std"]) / (1 + w)
    np.testing.assert_allclose(out.score, pred.target["mean"] + pred.target["std"] * expected, rtol=1e-9)
    np.testing.assert_allclose(out.uncertainty, pred.target["std"] * members.std(0) / (1 + w), rtol=1e-9)
    assert spearman(out.score, sizes) > spearman(members.mean(0), sizes)

    plain = _fit(archs, sizes, size_prior=False)
    assert plain.prior is None and plain.card["prior"] is None
    np.testing.assert_allclose(plain.predict(archs).score, plain.target["mean"] + plain.target["std"]
                               * plain._member_scores(archs, 64).mean(0), rtol=1e-9)  # fmt: skip


def test_the_prior_survives_a_file_and_a_predictor_without_one_is_unchanged(data, tmp_path) -> None:
    archs, sizes = data
    pred = _fit(archs, -sizes)  # smaller is better here: the labels turn the count around
    entry = pred.prior["spaces"]["nb201"]
    assert entry["coef"][0] < 0 and entry["weight"] > 0
    assert spearman(pred.predict(archs).score, -sizes) > spearman(pred._member_scores(archs, 64).mean(0), -sizes)
    np.testing.assert_array_equal(blend(np.ones(3), np.arange(3.0), {**entry, "weight": 0.0}), np.ones(3))
    sized = _fit(archs, sizes)
    back = load(sized.save(tmp_path / "p.safetensors"))
    assert back.prior == sized.prior
    np.testing.assert_array_equal(back.predict(archs[:9]).score, sized.predict(archs[:9]).score)
    # a file written before the prior existed has no "prior" in its card: it loads without one, scores unchanged
    bare = _fit(archs, sizes, size_prior=False)
    path = bare.save(tmp_path / "bare.safetensors")
    with safe_open(str(path), "pt") as f:
        metadata, tensors = f.metadata(), {k: f.get_tensor(k) for k in f.keys()}
    card = json.loads(metadata["card"])
    card.pop("prior", None)
    text = json.dumps(card, sort_keys=True)
    digest = hashlib.sha256(text.encode()).hexdigest()
    save_file(tensors, str(path), metadata={**metadata, "card": text, "card_sha256": digest})
    old = load(path)
    assert old.prior is None
    np.testing.assert_array_equal(old.predict(archs[:9]).score, bare.predict(archs[:9]).score)


def test_transfer_gives_an_unseen_space_the_unseen_weight(data) -> None:
    archs, sizes = data
    pred = _fit(archs, sizes)
    own = pred.prior["spaces"]["nb201"]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # layer types NB201 never had
        other = pred.transfer("nb101")
    entry = other.prior["spaces"]["nb101"]
    assert entry["weight"] == UNSEEN_WEIGHT and not entry["seen"] and entry["chosen_on"] == "default"
    assert entry["size"] == dict(other.candidates.size) and entry["std"] > 0
    assert other.prior["spaces"]["nb201"] == own  # the trained space's entry is kept
    nb101 = sample_distinct(get_space("nb101"), 20, 0)
    scores = other.predict(nb101).score
    members = other._member_scores(nb101, 64).mean(0)
    p = log_params(other.candidates, nb101)
    # an equal blend of the two ranks' standardised values: it follows both
    assert spearman(scores, p) > spearman(members, p) and np.isfinite(scores).all()
    wider = pred.transfer(SPACE, size={"C": 4, "N": 1})  # its own space at another width: new statistics
    moved = wider.prior["spaces"]["nb201"]
    assert moved["weight"] == own["weight"] and moved["seen"] and moved["mean"] != own["mean"]
    assert rankdata(log_params(wider.candidates, archs)).tolist() == rankdata(sizes).tolist()


def test_fine_tuning_chooses_the_weight_from_out_of_sample_scores_when_it_has_more_labels(data) -> None:
    archs, sizes = data
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        other = _fit(archs, sizes).transfer("nb101")
        few = other.transfer("nb101")  # fewer labels than MIN_CHOICE: the default weight stays
    cells = sample_distinct(get_space("nb101"), 54, 5)
    nb101, more = cells[:24], cells[24:]
    p = log_params(other.candidates, nb101)
    few.fine_tune(nb101[: MIN_CHOICE - 1], p[: MIN_CHOICE - 1], epochs=1)
    assert few.prior["spaces"]["nb101"]["weight"] == UNSEEN_WEIGHT
    assert few.prior["spaces"]["nb101"]["chosen_on"] == "default" and few.prior["spaces"]["nb101"]["labels"] == 0
    before = other._member_scores(nb101, 64).mean(0)
    entry = other.prior["spaces"]["nb101"]
    expected = choose_weight(*correlations(before, p, (p - entry["mean"]) / entry["std"]))
    other.fine_tune(nb101, p, epochs=1)  # the target is the size itself: the choice must be the largest weight
    after = other.prior["spaces"]["nb101"]
    assert after["weight"] == expected == MAX_WEIGHT and after["chosen_on"] == "fine_tune" and after["labels"] == 24
    assert after["mean"] == entry["mean"] and after["score_std"] != entry["score_std"]  # the ensemble moved
    other.fine_tune(nb101[:12], -p[:12], epochs=1)  # fewer labels than the weight was chosen from: it stays
    assert other.prior["spaces"]["nb101"]["weight"] == MAX_WEIGHT and other.prior["spaces"]["nb101"]["labels"] == 24
    q = log_params(other.candidates, more)
    other.fine_tune(more, -q, epochs=1)  # more labels (30): chosen again, and smaller is better now
    turned = other.prior["spaces"]["nb101"]
    assert turned["labels"] == 30 and turned["coef"][0] < 0 and turned["weight"] > 0
    assert spearman(other.predict(more).score, -q) > spearman(other._member_scores(more, 64).mean(0), -q)


@pytest.mark.parametrize(
    ("cell", "depth"),
    [
        ("|skip_connect~0|+|none~0|skip_connect~1|+|none~0|none~1|skip_connect~2|", 6),  # stem, 2 x 2, classifier
        ("|avg_pool_3x3~0|+|none~0|avg_pool_3x3~1|+|none~0|none~1|avg_pool_3x3~2|", 6),  # pooling has no weights
        ("|nor_conv_3x3~0|+|none~0|skip_connect~1|+|none~0|none~1|skip_connect~2|", 9),  # one conv in each of 3 cells
        ("|nor_conv_3x3~0|+|none~0|nor_conv_1x1~1|+|none~0|none~1|nor_conv_3x3~2|", 15),  # a chain of three
        ("|nor_conv_3x3~0|+|skip_connect~0|nor_conv_1x1~1|+|skip_connect~0|none~1|nor_conv_3x3~2|", 15),  # longest
    ],
)
def test_layer_depth_counts_weight_layers_on_the_longest_path(cell, depth) -> None:
    candidates = WeightPredictor(SPACE, size={"C": 2, "N": 1}).candidates
    arch = SPACE.from_string(cell)
    assert layer_depth(candidates.entry(arch)[1]) == depth
    assert arch_features(candidates, [arch]).tolist() == [[log_params(candidates, [arch])[0], depth]]


def test_choose_coef_keeps_the_count_unless_the_depth_ranks_held_out_labels_better() -> None:
    rng = np.random.default_rng(1)
    x = rng.normal(size=(200, 2))
    c = choose_coef(x, x[:, 0] - x[:, 1])  # deeper is worse at one size: both count, the depth negatively
    assert c[0] > 0 > c[1] and abs(c[0] + c[1]) < 0.1
    assert choose_coef(x, x[:, 0]) == PARAMS_ONLY  # the count alone ranks perfectly: nothing to add
    assert choose_coef(x, -x[:, 0])[0] < 0  # smaller is better: the labels turn the count around
    assert choose_coef(x[:9], x[:9, 0] - x[:9, 1]) == PARAMS_ONLY  # fewer than MIN_CHOICE labels
    flat = np.column_stack([x[:, 0], np.full(200, 4.0)])
    assert choose_coef(flat, x[:, 0] - x[:, 1]) == PARAMS_ONLY  # one depth for all: nothing to combine
    assert choose_coef(x, x[:, 0] - x[:, 1], seed=5) == c or choose_coef(x, x[:, 0] - x[:, 1], seed=5)[1] < 0


def test_a_depth_driven_target_combines_the_features_and_every_path_keeps_the_combination(data, tmp_path) -> None:
    archs, _ = data
    pred = WeightPredictor(SPACE, encoder=SMALL, ensemble=2, seed=3, size={"C": 2, "N": 1})
    features = arch_features(pred.candidates, archs)
    y = features[:, 0] / features[:, 0].std() - features[:, 1] / features[:, 1].std()  # shallow and big is best
    pred.fit(archs, y, epochs=2, batch_size=8, progress=False)
    entry = pred.prior["spaces"]["nb201"]
    a, b = entry["coef"]
    assert a > 0 > b and entry["weight"] > 0
    x = features @ np.asarray([a, b])
    np.testing.assert_allclose(standardised_sizes(pred.candidates, archs, entry), (x - entry["mean"]) / entry["std"])
    expected = blend(pred._member_scores(archs, 64), (x - entry["mean"]) / entry["std"], entry)
    np.testing.assert_allclose(pred.predict(archs).score, pred.target["mean"] + pred.target["std"] * expected.mean(0))
    assert spearman(pred.predict(archs).score, y) > spearman(pred._member_scores(archs, 64).mean(0), y)
    back = load(pred.save(tmp_path / "depth.safetensors"))
    assert back.prior == pred.prior
    np.testing.assert_array_equal(back.predict(archs[:9]).score, pred.predict(archs[:9]).score)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        other = pred.transfer("nb101")
    assert "coef" not in other.prior["spaces"]["nb101"]  # a space never trained on: the count alone
    wider = pred.transfer(SPACE, size={"C": 4, "N": 1})
    assert wider.prior["spaces"]["nb201"]["coef"] == [a, b]  # its own space at another width keeps it
    more = sample_distinct(SPACE, len(archs) + 20, 9)
    pred.fine_tune(more, log_params(pred.candidates, more), epochs=1)  # more labels; the count alone says it all
    assert "coef" not in pred.prior["spaces"]["nb201"] and pred.prior["spaces"]["nb201"]["chosen_on"] == "fine_tune"


@pytest.mark.parametrize("coef", [[1.0], [1.0, float("nan")], "1,0", [True, 0.0]])
def test_a_bad_combination_in_a_card_is_refused(data, coef) -> None:
    archs, sizes = data
    prior = _fit(archs, sizes).prior
    with pytest.raises(ValueError, match="'coef' must be two finite numbers"):
        checked_prior({**prior, "spaces": {"nb201": {**prior["spaces"]["nb201"], "coef": coef}}})
