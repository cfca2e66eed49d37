"""The multi-space predictor: one predictor fitted on the pools of several spaces' zoos at once
(``WeightPredictor.fit(other_spaces=...)``), scored on each space's held-out test set against the parameter
count and FLOPs of the zoo's own networks (from the zoo records); optionally saved with that table on its card.
The predictor's scores include its size prior (``wsnas.predictors._prior``); the row "ensemble without the size
prior" scores the same members alone.

    python benchmarks/multi_space.py --zoo nb201=FILE --zoo nb101=FILE --zoo macro=FILE \\
        [--pretrained nb201-pretrained.safetensors] [--save multi.safetensors] [--threads 1]

The test set of each space is the hash split of ``benchmarks/transfer.py`` (``--test-fraction`` of the
distinct architectures, by a hash of each, so a growing zoo never moves one across); the predictor never sees
it. The first ``--zoo`` is the predictor's own space (``--pretrained``: its encoder, on a predictor bound to
that space). The shipped ``predictors/_shipped/multi.safetensors`` (``wsnas.predictors.default_predictor``
for spaces without their own) is this script's ``--save`` output. Prints a markdown table, then JSON lines.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from typing import Any

import numpy as np
from transfer import metrics, parse_zoos, split


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--zoo", action="append", required=True, metavar="SPACE=FILE[,FILE]",
                        help="a space and its zoo files (training seeds of one recipe are averaged)")  # fmt: skip
    parser.add_argument("--pretrained", default=None, help="start every member from this pretrained encoder")
    parser.add_argument("--test-fraction", type=float, default=0.5)
    parser.add_argument("--ensemble", type=int, default=5)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--save", default=None, help="write the fitted predictor here")
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    args = parser.parse_args(argv)
    import torch

    from wsnas.predictors import WeightPredictor, default_transfer_size, load, zoo_training_set
    from wsnas.search_spaces import get_space
    from wsnas.training import Zoo

    torch.set_num_threads(args.threads)
    t0 = time.perf_counter()
    zoos = parse_zoos(args.zoo)
    data: dict[str, dict[str, Any]] = {}
    for name, paths in zoos.items():
        space, archs, y, description = zoo_training_set(paths, name, "val_acc")
        records = {r.arch_hash: r for path in paths for r in Zoo.load(path)}
        test, pool = split([a.hash for a in archs], args.test_fraction)
        data[name] = {"archs": archs, "y": y, "test": test, "pool": pool, "zoo": description["zoos"],
                      "params": np.array([records[a.hash].params for a in archs], float),
                      "flops": np.array([records[a.hash].flops for a in archs], float)}  # fmt: skip
    names = list(zoos)
    primary = get_space(names[0])
    pred = WeightPredictor(primary, ensemble=args.ensemble, seed=args.seed, size=default_transfer_size(primary))
    if args.pretrained:
        pre = load(args.pretrained)
        pred = WeightPredictor(primary, encoder=pre.encoder, ensemble=pre.ensemble, seed=pre.seed,
                               size=default_transfer_size(primary))  # fmt: skip
        pred._pretrained, pred.pretraining = pre._pretrained, pre.pretraining
    pool = {n: ([d["archs"][i] for i in d["pool"]], d["y"][d["pool"]]) for n, d in data.items()}
    pred.fit(*pool[names[0]], target_name="val_acc", other_spaces={n: pool[n] for n in names[1:]})
    fit_seconds = time.perf_counter() - t0

    rows = []
    for name, d in data.items():
        on = pred if name == primary.name else pred.transfer(name)
        y_t = d["y"][d["test"]]
        test_archs = [d["archs"][i] for i in d["test"]]
        scores = on.predict(test_archs).score
        prior, on.prior = on.prior, None  # the ensemble alone, for comparison
        alone = on.predict(test_archs).score
        on.prior = prior
        for method, s in (("multi-space encoder", scores), ("ensemble without the size prior", alone),
                          ("params", d["params"][d["test"]]), ("flops", d["flops"][d["test"]])):  # fmt: skip
            rows.append({"space": name, "method": method, "n_pool": len(d["pool"]), "n_test": len(d["test"]),
                         **metrics(y_t, s)})  # fmt: skip
    print("| space | method | pool (trained on) | test | Spearman | Kendall |\n|---|---|---|---|---|---|")
    for r in rows:
        sp, kt = (f"{r[k]:.3f}" if r[k] is not None else "n/a" for k in ("spearman", "kendall"))
        print(f"| {r['space']} | {r['method']} | {r['n_pool']} | {r['n_test']} | {sp} | {kt} |")
    for r in rows:
        print(json.dumps(r))
    settings = {**vars(args), "fit_seconds": round(fit_seconds, 1), "seconds": round(time.perf_counter() - t0, 1)}
    print(json.dumps({"settings": settings}))
    if args.save:
        split_rule = f"benchmarks/transfer.py split, test_fraction {args.test_fraction}"
        zoo_files = [z for d in data.values() for z in d["zoo"]]
        pred.training_data = {**(pred.training_data or {}), "zoos": zoo_files, "test_split": split_rule}
        command = "python benchmarks/multi_space.py " + " ".join(argv or sys.argv[1:])
        pred.evaluation = {"held_out": rows, "command": command}
        pred.save(args.save)
        print(f"# saved to {args.save}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
