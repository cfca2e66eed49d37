"""Pretraining without labels: the encoder learns costless targets, fits start from it, files keep it.

A tiny encoder on NB201 cells encoded at C=2. The costless target of the learning test is the number of
conv ops of the cell (a function of the architecture the parameter graph shows), so a working pretraining
must predict it on held-out cells.
"""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch

from wsnas.predictors import EncoderConfig, WeightPredictor, costless_targets, evaluate, gaussianise, load, save
from wsnas.predictors._training import spearman
from wsnas.search_spaces import get_space
from wsnas.training import Zoo, ZooRecord, sample_distinct

SPACE = get_space("nb201")
SIZE = {"C": 2, "N": 1}
TINY = EncoderConfig(hidden=8, layers=1, kernel_size=3)


def convs(arch) -> int:
    return sum(d["op"].startswith("nor_conv") for _, _, d in arch.graph.edges(data=True))


def skips(arch) -> int:
    return sum(d["op"] == "skip_connect" for _, _, d in arch.graph.edges(data=True))


def predictor(seed: int = 0) -> WeightPredictor:
    return WeightPredictor(SPACE, encoder=TINY, ensemble=2, seed=seed, size=SIZE, device="cpu")


@pytest.fixture(scope="module")
def pretrained():
    archs = sample_distinct(SPACE, 160, 0)
    raw = np.array([[convs(a), skips(a), 1.0] for a in archs], dtype=np.float64)  # the last column is constant
    pred = predictor().pretrain(archs, raw, ["convs", "skips", "const"], epochs=6, batch_size=16, lr=1e-2,
                                progress=False)  # fmt: skip
    return pred, archs


def test_gaussianise_ranks_each_column_and_drops_constant_ones() -> None:
    m = np.array([[1.0, 5.0, 2.0], [3.0, 5.0, -np.inf], [2.0, 5.0, 7.0], [10.0, 5.0, 7.0]])
    z, names = gaussianise(m, ["a", "b", "c"])
    assert names == ["a", "c"] and z.shape == (4, 2)
    assert list(np.argsort(z[:, 0])) == [0, 2, 1, 3]  # ranks kept, scale gone
    assert z[1, 1] == z[:, 1].min() and z[2, 1] == z[3, 1]  # -inf ranks lowest, ties share a value
    assert abs(z[:, 0].mean()) < 1e-12
    with pytest.raises(ValueError, match="NaN"):
        gaussianise(np.array([[1.0], [np.nan], [2.0]]), ["a"])
    with pytest.raises(ValueError, match="constant"):
        gaussianise(np.ones((5, 2)), ["a", "b"])
    with pytest.raises(ValueError, match=r"\[n, 2\]"):
        gaussianise(np.ones((5, 3)), ["a", "b"])


def test_pretraining_learns_the_targets_and_records_them(pretrained) -> None:
    pred, archs = pretrained
    assert pred.encoder.aux_outputs == 2 and not pred.fitted
    card = pred.card["pretraining"]
    assert card["targets"] == ["convs", "skips"] and card["source"] == "given" and card["n"] == 160
    assert card["n_held_out"] == 32 and len(card["held_out_spearman"]) == 2 and len(card["curve"]) == 6
    # the pretraining head predicts the conv count of cells it never saw
    fresh = sample_distinct(SPACE, 200, 0)[160:]
    graphs = pred._single_graphs(fresh)
    from wsnas.encoding import batch_graphs

    with torch.inference_mode():
        out = pred.members[0].auxiliary(batch_graphs(graphs)).numpy()
    assert spearman(out[:, 0], np.array([convs(a) for a in fresh])) > 0.6
    with pytest.raises(RuntimeError, match="fit"):
        pred.predict(fresh[:3])


