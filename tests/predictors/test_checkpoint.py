"""Fit checkpoints: a fit stopped part-way (Ctrl-C inside an epoch) and run again resumes from its checkpoint
and ends with exactly the members of a fit that never stopped; a checkpoint of another fit is refused."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import wsnas.predictors._checkpoint as checkpoint_module
import wsnas.predictors._fit as fit_module
from wsnas import PredictorFileError
from wsnas.predictors import EncoderConfig, WeightPredictor
from wsnas.search_spaces import get_space
from wsnas.training import sample_distinct

NB201 = get_space("nb201")
ARCHS = sample_distinct(NB201, 24, 0)
Y = np.array([NB201.to_string(a).count("conv") for a in ARCHS], float)
Y += np.random.default_rng(0).normal(0, 0.3, len(ARCHS))
TRAIN_EPOCH = fit_module.train_epoch
FIT = {"epochs": 12, "batch_size": 8, "patience": 4, "progress": False}


def _pred() -> WeightPredictor:
    config = EncoderConfig(hidden=8, layers=1)
    return WeightPredictor(NB201, encoder=config, ensemble=3, seed=0, size={"C": 2, "N": 1}, device="cpu")


def _same_members(a: WeightPredictor, b: WeightPredictor) -> bool:
    return all(
        all(torch.equal(x, sa[k]) for k, x in sb.items())
        for sa, sb in ((ma.state_dict(), mb.state_dict()) for ma, mb in zip(a.members, b.members))
    )


class _Stop:
    """Wraps ``train_epoch``: counts the calls and raises KeyboardInterrupt inside call ``at`` (0: never)."""

    def __init__(self, at: int) -> None:
        self.at, self.calls, self.real = at, 0, TRAIN_EPOCH

    def __call__(self, *args, **kwargs) -> None:  # noqa: ANN002, ANN003
        self.calls += 1
        if self.calls == self.at:
            self.real(*args, **kwargs)  # an epoch half done: the update is in memory, not in the checkpoint
            raise KeyboardInterrupt
        self.real(*args, **kwargs)


@pytest.mark.parametrize("stop_at", [3, 16])  # inside member 0; inside a later member
def test_a_stopped_fit_resumes_to_the_predictor_of_an_unstopped_one(tmp_path, monkeypatch, stop_at) -> None:
    monkeypatch.setattr(checkpoint_module, "SAVE_EVERY", 0.0)  # a write at every epoch boundary
    reference = _pred().fit(ARCHS, Y, **FIT)
    full = _Stop(0)
    monkeypatch.setattr(fit_module, "train_epoch", full)
    _pred().fit(ARCHS, Y, **FIT)
    assert full.calls > stop_at

    ckpt = tmp_path / "fit.ckpt"
    stopped = _Stop(stop_at)
    monkeypatch.setattr(fit_module, "train_epoch", stopped)
    with pytest.raises(KeyboardInterrupt):
        _pred().fit(ARCHS, Y, **FIT, checkpoint=ckpt)
    assert ckpt.is_file()

    resumed = _Stop(0)
    monkeypatch.setattr(fit_module, "train_epoch", resumed)
    pred = _pred().fit(ARCHS, Y, **FIT, checkpoint=ckpt)
    assert resumed.calls == full.calls - (stop_at - 1)  # the epochs before the stop are not trained again
    assert _same_members(pred, reference)
    assert pred.history[0]["member_val_spearman"] == reference.history[0]["member_val_spearman"]
    assert not ckpt.exists()  # removed once the fit completes


def test_a_checkpoint_of_another_fit_is_refused_and_kept(tmp_path, monkeypatch) -> None:
    monkeypatch.setattr(checkpoint_module, "SAVE_EVERY", 0.0)
    ckpt = tmp_path / "fit.ckpt"
    monkeypatch.setattr(fit_module, "train_epoch", _Stop(5))
    with pytest.raises(KeyboardInterrupt):
        _pred().fit(ARCHS, Y, **FIT, checkpoint=ckpt)
    before = ckpt.read_bytes()
    monkeypatch.setattr(fit_module, "train_epoch", _Stop(0))
    with pytest.raises(ValueError, match="other data or options"):
        _pred().fit(ARCHS, Y, **{**FIT, "epochs": 13}, checkpoint=ckpt)
    with pytest.raises(ValueError, match="other data or options"):
        _pred().fit(ARCHS, Y + 1.0, **FIT, checkpoint=ckpt)
    assert ckpt.read_bytes() == before


def test_a_file_that_is_no_checkpoint_is_a_predictor_file_error(tmp_path) -> None:
    bad = tmp_path / "fit.ckpt"
    bad.write_bytes(b"not a safetensors file")
    with pytest.raises(PredictorFileError, match="not a readable fit checkpoint"):
        _pred().fit(ARCHS, Y, **FIT, checkpoint=bad)
    other = tmp_path / "pred.safetensors"
    _pred().fit(ARCHS, Y, **{**FIT, "epochs": 2}).save(other)
    with pytest.raises(PredictorFileError, match="not a wsnas fit checkpoint"):
        _pred().fit(ARCHS, Y, **FIT, checkpoint=other)
