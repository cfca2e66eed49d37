"""Datasets behind the tasks: where images come from, how they load, and their identity.

Loaders return ``(x [n, C, H, W] uint8 or float32, y [n] int64)`` numpy arrays for a split. ``cifar10`` reads
a user's ``cifar-10-batches-py`` folder through a restricted unpickler that refuses every global but the
numpy array reconstruction the batches need, so loading never executes code from the files; ``digits`` is
scikit-learn's bundled set; ``synthetic`` is tiny seeded data for tests. Nothing is ever downloaded.
"""

from __future__ import annotations

import functools
import hashlib
import io
import pickle
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from wsnas._errors import DatasetError

__all__ = ["DataSource", "cifar10_source"]

_CIFAR_LAYOUT = (
    "a 'cifar-10-batches-py' folder (or its parent) holding the pickles 'data_batch_1' (.. 'data_batch_5') "
    "and 'test_batch', as in the CIFAR-10 python release"
)


# -- loaders -----------------------------------------------------------------------------------------
@dataclass(frozen=True)
class DataSource:
    """Where a task's images come from, and their identity.

    ``options`` are the loader's arguments (a folder, a generator seed); ``digest`` identifies the content
    (a hash of the files or of the generating parameters), so the same data moved to another folder keeps
    its fingerprint while different data gets another one.
    """

    name: str
    digest: str
    num_classes: int
    in_channels: int
    resolution: int
    options: tuple[tuple[str, Any], ...] = ()

    def load(self, split: str = "train") -> tuple[np.ndarray, np.ndarray]:
        """``(images float32 [N, C, H, W], labels int64 [N])`` of ``split`` (``"train"`` or ``"test"``)."""
        if split not in ("train", "test"):
            raise ValueError(f"split must be 'train' or 'test', got {split!r}")
        return _LOADERS[self.name](split, **dict(self.options))


class _CifarUnpickler(pickle.Unpickler):
    """Unpickler that resolves only what CIFAR batches reference: numpy arrays, dtypes and plain builtins."""

    _ALLOWED = {
        ("numpy.core.multiarray", "_reconstruct"),
        ("numpy._core.multiarray", "_reconstruct"),
        ("numpy.core.multiarray", "scalar"),
        ("numpy._core.multiarray", "scalar"),
        ("numpy", "ndarray"),
        ("numpy", "dtype"),
        ("_codecs", "encode"),  # how protocol-2 pickles written by Python 3 store bytes
        *(("builtins", n) for n in ("dict", "list", "tuple", "set", "frozenset", "bytes", "bytearray", "str")),
        *(("builtins", n) for n in ("int", "float", "complex", "bool")),
        *(("__builtin__", n) for n in ("dict", "list", "tuple", "set", "frozenset", "bytes", "str", "int", "float")),
    }

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) not in self._ALLOWED:
            raise pickle.UnpicklingError(f"refusing to load global {module}.{name}: not part of a CIFAR batch")
        return super().find_class(module, name)


def _read_cifar_pickle(path: Path) -> dict[str, Any]:
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise DatasetError(
            f"cannot read CIFAR-10 file {str(path)!r}: {exc.strerror}; expected {_CIFAR_LAYOUT}"
        ) from None
    try:
        doc = _CifarUnpickler(io.BytesIO(raw), encoding="latin1").load()
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError, AttributeError) as exc:
        raise DatasetError(f"{str(path)!r} is not a valid CIFAR-10 batch: {exc}") from None
    if not isinstance(doc, dict):
        raise DatasetError(f"{str(path)!r} is not a CIFAR-10 batch: it holds a {type(doc).__name__}, not a dict")
    return {k.decode("latin1") if isinstance(k, bytes) else k: v for k, v in doc.items()}


def _cifar_folder(data_dir: str | Path) -> Path:
    root = Path(data_dir).expanduser()
    for candidate in (root, root / "cifar-10-batches-py"):
        if (candidate / "data_batch_1").is_file():
            return candidate
    if not root.exists():
        raise DatasetError(f"CIFAR-10 data folder {str(root)!r} does not exist; expected {_CIFAR_LAYOUT}")
    raise DatasetError(f"no CIFAR-10 'data_batch_1' in {str(root)!r}; expected {_CIFAR_LAYOUT}")


