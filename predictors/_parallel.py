"""Scoring many architectures with a predictor in several single-threaded worker processes.

>>> scores = predict_parallel(pred, archs, batch_size=256, workers=2)   # [K, n], as one process gives

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
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from wsnas._arch import Arch
    from wsnas.predictors._predictor import WeightPredictor
    from wsnas.search_spaces import SearchSpace

__all__ = ["predict_parallel"]

_WORKER: WeightPredictor | None = None  # the predictor of this worker process


def _init(path: str, space: SearchSpace) -> None:
    global _WORKER
    import torch

    from wsnas.predictors._persist import load

    torch.set_num_threads(1)
    _WORKER = load(path, device="cpu", space=space)


def _score(texts: list[str], batch_size: int) -> np.ndarray:
    assert _WORKER is not None, "worker not initialised"
    archs = [_WORKER.space.from_string(t) for t in texts]
    return _WORKER._member_scores(archs, batch_size)


def predict_parallel(
    pred: WeightPredictor, archs: Sequence[Arch], *, batch_size: int, workers: int, progress: bool = False
) -> np.ndarray:
    """``[K, n]`` standardised member scores of ``archs`` (validated architectures of ``pred.space``).

    Falls back to one process when the predictor runs on an accelerator or there is one chunk only.

    Raises:
        ValueError: ``pred`` is a subclass of :class:`WeightPredictor` (its file would load as the base
            class and score differently).
    """
    from concurrent.futures import ProcessPoolExecutor

    from tqdm import tqdm

    from wsnas.predictors._persist import save
    from wsnas.predictors._predictor import WeightPredictor

    if type(pred) is not WeightPredictor:
        raise ValueError(f"workers > 1 needs a plain WeightPredictor, got {type(pred).__name__}")
    n = len(archs)
    if pred.device.type != "cpu" or workers < 2 or n <= batch_size:
        return pred._member_scores(archs, batch_size, progress)
    texts = [pred.space.to_string(a) for a in archs]
    starts = list(range(0, n, batch_size))
    out = np.zeros((pred.ensemble, n))
    ctx = mp.get_context("forkserver" if "forkserver" in mp.get_all_start_methods() else "spawn")
    bar = tqdm(total=n, desc="predict", unit="arch", disable=not progress, leave=False)
    with tempfile.TemporaryDirectory(prefix="wsnas-predict-") as tmp:
        path = str(save(pred, Path(tmp) / "predictor.safetensors"))
        with ProcessPoolExecutor(
            max_workers=min(workers, len(starts)), mp_context=ctx, initializer=_init, initargs=(path, pred.space)
        ) as pool:
            futures = [pool.submit(_score, texts[i : i + batch_size], batch_size) for i in starts]
            for i, fut in zip(starts, futures):
                out[:, i : i + batch_size] = fut.result()
                bar.update(min(batch_size, n - i))
    bar.close()
    return out
