"""Pretrain one encoder, without labels, on the zero-cost proxies of several spaces at once
(``WeightPredictor.pretrain(other_spaces=...)``): the encoder of the shipped multi-space predictor.

    python benchmarks/pretrain_spaces.py --proxies nb201=nb201-zc-all.npz --proxies nb101=nb101-zc.npz:2000 \\
        --proxies macro=macro-zc.npz:600 --proxy-size macro=width_mult=0.125 --limit nb201=5000 \\
        --data-dir ../shared/data/cifar10 --epochs 15 --out multi-pretrained.safetensors

Each ``--proxies SPACE=FILE[:N]`` names a cache of that space's proxies (``archs``: strings, ``zc``: ``[n, 7]``,
``names``; the format ``benchmarks/pretrain_nb201.py --cache`` writes). A missing file is computed first, on
``N`` distinct architectures drawn with seed 1 (at ``--proxy-size`` or the space's ``proxy_size``, weights
from seed 0, one CIFAR-10 batch of the default recipe) and written in chunks, so a stopped run resumes. ``--limit
SPACE=K`` uses the first K cached architectures. The first ``--proxies`` is the predictor's own space.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np


def cached(
    space_name: str, spec: str, data_dir: str | None, size: dict | None = None
) -> tuple[list[str], np.ndarray, list[str]]:
    """``(archs, values [n, P], names)`` of the cache ``FILE[:N]``, computing (and writing) what is missing."""
    from wsnas.predictors._pretrain import costless_targets
    from wsnas.search_spaces import get_space
    from wsnas.training import get_task, sample_distinct

    path, _, count = spec.partition(":")
    space = get_space(space_name)
    have: dict[str, np.ndarray] = {}
    if Path(path).is_file():
        data = np.load(path, allow_pickle=False)
        have = {k: data[k] for k in data.files}
    if not count or len(have.get("archs", [])) >= int(count):
        return [str(a) for a in have["archs"]], np.asarray(have["zc"], float), [str(n) for n in have["names"]]
    task = get_task("cifar10", data_dir=data_dir) if data_dir else None
    archs = sample_distinct(space, int(count), 1)
    done = len(have.get("archs", []))
    values = [have["zc"]] if done else []
    names: list[str] = [str(n) for n in have.get("names", [])]
    for i in range(done, len(archs), 100):
        part, names = costless_targets(space, archs[i : i + 100], task=task, size=size, seed=0, progress=False)
        values.append(part)
        n = i + len(part)
        np.savez(path, archs=np.array([space.to_string(a) for a in archs[:n]]), zc=np.concatenate(values),
                 names=np.array(names))  # fmt: skip
        print(f"# {space_name}: proxies of {n} of {len(archs)}", file=sys.stderr, flush=True)
    return [space.to_string(a) for a in archs], np.concatenate(values), names


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--proxies", action="append", required=True, metavar="SPACE=FILE[:N]")
    parser.add_argument("--limit", action="append", default=[], metavar="SPACE=K")
    parser.add_argument("--proxy-size", action="append", default=[], metavar="SPACE=K=V[,K=V]",
                        help="the width of proxies still to compute (default: proxy_size)")  # fmt: skip
    parser.add_argument("--data-dir", default=None, help="CIFAR-10 folder for proxies still to compute")
    parser.add_argument("--epochs", type=int, default=15)
    parser.add_argument("--ensemble", type=int, default=5)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", required=True)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args(argv)
    import torch

    from wsnas.predictors import WeightPredictor, default_transfer_size
    from wsnas.search_spaces import get_space

    torch.set_num_threads(args.threads)
    t0 = time.perf_counter()
    limits = {k: int(v) for k, v in (item.split("=", 1) for item in args.limit)}
    sizes = {}
    for item in args.proxy_size:
        name, spec = item.split("=", 1)
        sizes[name] = {k: float(v) if "." in v else int(v) for k, v in (kv.split("=", 1) for kv in spec.split(","))}
    sets = {}
    for item in args.proxies:
        name, spec = item.split("=", 1)
        archs, values, names = cached(name, spec, args.data_dir, sizes.get(name))
        k = limits.get(name, len(archs))
        sets[name] = (archs[:k], values[:k], names)
    (primary, (archs, values, names)), *others = sets.items()
    if any(o[2] != names for _, o in others):
        raise SystemExit("error: every cache must hold the same proxies in the same order")
    space = get_space(primary)
    pred = WeightPredictor(space, ensemble=args.ensemble, seed=args.seed, size=default_transfer_size(space))
    pred.pretrain(archs, values, names, epochs=args.epochs,
                  other_spaces={n: (a, v) for n, (a, v, _) in others})  # fmt: skip
    info = pred.pretraining
    print(f"pretrained on {info['spaces'] if 'spaces' in info else {primary: len(archs)}} in "
          f"{time.perf_counter() - t0:.0f} s; held-out Spearman per proxy: "
          + ", ".join(f"{t} {r:.3f}" for t, r in zip(info["targets"], info["held_out_spearman"]) if r is not None))
    pred.save(args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
