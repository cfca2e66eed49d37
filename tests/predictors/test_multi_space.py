"""One predictor trained on several spaces at once (``fit(other_spaces=...)``, ``from_zoo`` on zoos of several
spaces, ``wsnas predictor train`` on them): per-space widths, splits and target statistics on the card, the
layer types of every space seen, and ``transfer`` to a trained space using its width and statistics."""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from wsnas.predictors import EncoderConfig, UnseenLayerWarning, WeightPredictor, default_transfer_size, load
from wsnas.search_spaces import get_space
from wsnas.training import Zoo, ZooRecord, sample_distinct

NB201, NB101 = get_space("nb201"), get_space("nb101")
A201 = sample_distinct(NB201, 24, 0)
A101 = sample_distinct(NB101, 20, 0)
# learnable targets: the conv count (NB201) and the number of 3x3 convolutions (NB101), on different scales
Y201 = np.array([NB201.to_string(a).count("conv") for a in A201], float) / 10
Y101 = 50.0 + np.array([NB101.to_string(a).count("conv3x3") for a in A101], float)
NB101_SIZE = {"C": 4, "stacks": 2, "cells_per_stack": 1}
FIT = {"epochs": 6, "batch_size": 8, "progress": False}


def _pred() -> WeightPredictor:
    return WeightPredictor(NB201, encoder=EncoderConfig(hidden=8, layers=1), ensemble=2, size={"C": 2, "N": 1})


def test_fit_on_two_spaces_records_each_and_transfers_with_its_width_and_statistics() -> None:
    pred = _pred().fit(A201, Y201, **FIT, other_spaces={"nb101": (A101, Y101)}, other_sizes={"nb101": NB101_SIZE})
    spaces = pred.training_data["spaces"]
    assert list(spaces) == ["nb201", "nb101"]
    assert spaces["nb101"]["size"] == NB101_SIZE and spaces["nb201"]["size"] == {"C": 2, "N": 1}
    assert spaces["nb101"]["n"] == 20 and spaces["nb101"]["n_val"] == 4 and spaces["nb201"]["n_val"] == 5
    assert spaces["nb101"]["mean"] > 49 and spaces["nb201"]["mean"] < 1  # each standardised on its own
    assert pred.target["mean"] == spaces["nb201"]["mean"]
    assert pred.training_data["n"] == 44 and pred.history[0]["spaces"] == spaces
    assert all(s["val_spearman"] is None or -1 <= s["val_spearman"] <= 1 for s in spaces.values())
    assert "MaxPool2d 3x3" in pred.layer_types  # NB101's pooling, which NB201 never has
    with warnings.catch_warnings():
        warnings.simplefilter("error", UnseenLayerWarning)  # it saw every NB101 layer type: no warning
        moved = pred.transfer("nb101")
    assert dict(moved.candidates.size) == NB101_SIZE
    assert moved.target["mean"] == spaces["nb101"]["mean"] and moved.target["space"] == "nb101"
    scores = moved.predict(A101).score
    assert 40 < float(np.mean(scores)) < 60  # in NB101's units, not NB201's
    # a space it never trained on keeps the default transfer width
    with pytest.warns(UnseenLayerWarning):
        macro = pred.transfer("macro")
    assert dict(macro.candidates.size) == default_transfer_size(get_space("macro"))


def test_a_single_space_fit_is_unchanged_by_the_multi_space_path() -> None:
    pred = _pred().fit(A201, Y201, **FIT)
    assert "spaces" not in pred.training_data and "spaces" not in pred.history[0]
    again = _pred().fit(A201, Y201, **FIT, other_spaces={})
    assert np.array_equal(pred.predict(A201).score, again.predict(A201).score)


def test_other_spaces_errors() -> None:
    with pytest.raises(ValueError, match="names 'nb201' twice"):
        _pred().fit(A201, Y201, **FIT, other_spaces={"nb201": (A201, Y201)})
    with pytest.raises(ValueError, match="at least 4 architectures of 'nb101'"):
        _pred().fit(A201, Y201, **FIT, other_spaces={"nb101": (A101[:3], Y101[:3])})
    with pytest.raises(ValueError, match="targets"):
        _pred().fit(A201, Y201, **FIT, other_spaces={"nb101": (A101, Y101[:5])})


