"""Scoring many architectures with a predictor in several single-threaded worker processes.

>>> with WorkerPool(pred, workers=2, cls=WeightPredictor) as pool:  # the workers start now
...     scores, _ = pool.scores(archs, batch_size=64)                  # [K, n], as one process gives

On the CPU the work per architecture (build the network at the encoding width, trace it, generate its
weights, run every encoder) is single-threaded Python and small tensor ops: two processes of one thread
each score about twice as many architectures a second as one process of two threads. The predictor is
written once to a temporary safetensors file that every worker loads (no pickled code), with the search
space object passed along so that spaces registered only in this process work too. Each worker takes
chunks of ``batch_size`` architecture strings; the scores come back in input order and equal those of
``workers=1`` (the same graphs, the same encoders, float64 copies of the same float32 outputs).
"""

from __future__ import annotations

import multiprocessing as mp
import os
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from wsnas._lifeline import die_with
from wsnas.predictors._persist import load_as, save

if TYPE_CHECKING:
    from wsnas._arch import Arch
    from wsnas.predictors._predictor import WeightPredictor
    from wsnas.search_spaces import SearchSpace

__all__ = ["WorkerPool", "use_workers"]

_WORKER: WeightPredictor | None = None  # the predictor of this worker process


def _init(path: str, space: SearchSpace, cls: type[WeightPredictor], owner: int) -> None:
    global _WORKER
    import torch

    die_with(owner)  # a killed parent leaves no worker behind

    torch.set_num_threads(1)
    _WORKER = load_as(cls, path, device="cpu", space=space)


def _score(texts: list[str], batch_size: int, with_sizes: bool) -> np.ndarray:
    """``[K, n]`` member scores of ``texts``, and a last row of their size feature ``with_sizes``."""
    assert _WORKER is not None, "worker not initialised"
    archs = [_WORKER.space.from_string(t) for t in texts]
    sizes = np.zeros(len(archs)) if with_sizes else None
    scores = _WORKER._member_scores(archs, batch_size, sizes=sizes)
    return scores if sizes is None else np.vstack([scores, sizes[None]])


def _ready() -> None:
    """A no-op task: submitting one per worker makes the pool start them all at once."""


class WorkerPool:
    """Single-threaded worker processes, each holding a copy of ``pred``; started on construction.

    The workers import torch and load the predictor while the caller goes on (validating its input,
    say): on 2 CPU cores that start-up is a few seconds per process, overlapped rather than waited for.
    Use as a context manager; :meth:`scores` may be called more than once. ``cls`` is the class the
    workers load ``pred``'s file as (``WeightPredictor``; this module imports no predictor class), and
    ``pred`` must be exactly of it.

    Raises:
        ValueError: ``pred`` is not exactly a ``cls`` (a subclass of :class:`WeightPredictor`: its file
            would load as the base class and score differently).
    """

    def __init__(self, pred: WeightPredictor, workers: int, *, cls: type[WeightPredictor]) -> None:
        from concurrent.futures import ProcessPoolExecutor

        if type(pred) is not cls:
            raise ValueError(f"workers > 1 needs a plain WeightPredictor, got {type(pred).__name__}")
        self.pred = pred
        self._tmp = tempfile.TemporaryDirectory(prefix="wsnas-predict-")
        try:
            path = str(save(pred, Path(self._tmp.name) / "predictor.safetensors"))
            ctx = mp.get_context("forkserver" if "forkserver" in mp.get_all_start_methods() else "spawn")
            self._pool = ProcessPoolExecutor(
                max_workers=workers, mp_context=ctx, initializer=_init, initargs=(path, pred.space, cls, os.getpid())
            )
            for _ in range(workers):
                self._pool.submit(_ready)
        except BaseException:
            self._tmp.cleanup()
            raise

    def scores(
        self, archs: Sequence[Arch], *, batch_size: int, progress: bool = False, sizes: bool = False
    ) -> tuple[np.ndarray, np.ndarray | None]:
        """``[K, n]`` standardised member scores of ``archs`` (validated architectures of the predictor's
        space), in input order, and with ``sizes`` their log parameter counts ``[n]`` (else ``None``), read
        by the workers from the specs they build anyway; chunks of ``batch_size`` go to the workers."""
        from tqdm import tqdm

        n = len(archs)
        texts = [self.pred.space.to_string(a) for a in archs]
        starts = list(range(0, n, batch_size))
        out = np.zeros((self.pred.ensemble + (1 if sizes else 0), n))
        bar = tqdm(total=n, desc="predict", unit="arch", disable=not progress, leave=False)
        futures = [self._pool.submit(_score, texts[i : i + batch_size], batch_size, sizes) for i in starts]
        for i, fut in zip(starts, futures):
            out[:, i : i + batch_size] = fut.result()
            bar.update(min(batch_size, n - i))
        bar.close()
        return (out[:-1], out[-1]) if sizes else (out, None)

    def close(self) -> None:
        """Stop the workers and remove the predictor's temporary copy."""
        try:
            self._pool.shutdown(wait=True, cancel_futures=True)
        finally:
            self._tmp.cleanup()

    def __enter__(self) -> WorkerPool:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def use_workers(pred: WeightPredictor, n: int, *, batch_size: int, workers: int) -> int:
    """How many worker processes scoring ``n`` architectures should use: 0 (score in this process) when
    the predictor runs on an accelerator, ``workers < 2``, or everything fits in one chunk."""
    if pred.device.type != "cpu" or workers < 2 or n <= batch_size:
        return 0
    return min(workers, -(-n // batch_size))
