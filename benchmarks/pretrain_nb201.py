"""Pretrain the NB201 weight encoder on every cell's zero-cost proxies (no labels); write the pretrained file.

    python benchmarks/pretrain_nb201.py --data-dir ../shared/data/cifar10 --out nb201-pretrained.safetensors

The proxies of all 15,625 cells (C=8, weights generated with seed 0, one batch of 64 CIFAR-10 training
images at 16x16 from the faithful zoo's recipe) take about 26 CPU-minutes; ``--cache FILE.npz`` keeps them
(written when missing, read when present: ``zc`` [15625, 7], ``archs``, ``names``). The regression itself
takes about 3 minutes an epoch on 2 cores. The file is a pretrained, unfitted predictor: ``load`` it and
``fit`` (or ``from_zoo``-style ``fit``) to rank.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np


def main(argv: list[str] | None = None) -> None:
    import torch

    from wsnas.predictors import WeightPredictor, costless_targets, save
    from wsnas.search_spaces import NB201
    from wsnas.training import cifar10

    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data-dir", required=True, help="folder holding cifar-10-batches-py")
    ap.add_argument("--out", required=True, help="the pretrained predictor file to write")
    ap.add_argument("--cache", help="npz of the proxies (read when present, written when missing)")
    ap.add_argument("--epochs", type=int, default=5)
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    space = NB201()
    archs = list(space.enumerate())
    task = cifar10(args.data_dir, resolution=16, subset=9000, epochs=3, schedule="cosine", size={"C": 16, "N": 1})
    t0 = time.time()
    if args.cache and Path(args.cache).is_file():
        data = np.load(args.cache, allow_pickle=False)
        order = {s: i for i, s in enumerate(data["archs"].tolist())}
        raw = data["zc"][[order[space.to_string(a)] for a in archs]]
        names = [str(n) for n in data["names"]]
    else:
        raw, names = costless_targets(space, archs, task=task, size={"C": 8, "N": 1}, seed=0)
        if args.cache:
            np.savez(args.cache, zc=raw, archs=np.array([space.to_string(a) for a in archs]), names=np.array(names))
    t1 = time.time()
    pred = WeightPredictor(space, ensemble=5, seed=0, size={"C": 2, "N": 1})  # the shipped encoding width
    pred.pretrain(archs, raw, names, epochs=args.epochs)
    assert pred.pretraining is not None
    pred.pretraining.update({"source": "zero-cost proxies", "task": task.name, "task_fingerprint": task.fingerprint,
                             "proxy_size": {"C": 8, "N": 1}, "proxy_batch": 64})  # fmt: skip
    save(pred, args.out)
    print(f"proxies {t1 - t0:.0f} s, pretraining {time.time() - t1:.0f} s; held-out Spearman per target:")
    for name, rho in zip(pred.pretraining["targets"], pred.pretraining["held_out_spearman"]):
        print(f"  {name}: {rho:.3f}")


if __name__ == "__main__":
    main()