def _zoo(path, space, archs, y) -> None:  # noqa: ANN001
    zoo = Zoo(path)
    for a, v in zip(archs, y):
        zoo.append(ZooRecord(
            space=space.name, arch=space.to_string(a), arch_hash=a.hash, seed=0, task="synthetic",
            task_fingerprint="0123456789abcdef", val_acc=float(v), val_loss=1.0, val_acc_curve=[float(v)],
            val_loss_curve=[1.0], train_loss_curve=[1.0], train_seconds=0.5, params=10, flops=10, diverged=False,
            init="kaiming_normal", wsnas_version="0.1.0", timestamp="2025-01-01T00:00:00+00:00",
        ))  # fmt: skip


def test_from_zoo_and_the_cli_train_on_every_space_of_the_zoos(tmp_path) -> None:
    from wsnas.cli._predictor import predictor_group

    _zoo(tmp_path / "a.jsonl", NB201, A201, Y201)
    _zoo(tmp_path / "b.jsonl", NB101, A101, Y101 / 100)
    zoos = [str(tmp_path / "a.jsonl"), str(tmp_path / "b.jsonl")]
    pred = WeightPredictor.from_zoo(zoos, encoder=EncoderConfig(hidden=8, layers=1), ensemble=1,
                                    size={"C": 2, "N": 1}, **FIT)  # fmt: skip
    assert list(pred.training_data["spaces"]) == ["nb201", "nb101"] and pred.training_data["records"] == 44
    only = WeightPredictor.from_zoo(zoos, space="nb101", encoder=EncoderConfig(hidden=8, layers=1), ensemble=1, **FIT)
    assert only.space.name == "nb101" and "spaces" not in only.training_data

    options = ["--ensemble", "1", "--epochs", "3", "--hidden", "8", "--layers", "1", "--quiet"]
    out = tmp_path / "p.st"
    args = ["train", "--zoo", zoos[1], "--zoo", zoos[0], "--out", str(out), *options]
    result = CliRunner().invoke(predictor_group, args)
    assert result.exit_code == 0, result.output
    assert "  nb101: validation Spearman" in result.output and "  nb201: validation Spearman" in result.output
    card = load(out).card
    assert card["space"] == "nb101" and list(card["training_data"]["spaces"]) == ["nb101", "nb201"]


def test_the_default_predictor_of_a_space_without_its_own_is_the_multi_space_one(tmp_path, monkeypatch) -> None:
    import wsnas.predictors._persist as persist
    from wsnas import PredictorFileError
    from wsnas.cli._predict import predict_cmd
    from wsnas.predictors import MULTI_SPACE, default_predictor

    shipped = tmp_path / "shipped"
    shipped.mkdir()
    monkeypatch.setattr(persist, "SHIPPED_DIR", shipped)
    with pytest.raises(PredictorFileError, match="no shipped predictor named 'nb101'"):
        default_predictor("nb101")
    multi = _pred().fit(A201, Y201, **FIT, other_spaces={"nb101": (A101, Y101)}, other_sizes={"nb101": NB101_SIZE})
    multi.save(shipped / f"{MULTI_SPACE}.safetensors")
    own = _pred().fit(A201, Y201 * 2, **FIT)
    own.save(shipped / "nb201.safetensors")

    nb101 = default_predictor("nb101")
    assert nb101.space.name == "nb101" and dict(nb101.candidates.size) == NB101_SIZE
    assert np.allclose(nb101.predict(A101[:4]).score, multi.transfer("nb101").predict(A101[:4]).score)
    assert np.allclose(default_predictor(NB201).predict(A201[:4]).score, own.predict(A201[:4]).score)

    archs = tmp_path / "archs.txt"
    archs.write_text("\n".join(NB101.to_string(a) for a in A101[:3]) + "\n")
    out = tmp_path / "scores.csv"
    result = CliRunner().invoke(predict_cmd, ["--space", "nb101", "--input", str(archs), "--output", str(out)])
    assert result.exit_code == 0, result.output
    assert len(out.read_text().splitlines()) == 4