def _cifar_files(folder: Path, split: str) -> list[Path]:
    if split == "test":
        files = [folder / "test_batch"]
    else:
        files = [folder / f"data_batch_{i}" for i in range(1, 6) if (folder / f"data_batch_{i}").is_file()]
    for f in files:
        if not f.is_file():
            raise DatasetError(f"CIFAR-10 file {str(f)!r} is missing; expected {_CIFAR_LAYOUT}")
    return files


def _load_cifar10(split: str, data_dir: str) -> tuple[np.ndarray, np.ndarray]:
    images, labels = [], []
    for f in _cifar_files(_cifar_folder(data_dir), split):
        doc = _read_cifar_pickle(f)
        data, lab = doc.get("data"), doc.get("labels")
        if not isinstance(data, np.ndarray) or data.ndim != 2 or data.shape[1] != 3072 or lab is None:
            raise DatasetError(f"{str(f)!r} lacks 'data' (uint8 N x 3072) and 'labels'; expected {_CIFAR_LAYOUT}")
        if len(lab) != len(data):
            raise DatasetError(f"{str(f)!r} has {len(data)} images but {len(lab)} labels")
        images.append(data.reshape(-1, 3, 32, 32))
        labels.append(np.asarray(lab, dtype=np.int64))
    x = np.concatenate(images).astype(np.float32) / 255.0
    return x, np.concatenate(labels)


def _load_digits(split: str) -> tuple[np.ndarray, np.ndarray]:
    from sklearn.datasets import load_digits

    bunch = load_digits()
    x = (bunch.images.astype(np.float32) / 16.0)[:, None]  # [1797, 1, 8, 8]
    y = bunch.target.astype(np.int64)
    # the bundled set has no test split: hold out a fixed fifth (every fifth image) as "test"
    test = np.arange(len(y)) % 5 == 4
    keep = test if split == "test" else ~test
    return x[keep], y[keep]


def _load_synthetic(
    split: str, n: int, classes: int, size: int, noise: float, seed: int
) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    colours = rng.normal(0.0, 1.0, size=(classes, 3, 1, 1)).astype(np.float32)  # per-class mean colour
    patterns = rng.normal(0.0, 1.0, size=(classes, 3, size, size)).astype(np.float32)
    offset = 0 if split == "train" else 1
    rng = np.random.default_rng([seed, offset + 1])
    y = rng.integers(0, classes, size=n).astype(np.int64)
    x = colours[y] + 0.5 * patterns[y] + noise * rng.normal(0.0, 1.0, size=(n, 3, size, size)).astype(np.float32)
    return x.astype(np.float32), y


_LOADERS: dict[str, Callable[..., tuple[np.ndarray, np.ndarray]]] = {
    "cifar10": _load_cifar10,
    "digits": _load_digits,
    "synthetic": _load_synthetic,
}


@functools.lru_cache(maxsize=8)
def _file_digest(path: str, size: int, mtime_ns: int) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def cifar10_source(data_dir: str | Path) -> DataSource:
    """The :class:`DataSource` of a ``cifar-10-batches-py`` folder (or its parent).

    Its identity is a content hash of the batch files (computed once per file per process).

    Raises:
        DatasetError: the folder or a file is missing; the message names the path and the layout.
    """
    folder = _cifar_folder(data_dir)
    files = _cifar_files(folder, "train") + _cifar_files(folder, "test")
    parts = []
    for f in files:
        st = f.stat()
        parts.append(f"{f.name}:{_file_digest(str(f.resolve()), st.st_size, st.st_mtime_ns)}")
    digest = hashlib.sha256("|".join(parts).encode()).hexdigest()[:16]
    return DataSource("cifar10", digest, 10, 3, 32, (("data_dir", str(folder)),))
