from __future__ import annotations

import os
import pickle
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from wsnas import DatasetError, UnknownTask, WsnasError
from wsnas.training import cifar10, digits, get_task, synthetic
from wsnas.training._datasets import _CifarUnpickler


def test_fingerprint_changes_with_every_recipe_field_and_the_data() -> None:
    base = synthetic(n=64, epochs=1)
    assert base.fingerprint == synthetic(n=64, epochs=1).fingerprint
    variants = [
        base.with_recipe(epochs=2),
        base.with_recipe(resolution=4),
        base.with_recipe(lr=0.1),
        base.with_recipe(schedule="onecycle"),
        base.with_recipe(optimizer="adamw"),
        base.with_recipe(subset=32),
        base.with_recipe(seed=1),
        base.with_recipe(size={"C": 4, "N": 1}),
        synthetic(n=64, epochs=1, data_seed=1),  # other data, same recipe
        synthetic(n=64, epochs=1, noise=0.5),
    ]
    prints = {v.fingerprint for v in variants}
    assert len(prints) == len(variants) and base.fingerprint not in prints
    # size order does not matter, values do
    assert synthetic(size={"C": 4, "N": 1}).fingerprint == synthetic(size={"N": 1, "C": 4}).fingerprint


def test_fingerprint_is_stable_across_processes(cifar_dir: Path) -> None:
    code = (
        "from wsnas.training import cifar10, synthetic;"
        f"print(synthetic(n=64, epochs=3, size={{'C': 4}}).fingerprint, cifar10({str(cifar_dir)!r}).fingerprint)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split()
    assert out == [synthetic(n=64, epochs=3, size={"C": 4}).fingerprint, cifar10(cifar_dir).fingerprint]
    # the folder is not part of the identity: the same files reached through the batches folder itself
    assert cifar10(cifar_dir / "cifar-10-batches-py").fingerprint == cifar10(cifar_dir).fingerprint


class _Evil:
    def __reduce__(self):
        return (os.system, ("echo pwned > pwned.txt",))


def test_restricted_unpickler_refuses_os_system(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    payload = pickle.dumps({"data": _Evil(), "labels": [0]}, protocol=4)
    assert b"system" in payload
    with pytest.raises(pickle.UnpicklingError, match="system"):
        _CifarUnpickler(__import__("io").BytesIO(payload)).load()
    # through the task: a planted batch is refused with a clear error and nothing runs
    folder = tmp_path / "cifar-10-batches-py"
    folder.mkdir()
    (folder / "data_batch_1").write_bytes(payload)
    (folder / "test_batch").write_bytes(payload)
    task = cifar10(tmp_path, val_size=1)
    with pytest.raises(DatasetError, match="not a valid CIFAR-10 batch.*refusing to load global .*system"):
        task.prepare()
    assert not (tmp_path / "pwned.txt").exists()
    # a real-looking batch of the standard layout loads
    data = {"data": np.arange(4 * 3072, dtype=np.uint8).reshape(4, 3072), "labels": [1, 2, 3, 4]}
    (folder / "data_batch_1").write_bytes(pickle.dumps(data, protocol=2))
    x, y = cifar10(tmp_path).source.load("train")
    assert x.shape == (4, 3, 32, 32) and y.tolist() == [1, 2, 3, 4]


def test_missing_cifar_folder_or_file_names_the_path_and_layout(tmp_path: Path) -> None:
    with pytest.raises(DatasetError, match=r"'.*nowhere' does not exist; expected a 'cifar-10-batches-py' folder"):
        cifar10(tmp_path / "nowhere")
    with pytest.raises(DatasetError, match="no CIFAR-10 'data_batch_1' in"):
        cifar10(tmp_path)
    folder = tmp_path / "cifar-10-batches-py"
    folder.mkdir()
    (folder / "data_batch_1").write_bytes(b"")
    with pytest.raises(DatasetError, match=r"test_batch' is missing; expected"):
        cifar10(tmp_path)
    with pytest.raises(DatasetError, match="needs data_dir"):
        get_task("cifar10")


def test_cifar10_loader_shapes_labels_and_split(cifar_dir: Path) -> None:
    task = cifar10(cifar_dir, subset=300, val_size=200, resolution=16, seed=3)
    data = task.prepare()
    assert data.train_x.shape == (300, 3, 16, 16) and data.val_x.shape == (200, 3, 16, 16)
    assert data.train_x.dtype == torch.float32 and data.train_y.dtype == torch.int64
    assert set(data.train_y.tolist()) == set(range(10))
    assert abs(float(data.train_x.mean())) < 1e-3 and abs(float(data.train_x.std()) - 1) < 0.05
    # 16x16 is the 2x2 average of the 32x32 images: check one image against the raw pixels
    raw_x, _ = task.source.load("train")
    order = np.random.default_rng(3).permutation(len(raw_x))
    first = raw_x[order[200]].reshape(3, 16, 2, 16, 2).mean(axis=(2, 4))
    restored = data.train_x[0].numpy() * data.std[0] + data.mean[0]
    np.testing.assert_allclose(restored, first, atol=1e-5)
    # the split depends on the seed; validation and training are disjoint
    other = task.with_recipe(seed=4).prepare()
    assert not torch.equal(other.val_y, data.val_y)
    val_ids = set(order[:200].tolist())
    assert not val_ids & set(order[200:500].tolist())
    test_x, test_y = task.load_test()
    assert test_x.shape == (10000, 3, 16, 16) and torch.bincount(test_y).tolist() == [1000] * 10


def test_digits_and_synthetic_and_lookup() -> None:
    d = digits(val_size=100, subset=200).prepare()
    assert d.train_x.shape == (200, 1, 16, 16) and int(d.train_y.max()) <= 9
    t = get_task("synthetic", n=40, classes=3, resolution=4, val_size=8)
    s = t.prepare()
    assert s.train_x.shape == (32, 3, 4, 4) and set(s.train_y.tolist()) <= {0, 1, 2}
    assert t.build_kwargs == {"num_classes": 3, "in_channels": 3}
    with pytest.raises(UnknownTask, match="unknown task 'imagenet'; known tasks: cifar10, digits, synthetic"):
        get_task("imagenet")
    assert issubclass(UnknownTask, WsnasError)
    with pytest.raises(ValueError, match="val_size \\+ subset must be <= the 40 training images"):
        t.with_recipe(subset=39).prepare()
    with pytest.raises(ValueError, match="schedule must be one of"):
        t.with_recipe(schedule="step")