def test_fit_starts_from_the_pretrained_encoder(pretrained) -> None:
    pred, archs = pretrained
    y = np.array([convs(a) for a in archs[:40]]) + np.random.default_rng(0).normal(0, 0.3, 40)
    frozen = copy.deepcopy(pred).fit(archs[:40], y, epochs=3, batch_size=8, pretrained_lr_scale=0.0, progress=False)
    for member in frozen.members:  # the encoder itself did not move, the score head did
        state = member.state_dict()
        assert all(torch.equal(state[k], v) for k, v in pred._pretrained.items() if not k.startswith("head."))
        assert not torch.equal(state["head.0.weight"], pred._pretrained["head.0.weight"])
    heads = [m.state_dict()["head.0.weight"] for m in pred.members]
    assert not torch.equal(heads[0], heads[1])  # each member draws its own head
    tuned = copy.deepcopy(pred).fit(archs[:40], y, epochs=3, batch_size=8, progress=False)
    moved = tuned.members[0].state_dict()["layers.0.fwd.weight"]
    assert not torch.equal(moved, pred._pretrained["layers.0.fwd.weight"])
    assert tuned.history[0]["pretrained"] is True
    # fine-tuning after a frozen fit moves the encoder again
    before = frozen.members[0].state_dict()["layers.0.fwd.weight"].clone()
    frozen.fine_tune(archs[:40], y, epochs=1)
    assert not torch.equal(frozen.members[0].state_dict()["layers.0.fwd.weight"], before)
    with pytest.raises(ValueError, match="pretrained_lr_scale"):
        copy.deepcopy(pred).fit(archs[:40], y, pretrained_lr_scale=2.0)


def test_pretrained_files_round_trip_before_and_after_fit(pretrained, tmp_path) -> None:
    pred, archs = pretrained
    path = save(pred, tmp_path / "pre.safetensors")  # a pretrained, unfitted predictor can be kept
    back = load(path)
    assert not back.fitted and back.pretraining == pred.pretraining and back.encoder.aux_outputs == 2
    assert all(torch.equal(back._pretrained[k], v) for k, v in pred._pretrained.items())
    y = np.array([convs(a) for a in archs[:30]], dtype=float)
    a = copy.deepcopy(pred).fit(archs[:30], y, epochs=2, batch_size=8, progress=False)
    b = back.fit(archs[:30], y, epochs=2, batch_size=8, progress=False)  # the same start, the same fit
    np.testing.assert_allclose(a.predict(archs[30:40]).score, b.predict(archs[30:40]).score, rtol=1e-5, atol=1e-6)
    again = load(save(b, tmp_path / "fitted.safetensors"))
    np.testing.assert_allclose(again.predict(archs[30:40]).score, b.predict(archs[30:40]).score, rtol=1e-6)
    assert again._pretrained is not None and again.fitted


def test_costless_targets_are_the_zero_cost_proxies() -> None:
    archs = sample_distinct(SPACE, 4, 1)
    raw, names = costless_targets(SPACE, archs, size={"C": 2, "N": 1}, batch_size=8, progress=False)
    assert raw.shape == (4, len(names)) and "naswot" in names and "params" in names
    params = raw[:, names.index("params")]
    assert len(set(params.tolist())) > 1 and (params > 0).all()
    # pretrain computes them itself when no targets are given
    pred = predictor().pretrain(archs * 2, epochs=1, batch_size=4, progress=False)
    assert pred.pretraining["source"] == "zero-cost proxies" and "params" in pred.pretraining["targets"]


def test_evaluate_fits_copies_of_the_pretrained_predictor(pretrained, tmp_path) -> None:
    pred, _ = pretrained
    archs = sample_distinct(SPACE, 40, 2)
    zoo = Zoo(tmp_path / "zoo.jsonl")
    for a in archs:
        acc = float(convs(a))
        zoo.append(ZooRecord(
            space="nb201", arch=SPACE.to_string(a), arch_hash=a.hash, seed=0, task="synthetic",
            task_fingerprint="f" * 16, val_acc=acc, val_loss=1.0, val_acc_curve=[acc], val_loss_curve=[1.0],
            train_loss_curve=[1.0], train_seconds=1.0, params=1, flops=1, diverged=False, init="kaiming_normal",
            wsnas_version="0.1.0", timestamp="2025-01-01T00:00:00+00:00",
        ))  # fmt: skip
    table = evaluate([zoo.path], label_budgets=[20], methods=["encoder", "params"], pretrained=pred,
                     fit_options={"epochs": 3, "batch_size": 8}, progress=False)  # fmt: skip
    assert table.meta["pretrained"]["targets"] == ["convs", "skips"]
    assert table.meta["ensemble"] == pred.ensemble == 2  # the pretrained predictor's, recorded as such
    assert not pred.fitted  # the pretrained predictor itself is left as it was
    with pytest.raises(ValueError, match="pretrained"):
        evaluate([zoo.path], label_budgets=[20], methods=["encoder"], pretrained=predictor(), progress=False)
    with pytest.raises(ValueError, match="pretrained fixes the ensemble at 2, got ensemble=8"):
        evaluate([zoo.path], label_budgets=[20], methods=["encoder"], pretrained=pred, ensemble=8, progress=False)