def test_shipped_multi_space_predictor_reproduces_its_held_out_table() -> None:
    """``load("multi")`` scores each space's held-out test half (the transfer benchmark's hash split) as its card
    says, and the default predictor of NB101 and MacroCNN is it, transferred at the width it trained at."""
    import hashlib

    from scipy.stats import spearmanr

    from wsnas.predictors import MULTI_SPACE, SHIPPED_DIR, default_predictor

    multi = load(MULTI_SPACE)
    card = multi.card
    spaces = card["training_data"]["spaces"]
    assert card["space"] == "nb201" and set(spaces) == {"nb201", "nb101", "macro"} and card["pretraining"]
    rows = [r for r in card["evaluation"]["held_out"] if r["method"] == "multi-space encoder"]
    assert [r["space"] for r in rows] == ["nb201", "nb101", "macro"]
    # the zoos the card names, read as far as the card says (a zoo still being built grows after the fit); a
    # space's files (training seeds of one recipe) give each architecture the mean of its records
    by_space: dict[str, dict[str, list]] = {}
    for z in card["training_data"]["zoos"]:
        for r in Zoo.load(SHIPPED_DIR / "zoos" / Path(z["path"]).name)[: z["records"]]:
            if not r.diverged:
                by_space.setdefault(r.space, {}).setdefault(r.arch_hash, []).append(r)
    for row in rows:
        by_hash = by_space[row["space"]]
        test = [h for h in by_hash
                if int(hashlib.sha256(f"transfer-test:{h}".encode()).hexdigest()[:12], 16) / 16**12 < 0.5]  # fmt: skip
        assert len(test) == row["n_test"]
        # NB201 has its own shipped predictor (the default there); the others default to this one
        on = multi if row["space"] == "nb201" else default_predictor(row["space"])
        assert on.space.name == row["space"] and dict(on.candidates.size) == spaces[row["space"]]["size"]
        space = get_space(row["space"])
        scores = on.predict([space.from_string(by_hash[h][0].arch) for h in test]).score
        truth = [np.mean([r.val_acc for r in by_hash[h]]) for h in test]
        assert spearmanr(scores, truth).statistic == pytest.approx(row["spearman"], abs=1e-6)
        assert on.prior["spaces"][row["space"]] == card["prior"]["spaces"][row["space"]]  # a trained space's prior
    assert all(e["seen"] and e["weight"] >= 0 for e in card["prior"]["spaces"].values())
    # each weight was chosen from all of its space's labelled cells: a fine-tuning needs more to choose again
    assert {k: e["labels"] for k, e in card["prior"]["spaces"].items()} == {k: v["n"] for k, v in spaces.items()}


def test_pretraining_on_several_spaces_ranks_each_space_on_its_own() -> None:
    from wsnas.predictors._pretrain import _gaussianise_as

    rng = np.random.default_rng(0)
    names = ["a", "b", "c"]
    given = rng.normal(size=(len(A201), 3))
    with pytest.raises(ValueError, match="'nb101' has no targets"):
        _pred().pretrain(A201, given, names, epochs=1, progress=False, other_spaces={"nb101": A101[:6]})
    # no targets anywhere: every space's zero-cost proxies (on the synthetic task)
    pred = _pred().pretrain(A201[:12], epochs=1, progress=False, other_spaces={"nb101": A101[:6]},
                            other_sizes={"nb101": NB101_SIZE})  # fmt: skip
    spaces = pred.pretraining["spaces"]
    assert spaces == {"nb201": {"n": 12, "size": {"C": 2, "N": 1}}, "nb101": {"n": 6, "size": NB101_SIZE}}
    assert pred.pretraining["n"] == 18 and "synflow" in pred.pretraining["targets"]
    both = _pred().pretrain(A201, given, names, epochs=1, progress=False,
                            other_spaces={"nb101": (A101, 1000 + rng.normal(size=(len(A101), 3)))})  # fmt: skip
    assert both.pretraining["spaces"]["nb101"]["size"] == default_transfer_size(NB101)
    both.fit(A201, Y201, **FIT)  # every member starts from the encoder pretrained on both spaces
    # a column is ranked within its space (scale-free); a constant or missing one is zero
    z = _gaussianise_as(np.array([[1.0, 5.0], [3.0, 5.0], [2.0, 5.0]]), ["x", "y"], ["x", "y", "w"])
    assert np.argsort(z[:, 0]).tolist() == [0, 2, 1] and not z[:, 1:].any()
