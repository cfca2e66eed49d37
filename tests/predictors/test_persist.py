"""Predictor files: exact round trip, atomic writes, and every kind of bad file is a PredictorFileError."""

from __future__ import annotations

import hashlib
import json
import os
import pickle

import numpy as np
import pytest
import torch
from safetensors import safe_open
from safetensors.torch import save_file

from wsnas import PredictorFileError
from wsnas.predictors import EncoderConfig, WeightPredictor, load, save
from wsnas.predictors._persist import _digest
from wsnas.search_spaces import get_space
from wsnas.training import sample_distinct

SPACE = get_space("nb201")


@pytest.fixture(scope="module")
def pred() -> WeightPredictor:
    archs = sample_distinct(SPACE, 12, 2)
    y = np.random.default_rng(0).normal(size=12)
    p = WeightPredictor(
        SPACE, encoder=EncoderConfig(hidden=8, layers=1, kernel_size=3), ensemble=2, seed=1, size={"C": 4, "N": 1}
    )
    return p.fit(archs, y, epochs=2, batch_size=8, progress=False)


@pytest.fixture(scope="module")
def archs() -> list:
    return sample_distinct(SPACE, 6, 9)


@pytest.fixture
def saved(pred, tmp_path):
    return save(pred, tmp_path / "p.safetensors")


def _contents(path) -> tuple[dict[str, str], dict[str, torch.Tensor]]:
    with safe_open(str(path), framework="pt") as f:
        return dict(f.metadata()), {k: f.get_tensor(k) for k in f.keys()}


def _rewrite(path, metadata: dict[str, str], tensors: dict[str, torch.Tensor], *, rehash: bool = True) -> None:
    """Write a well-formed safetensors file; ``rehash`` recomputes both digests (a consistent forgery)."""
    if rehash:
        metadata = {**metadata, "sha256": _digest(tensors)}
        metadata["card_sha256"] = hashlib.sha256(metadata["card"].encode()).hexdigest()
    save_file(tensors, str(path), metadata=metadata)


def test_round_trip_gives_identical_scores_and_card(pred, saved, archs) -> None:
    back = load(saved)
    a, b = pred.predict(archs), back.predict(archs)
    assert np.array_equal(a.score, b.score) and np.array_equal(a.uncertainty, b.uncertainty)
    assert back.card == pred.card
    assert WeightPredictor.load(str(saved)).card == pred.card


def test_save_is_atomic_and_overwrites(pred, tmp_path) -> None:
    target = tmp_path / "sub" / "p.safetensors"
    save(pred, target)
    target.write_bytes(b"an older file")
    pred.save(target)  # again, over the existing file
    assert load(target).card == pred.card
    assert sorted(os.listdir(target.parent)) == ["p.safetensors"]  # no temporary file left behind


def test_save_needs_a_fitted_predictor(tmp_path) -> None:
    with pytest.raises(ValueError, match="fitted"):
        save(WeightPredictor(SPACE, ensemble=1), tmp_path / "x.safetensors")


def test_loading_never_unpickles(saved, monkeypatch) -> None:
    def refuse(*args, **kwargs):
        raise AssertionError("pickle or torch.load used while loading a predictor")

    monkeypatch.setattr(pickle, "loads", refuse)
    monkeypatch.setattr(pickle, "load", refuse)
    monkeypatch.setattr(torch, "load", refuse)
    load(saved)


def _raises(path, fragment: str) -> None:
    with pytest.raises(PredictorFileError) as info:
        load(path)
    message = str(info.value)
    assert str(path) in message and fragment in message, message
    assert "\n" not in message


def test_foreign_files_are_refused(tmp_path) -> None:
    (tmp_path / "card.json").write_text(json.dumps({"space": "nb201"}))
    _raises(tmp_path / "card.json", "not a readable safetensors file")
    (tmp_path / "noise.bin").write_bytes(np.random.default_rng(0).bytes(4096))
    _raises(tmp_path / "noise.bin", "not a readable safetensors file")
    (tmp_path / "empty.safetensors").write_bytes(b"")
    _raises(tmp_path / "empty.safetensors", "not a readable safetensors file")
    save_file({"w": torch.ones(2)}, str(tmp_path / "other.safetensors"), metadata={"model": "resnet"})
    _raises(tmp_path / "other.safetensors", "is not a wsnas predictor file")


def test_truncated_file_is_refused(saved) -> None:
    data = saved.read_bytes()
    saved.write_bytes(data[: len(data) - 100])
    _raises(saved, "not a readable safetensors file")


