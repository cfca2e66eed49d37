"""A resumable record of the zero-cost proxies that pretraining computes, one row per architecture.

Pretraining's long part is the proxies (about 0.1 CPU-s an NB201 cell, 26 CPU-minutes for all 15,625).
With ``WeightPredictor.pretrain(..., checkpoint=PATH)`` (``wsnas predictor pretrain`` writes ``OUT.ckpt``),
the rows computed so far are written to ``PATH`` every :data:`SAVE_EVERY` seconds and when the computation stops
(Ctrl-C, an error); the same call resumes from them and gives the targets an unstopped run gives. The file is
removed once pretraining completes.

The file is a NumPy ``.npz`` read with ``allow_pickle=False`` (loading runs no code): ``format``, ``key`` (the
task's fingerprint, the batch size, the seed and the weight init the rows were computed with; a file of
other settings is refused and left alone), ``names`` (``SPACE:SIZE:HASH`` of each row) and ``values [m, P]``.
"""

from __future__ import annotations

import os
import time
import zipfile
from pathlib import Path

import numpy as np

from wsnas._atomic import atomic_path
from wsnas._errors import PredictorFileError

__all__ = ["ProxyCache", "SAVE_EVERY", "FORMAT"]

#: seconds between two writes of the file while rows are computed
SAVE_EVERY = 5.0
FORMAT = "wsnas-proxy-checkpoint-1"


class ProxyCache:
    """The proxy rows of ``path`` computed with the settings ``key`` (a string), and the ones added since.

    Raises:
        wsnas.PredictorFileError: ``path`` exists and is not a proxy checkpoint.
        ValueError: ``path`` holds the rows of other settings.
    """

    def __init__(self, path: str | os.PathLike[str], key: str) -> None:
        self.path, self.key = Path(path), key
        self.rows: dict[str, np.ndarray] = {}
        self._saved = time.monotonic()
        self._dirty = False
        if self.path.exists():
            self._load()
        #: rows read from the file (a resumed computation)
        self.resumed = len(self.rows)

    def _load(self) -> None:
        where = repr(str(self.path))
        try:
            with np.load(self.path, allow_pickle=False) as f:
                fmt, key, names, values = str(f["format"][0]), str(f["key"][0]), f["names"], f["values"]
        except (OSError, ValueError, KeyError, IndexError, EOFError, zipfile.BadZipFile) as exc:
            raise PredictorFileError(f"{where} is not a proxy checkpoint ({type(exc).__name__})") from None
        if fmt != FORMAT or values.ndim != 2 or len(names) != len(values):
            raise PredictorFileError(f"{where} is not a proxy checkpoint (format {fmt!r})")
        if key != self.key:
            raise ValueError(
                f"{where} holds the proxies of another pretraining (task, batch, seed or init differ): "
                "remove it or give another checkpoint"
            )
        self.rows = {str(n): np.asarray(v, dtype=np.float64) for n, v in zip(names, values)}

    def get(self, name: str) -> np.ndarray | None:
        """The row of ``name`` (``SPACE:SIZE:HASH``), or ``None``."""
        return self.rows.get(name)

    def put(self, name: str, row: np.ndarray) -> None:
        """Add a row; the file is written when :data:`SAVE_EVERY` seconds have passed since the last write."""
        self.rows[name] = np.asarray(row, dtype=np.float64)
        self._dirty = True
        if time.monotonic() - self._saved >= SAVE_EVERY:
            self.save()

    def save(self) -> None:
        """Write every row to the file now (atomically), if any was added since the last write."""
        if not self._dirty:
            return
        names = np.array(list(self.rows), dtype=str)
        values = np.stack(list(self.rows.values())) if self.rows else np.zeros((0, 0))
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with atomic_path(self.path) as tmp, open(tmp, "wb") as f:
            np.savez(f, format=np.array([FORMAT]), key=np.array([self.key]), names=names, values=values)
        self._saved, self._dirty = time.monotonic(), False

    def remove(self) -> None:
        """Delete the file (the computation it served is done)."""
        self.path.unlink(missing_ok=True)
