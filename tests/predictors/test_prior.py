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
    UNSEEN_WEIGHT,
    blend,
    choose_weight,
    correlations,
    log_params,
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
    pred = _fit(archs, -sizes)  # smaller is better here: the blend must not help, the weight stays 0
    assert pred.prior["spaces"]["nb201"]["weight"] == 0.0
    np.testing.assert_array_equal(blend(np.ones(3), np.arange(3.0), pred.prior["spaces"]["nb201"]), np.ones(3))
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
    assert other.prior["spaces"]["nb101"]["weight"] == 0.0 and other.prior["spaces"]["nb101"]["labels"] == 30
