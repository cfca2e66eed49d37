"""Search efficiency: real evaluations needed to reach a zoo's top 1%, wsnas vs plain Optuna TPE vs random.

The zoo (really-trained NB201 cells) is the ground truth: a search evaluates architectures by looking
them up with :class:`wsnas.TableEvaluator` (the zoo written as a CSV), so only the zoo's cells are
candidates. A search "reaches the top 1%" at the first real evaluation whose accuracy is at least the
zoo table's 99th percentile. Three methods share the table, the budget cap and the seeds:

* ``wsnas``: TPE proposals screened by a weight predictor, the budget spent on the best (UCB), the
  predictor fine-tuned online;
* ``tpe``: plain Optuna TPE (``predictor=None``);
* ``random``: Optuna's random sampler (``predictor=None``).

By default the zoo is split in two halves (seeded): the predictor is fitted on one half, the search runs on
the other, so the predictor never saw the cells it ranks. ``--predictor FILE`` uses a given predictor on the
whole zoo instead (a predictor trained on that same zoo makes the comparison unfair: the output says so).

Prints one JSON line per (method, seed) and one summary line per method (median, quartiles, how often the
top 1% was reached within the cap). ``--quick``: 3 seeds and a cap of 60. Defaults: 10 seeds, a cap of 100.

    python benchmarks/search_efficiency.py [--zoo ZOO.jsonl] [--seeds 10] [--cap 100] [--quick]
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ZOO = Path(__file__).resolve().parents[1] / "predictors" / "_shipped" / "zoos" / "nb201-cifar10-onecycle.jsonl"


def _write_table(records: list, path: Path) -> None:
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["arch", "val_acc"])
        for r in records:
            w.writerow([r.arch, r.val_acc])


def _fit_predictor(space, records: list, seed: int):
    from wsnas.predictors import EncoderConfig, WeightPredictor

    pred = WeightPredictor(
        space, encoder=EncoderConfig(hidden=16, layers=2), ensemble=2, size={"C": 2, "N": 1}, seed=seed
    )
    return pred.fit([r.arch for r in records], [r.val_acc for r in records], epochs=20, patience=6, progress=False)


def _evals_to_reach(history: list, threshold: float) -> int | None:
    for i, r in enumerate(history, start=1):
        if r.state == "COMPLETE" and r.values["accuracy"] >= threshold - 1e-12:
            return i
    return None


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--zoo", default=str(ZOO), help="zoo file (JSON lines) used as the table")
    parser.add_argument("--seeds", type=int, default=10)
    parser.add_argument("--cap", type=int, default=100, help="real evaluations per search at most")
    parser.add_argument("--predictor", default=None, help="a predictor file (default: fit one on half the zoo)")
    parser.add_argument("--methods", default="wsnas,tpe,random")
    parser.add_argument("--fine-tune-epochs", type=int, default=1, help="wsnas: epochs of each online fine-tuning")
    parser.add_argument("--quick", action="store_true", help="3 seeds, a cap of 60")
    args = parser.parse_args(argv)
    if args.quick:
        args.seeds, args.cap = min(args.seeds, 3), min(args.cap, 60)

    import optuna
    import torch

    import wsnas
    from wsnas.search_spaces import get_space

    torch.set_num_threads(1)
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    records = [r for r in wsnas.Zoo.load(args.zoo) if not r.diverged]
    space = get_space(records[0].space)
    start = time.perf_counter()
    if args.predictor is None:
        order = np.random.default_rng(0).permutation(len(records))
        half = len(records) // 2
        train, table_records = [records[i] for i in order[:half]], [records[i] for i in order[half:]]
        pred = _fit_predictor(space, train, 0)
        setup = f"predictor fitted on {len(train)} zoo cells, search table = the other {len(table_records)}"
    else:
        from wsnas.predictors import load

        pred, table_records = load(args.predictor), records
        setup = f"predictor {args.predictor} on the whole zoo (unfair if it was trained on this zoo)"
    accs = sorted((r.val_acc for r in table_records), reverse=True)
    k = max(1, math.ceil(0.01 * len(accs)))
    threshold = accs[k - 1]
    print(json.dumps({"setup": setup, "table": len(accs), "top1pct_threshold": threshold, "top1pct_count": k,
                      "cap": args.cap, "seeds": args.seeds, "predictor_fit_s": round(time.perf_counter() - start, 1)}),
          flush=True)  # fmt: skip
    results: dict[str, list[int | None]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        table = Path(tmp) / "table.csv"
        _write_table(table_records, table)
        for method in args.methods.split(","):
            for seed in range(args.seeds):
                t0 = time.perf_counter()
                res = wsnas.search(
                    space,
                    evaluator=wsnas.TableEvaluator(table, "arch", "val_acc"),
                    eval_budget=args.cap,
                    predictor=pred if method == "wsnas" else None,
                    sampler="random" if method == "random" else "tpe",
                    seed=seed,
                    fine_tune_epochs=args.fine_tune_epochs,
                    output_dir=Path(tmp) / f"{method}-{seed}",
                    tracking=False,  # a throwaway MLflow store per search would only add seconds
                    progress=False,
                )
                n = _evals_to_reach(res.history, threshold)
                results.setdefault(method, []).append(n)
                best = max(r.values["accuracy"] for r in res.history if r.state == "COMPLETE")
                print(json.dumps({"method": method, "seed": seed, "evals_to_top1pct": n, "best": best,
                                  "seconds": round(time.perf_counter() - t0, 1)}), flush=True)  # fmt: skip
    for method, ns in results.items():
        filled = np.array([n if n is not None else args.cap + 1 for n in ns], dtype=float)
        q1, med, q3 = np.percentile(filled, [25, 50, 75])
        summary = {"summary": method, "median_evals": float(med), "q1": float(q1), "q3": float(q3),
                   "reached": f"{sum(n is not None for n in ns)}/{len(ns)}",
                   "note": f"not reached within {args.cap} counts as {args.cap + 1}"}  # fmt: skip
        print(json.dumps(summary), flush=True)


if __name__ == "__main__":
    sys.exit(main())