def test_transfer_carries_the_pretrained_encoder_to_the_new_space(pretrained) -> None:
    import warnings

    pred, archs = pretrained
    y = np.array([convs(a) for a in archs[:20]], dtype=float)
    fitted = copy.deepcopy(pred).fit(archs[:20], y, epochs=2, batch_size=8, progress=False)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # layer types NB201 never had
        moved = fitted.transfer("nb101", check=4)
    assert moved.pretraining == pred.pretraining and moved.card["pretraining"]["targets"] == ["convs", "skips"]
    other = sample_distinct(moved.space, 12, 0)
    moved.fit(other, np.arange(12, dtype=float), epochs=2, batch_size=4, pretrained_lr_scale=0.0, progress=False)
    state = moved.members[0].state_dict()
    assert all(torch.equal(state[k], v) for k, v in pred._pretrained.items() if not k.startswith("head."))


def test_proxies_resume_from_a_checkpoint_after_a_stop(tmp_path, monkeypatch) -> None:
    import wsnas.predictors._proxy_cache as cache_module
    import wsnas.predictors._zc_gbm as zc_module
    from wsnas import PredictorFileError
    from wsnas.predictors._pretrain import proxy_key
    from wsnas.predictors._proxy_cache import ProxyCache

    archs = sample_distinct(SPACE, 8, 4)
    expected, names = costless_targets(SPACE, archs, seed=1, progress=False)
    real, calls = zc_module.ZeroCostScores.matrix, []

    def stop_at_the_fifth(self, batch):  # noqa: ANN001
        calls.append(1)
        if len(calls) == 5:
            raise KeyboardInterrupt
        return real(self, batch)

    monkeypatch.setattr(cache_module, "SAVE_EVERY", 3600.0)  # only the write when it stops
    monkeypatch.setattr(zc_module.ZeroCostScores, "matrix", stop_at_the_fifth)
    path = tmp_path / "proxies.ckpt"
    with pytest.raises(KeyboardInterrupt):
        costless_targets(SPACE, archs, seed=1, progress=False, cache=ProxyCache(path, proxy_key(None, 1)))
    assert path.is_file() and ProxyCache(path, proxy_key(None, 1)).resumed == 4

    calls.clear()
    monkeypatch.setattr(zc_module.ZeroCostScores, "matrix", lambda self, batch: (calls.append(1), real(self, batch))[1])
    again, again_names = costless_targets(SPACE, archs, seed=1, progress=False,
                                          cache=ProxyCache(path, proxy_key(None, 1)))  # fmt: skip
    assert len(calls) == 4 and again_names == names  # only the four not yet computed
    np.testing.assert_array_equal(again, expected)

    with pytest.raises(ValueError, match="another pretraining"):
        ProxyCache(path, proxy_key(None, 2))  # other settings: refused, the file kept
    assert path.is_file()
    (tmp_path / "junk.ckpt").write_bytes(b"not a checkpoint")
    with pytest.raises(PredictorFileError, match="is not a proxy checkpoint"):
        ProxyCache(tmp_path / "junk.ckpt", proxy_key(None, 1))


def test_pretrain_with_a_checkpoint_removes_it_when_done(tmp_path) -> None:
    archs = sample_distinct(SPACE, 15, 5)
    path = tmp_path / "pre.ckpt"
    with_file = predictor().pretrain(archs, epochs=1, progress=False, checkpoint=path)
    assert not path.exists()
    plain = predictor().pretrain(archs, epochs=1, progress=False)
    assert all(torch.equal(v, plain._pretrained[k]) for k, v in with_file._pretrained.items())
