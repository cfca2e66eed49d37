from __future__ import annotations

import numpy as np
import torch

from wsnas import count_params
from wsnas.search_spaces import NB201
from wsnas.training import synthetic, train, train_many

SPACE = NB201()
CONV = "|nor_conv_3x3~0|+|nor_conv_1x1~0|skip_connect~1|+|skip_connect~0|nor_conv_3x3~1|skip_connect~2|"
TASK = synthetic(n=256, epochs=2, batch_size=32, lr=0.05, size={"C": 4, "N": 1})


def test_training_is_deterministic_for_a_seed_and_differs_between_seeds() -> None:
    threads, det = torch.get_num_threads(), torch.are_deterministic_algorithms_enabled()
    a = train(SPACE, CONV, TASK, seed=0)
    b = train(SPACE, CONV, TASK, seed=0)
    c = train(SPACE, CONV, TASK, seed=1)
    assert len(a.val_acc_curve) == 2 and len(a.val_loss_curve) == 2
    assert a.val_loss_curve == b.val_loss_curve and a.val_acc_curve == b.val_acc_curve
    assert a.train_loss_curve == b.train_loss_curve
    assert a.val_loss_curve != c.val_loss_curve and a.train_loss_curve != c.train_loss_curve
    assert (torch.get_num_threads(), torch.are_deterministic_algorithms_enabled()) == (threads, det)  # restored


def test_accuracy_beats_chance_on_an_easy_task() -> None:
    result = train(SPACE, CONV, TASK.with_recipe(epochs=3), seed=0)
    assert result.val_acc > 0.6, result  # 4 classes: chance is 0.25
    assert result.val_loss_curve[-1] < result.val_loss_curve[0] or result.val_acc_curve[-1] > 0.8
    assert not result.diverged and result.init == "generated"
    assert result.params == count_params(SPACE.build(SPACE.from_string(CONV), C=4, N=1, num_classes=4))
    assert result.flops > 0 and result.train_seconds > 0
    assert result.task_fingerprint == TASK.with_recipe(epochs=3).fingerprint


def test_nan_loss_is_recorded_as_diverged() -> None:
    net = SPACE.build(SPACE.from_string(CONV), **TASK.build_kwargs)
    nan = torch.full((count_params(net),), float("nan"))
    result = train(SPACE, CONV, TASK, weights=nan)
    assert result.diverged and result.val_loss is None and result.val_acc == 0.25
    assert result.val_acc_curve == () and result.init == "given"


def test_train_many_in_processes_matches_training_here() -> None:
    rng = np.random.default_rng(0)
    archs = [SPACE.sample(rng) for _ in range(2)]
    task = TASK.with_recipe(epochs=1)
    here = {a.hash: train(SPACE, a, task, seed=5) for a in archs}
    there = {r.arch_hash: r for r in train_many(SPACE, archs, task, seeds=5, workers=2)}
    assert set(there) == set(here)
    for h, r in there.items():
        assert r.val_loss_curve == here[h].val_loss_curve and r.train_loss_curve == here[h].train_loss_curve
