"""Pruning benchmark: the same real-training search on CIFAR-10 with and without an Optuna pruner.

Each search trains NB201 cells (``-s C=8 -s N=1`` by default) for a few epochs on a CIFAR-10 subset, with
the same sampler seed and evaluation budget, once per pruner. A TrainEvaluator reports the validation
accuracy after every epoch; a pruner stops the trainings whose curves trail the others'. Printed per
pruner: wall and CPU seconds of the search (this process: training is single-threaded, so CPU seconds
are the compute a search costs however busy the machine is), epochs trained in all, evaluations pruned,
and the best validation accuracy found among the fully trained ones. The same search as a command:

    wsnas search --evaluator train:cifar10 --data-dir DIR -s C=8 -s N=1 --epochs 4 --resolution 16 \\
        --subset 2000 --eval-budget 16 --predictor none --pruner median

    nice -n 10 python benchmarks/pruning.py --data-dir ../shared/data/cifar10   # 9-10 min on 2 shared cores
    python benchmarks/pruning.py --data-dir ... --budget 4 --epochs 2 --subset 500        # smoke test
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path
from typing import Any


def run(pruner: str, args: argparse.Namespace, out: Path) -> dict[str, Any]:
    """One search with ``pruner``; its figures."""
    import optuna

    import wsnas
    from wsnas._search._store import is_token

    task = wsnas.cifar10(args.data_dir, epochs=args.epochs, resolution=args.resolution, subset=args.subset,
                         val_size=args.val_size, size={"C": args.C, "N": args.N})  # fmt: skip
    task.prepare()  # the data is loaded once per process, before the clock starts
    ev = wsnas.TrainEvaluator(task, seed=args.train_seed)
    wall, cpu = time.perf_counter(), time.process_time()
    res = wsnas.search("nb201", evaluator=ev, eval_budget=args.budget, predictor=args.predictor, pruner=pruner,
                       seed=args.seed, output_dir=out / pruner, tracking=False, progress=False)  # fmt: skip
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    tokens = [t for t in res.study.get_trials(deepcopy=False) if is_token(t)]
    done = [t for t in tokens if t.state == optuna.trial.TrialState.COMPLETE]
    pruned = [t for t in tokens if t.user_attrs.get("outcome") == "pruned"]
    return {
        "pruner": pruner,
        "evaluations": len(res.history),
        "pruned": len(pruned),
        "epochs_trained": sum(len(t.intermediate_values) for t in done + pruned),
        "epochs_full": args.budget * args.epochs,
        "wall_s": round(wall, 1),
        "cpu_s": round(cpu, 1),
        "best_accuracy": None if res.best is None else round(res.best.values["accuracy"], 4),
        "best_arch": None if res.best is None else res.best.arch,
        "mean_complete_accuracy": round(sum(t.value for t in done) / len(done), 4) if done else None,
    }


def _warm_up(args: argparse.Namespace, out: Path) -> None:
    """One untimed one-evaluation search, so that no timed search pays for first imports and caches."""
    import wsnas

    task = wsnas.cifar10(args.data_dir, epochs=1, resolution=args.resolution, subset=args.subset,
                         val_size=args.val_size, size={"C": args.C, "N": args.N})  # fmt: skip
    wsnas.search("nb201", evaluator=wsnas.TrainEvaluator(task), eval_budget=1, predictor=args.predictor,
                 pruner="median", output_dir=out / "warm-up", tracking=False, progress=False)  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data-dir", required=True, help="CIFAR-10 folder (cifar-10-batches-py or its parent).")
    p.add_argument("--pruners", default="none,median,halving,hyperband", help="Comma-separated pruner names.")
    p.add_argument("--budget", type=int, default=16, help="Evaluations per search (pruned ones included).")
    p.add_argument("--epochs", type=int, default=4)
    p.add_argument("--resolution", type=int, default=16)
    p.add_argument("--subset", type=int, default=2000, help="Training images.")
    p.add_argument("--val-size", type=int, default=1000, help="Validation images.")
    p.add_argument("--C", type=int, default=8, help="NB201 width.")
    p.add_argument("--N", type=int, default=1, help="NB201 cells per stage.")
    p.add_argument("--predictor", default=None, help="None: plain Optuna (TPE); 'default': the shipped predictor.")
    p.add_argument("--seed", type=int, default=0, help="Sampler seed.")
    p.add_argument("--train-seed", type=int, default=0)
    p.add_argument("--out", default=None, help="Folder of the studies (default: a temporary one).")
    args = p.parse_args(argv)

    import torch

    torch.set_num_threads(1)
    os.environ.setdefault("WSNAS_TRACKING", "0")
    out = Path(args.out) if args.out else Path(tempfile.mkdtemp(prefix="wsnas-pruning-"))
    print(f"# pruning benchmark: nb201 C={args.C} N={args.N}, CIFAR-10 {args.subset} images at {args.resolution}px, "
          f"{args.epochs} epochs, {args.budget} evaluations, sampler seed {args.seed}, predictor {args.predictor}; "
          f"{os.cpu_count()} CPUs, {platform.machine()}, torch {torch.__version__}", flush=True)  # fmt: skip
    _warm_up(args, out)
    rows = []
    for pruner in [s.strip() for s in args.pruners.split(",") if s.strip()]:
        row = run(pruner, args, out)
        rows.append(row)
        print(json.dumps(row), flush=True)
    base = next((r for r in rows if r["pruner"] == "none"), None)
    print("\n| pruner | evaluations (pruned) | epochs trained | wall s | CPU s | CPU vs none | best acc |")
    print("|---|---|---|---|---|---|---|")
    for r in rows:
        rel = f"{r['cpu_s'] / base['cpu_s']:.2f}x" if base and base["cpu_s"] > 0 else "-"
        print(f"| {r['pruner']} | {r['evaluations']} ({r['pruned']}) | {r['epochs_trained']}/{r['epochs_full']} | "
              f"{r['wall_s']} | {r['cpu_s']} | {rel} | {r['best_accuracy']} |")  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