def test_tampered_tensor_bytes_are_detected(saved) -> None:
    data = bytearray(saved.read_bytes())
    data[-3] ^= 0x40  # a bit of the last tensor's payload
    saved.write_bytes(bytes(data))
    _raises(saved, "tensor data does not match its sha256")


def test_tampered_card_is_detected(saved) -> None:
    metadata, tensors = _contents(saved)
    card = json.loads(metadata["card"])
    card["training_data"]["n"] = 10_000
    _rewrite(saved, {**metadata, "card": json.dumps(card)}, tensors, rehash=False)
    _raises(saved, "card does not match its sha256")


def _with_prior(metadata: dict[str, str], prior) -> str:
    return json.dumps({**json.loads(metadata["card"]), "prior": prior})


def _prior(metadata: dict[str, str], **change) -> dict:
    prior = json.loads(metadata["card"])["prior"]
    prior["spaces"]["nb201"].update(change)
    return prior


@pytest.mark.parametrize(
    ("change", "fragment"),
    [
        (lambda m, t: ({**m, "format_version": "99"}, t), "format version '99'"),
        (lambda m, t: ({**m, "card": "{not json"}, t), "card is not valid JSON"),
        (lambda m, t: ({**m, "card": "[1, 2]"}, t), "card must be a JSON object"),
        (lambda m, t: ({**m, "card": json.dumps({"space": "nb201"})}, t), "card is invalid"),
        (lambda m, t: ({**m, "card": json.dumps({**json.loads(m["card"]), "space": "nope"})}, t), "not registered"),
        (lambda m, t: ({**m, "card": _with_prior(m, {"spaces": [1]})}, t), "'prior' must be an object"),
        (lambda m, t: ({**m, "card": _with_prior(m, _prior(m, weight=-1.0))}, t), "finite weight >= 0"),
        (lambda m, t: ({**m, "card": _with_prior(m, _prior(m, std=0.0))}, t), "std > 0"),
        (lambda m, t: ({**m, "card": _with_prior(m, _prior(m, labels=-3))}, t), "'labels' must be an int >= 0"),
        (lambda m, t: (m, {k: v for k, v in t.items() if not k.startswith("m1.")}), "missing ['m1."),
        (
            lambda m, t: (m, {**t, "m0.node_in.weight": torch.zeros(3, 3)}),
            "tensor 'm0.node_in.weight' has shape [3, 3]",
        ),
    ],
)
def test_inconsistent_files_are_refused(saved, change, fragment) -> None:
    metadata, tensors = _contents(saved)
    _rewrite(saved, *change(metadata, tensors))
    _raises(saved, fragment)


def test_shipped_nb201_predictor_reproduces_its_held_out_evaluation() -> None:
    """The default predictor loads by name and scores its card's held-out zoo cells as its card says."""
    from scipy.stats import spearmanr

    from wsnas import Zoo
    from wsnas.predictors import SHIPPED_DIR

    pred = load("nb201")
    card = pred.card
    assert card["space"] == "nb201" and card["fitted"] and card["encoding"]["size"] == {"C": 2, "N": 1}
    # pretrained without labels on every cell's zero-cost proxies; the card says so and the file keeps it
    pre = card["pretraining"]
    assert pre["source"] == "zero-cost proxies" and pre["n"] == 15625 and "jacob_cov" in pre["targets"]
    assert card["encoder"]["aux_outputs"] == len(pre["targets"]) and pred._pretrained is not None
    assert min(pre["held_out_spearman"]) > 0.9
    held_out = set(card["evaluation"]["test_hashes"])
    records = [r for r in Zoo.load(SHIPPED_DIR / "zoos" / "nb201-cifar10-e3c16.jsonl") if r.arch_hash in held_out]
    assert len(records) == len(held_out) >= 100
    rho = spearmanr(pred.predict([r.arch for r in records]).score, [r.val_acc for r in records]).statistic
    row = next(r for r in card["evaluation"]["rows"] if r["method"] == "encoder" and r["budget"] == "all")
    assert rho == pytest.approx(row["spearman"], abs=1e-9)
    with pytest.raises(PredictorFileError, match="no shipped predictor named 'nb999' is installed yet") as info:
        load("nb999")
    assert "wsnas predictor train" in str(info.value)


def test_missing_path_and_folder_are_refused(tmp_path) -> None:
    _raises(tmp_path / "missing.safetensors", "does not exist")
    _raises(tmp_path, "is not a file")
