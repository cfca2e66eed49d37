"""Fidelity study: how well do cheap training recipes rank NB201 architectures, and what do they cost?

A fixed, seeded sample of NB201 architectures is trained on CIFAR-10 under several recipes (epochs,
resolution, width C, training-subset size, schedule). For each recipe the script reports seconds per
architecture (one core per training process) and the Spearman rank correlation of its validation accuracy
with that of the reference recipe (the longest one). Each recipe's results go to ``OUT/<recipe>.jsonl``
(a wsnas zoo), so the study resumes where it stopped: run it in the background over hours and sessions.

    python benchmarks/fidelity.py --data-dir /work/shared/data/cifar10 --out runs/fidelity --workers 16
    python benchmarks/fidelity.py --data-dir ... --out /tmp/fid --preset tiny --n-archs 3   # smoke test

Prints one JSON line per recipe, then a markdown table.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

#: recipe name -> Task overrides; ``size`` is NB201's (C, N). The reference (longest) recipe is last.
BASE: dict[str, Any] = {"resolution": 16, "subset": 5000, "epochs": 1, "schedule": "cosine", "size": {"C": 8, "N": 1}}
PRESETS: dict[str, dict[str, dict[str, Any]]] = {
    "full": {
        "base_e1_r16_c8_5k": {},
        "e3": {"epochs": 3},
        "r8": {"resolution": 8},
        "r32": {"resolution": 32},
        "c4": {"size": {"C": 4, "N": 1}},
        "c16": {"size": {"C": 16, "N": 1}},
        "subset2k": {"subset": 2000},
        "subset9k": {"subset": 9000},
        "onecycle": {"schedule": "onecycle"},
        "constant": {"schedule": "constant", "lr": 0.02},
        "e3_9k": {"epochs": 3, "subset": 9000},
        "e5_9k": {"epochs": 5, "subset": 9000},
        "e3_c16_9k": {"epochs": 3, "subset": 9000, "size": {"C": 16, "N": 1}},
        # The reference: the longest recipe 2 CPU cores afford for 50 archs (about 140 CPU-s each, 1 h).
        "ref_e10_r32_c8_9k": {"epochs": 10, "resolution": 32, "subset": 9000},
        # A wider reference (C=16, as the long-training truth has), on the sample's first 30 cells
        # (`--recipes ref_e6_r32_c16_9k --n-archs 30`): about 250 CPU-s a cell.
        "ref_e6_r32_c16_9k": {"epochs": 6, "resolution": 32, "subset": 9000, "size": {"C": 16, "N": 1}},
    },
    "tiny": {
        "tiny_e1_r8_c4": {"epochs": 1, "resolution": 8, "subset": 500, "size": {"C": 4, "N": 1}},
        "tiny_e2_r8_c4": {"epochs": 2, "resolution": 8, "subset": 500, "size": {"C": 4, "N": 1}},
    },
}


def _spearman(a: list[float], b: list[float]) -> float | None:
    from scipy.stats import spearmanr

    if len(a) < 3 or len(set(a)) < 2 or len(set(b)) < 2:
        return None
    return float(spearmanr(a, b).statistic)


def run(args: argparse.Namespace) -> list[dict[str, Any]]:
    from wsnas.search_spaces import NB201
    from wsnas.training import Zoo, build_zoo, cifar10, sample_distinct

    recipes = PRESETS[args.preset]
    if args.recipes:
        unknown = sorted(set(args.recipes) - set(recipes))
        if unknown:
            raise SystemExit(f"unknown recipe(s) {unknown}; preset {args.preset!r} has {sorted(recipes)}")
        recipes = {k: v for k, v in recipes.items() if k in args.recipes}
    reference = args.reference or list(PRESETS[args.preset])[-1]
    space, out = NB201(), Path(args.out)
    base = cifar10(args.data_dir, **BASE)
    archs = [a.hash for a in sample_distinct(space, args.n_archs, args.seed)]
    if not args.report_only:
        for name, overrides in recipes.items():
            print(f"== {name}: {overrides}", file=sys.stderr)
            build_zoo(space, base.with_recipe(**overrides), args.n_archs, args.seed, out / f"{name}.jsonl",
                      workers=args.workers)  # fmt: skip

    def accuracies(name: str) -> dict[str, Any]:
        task = base.with_recipe(**PRESETS[args.preset][name])
        recs = [r for r in Zoo.load(out / f"{name}.jsonl") if r.task_fingerprint == task.fingerprint]
        return {r.arch_hash: r for r in recs if r.seed == args.seed and r.arch_hash in archs}

    ref = accuracies(reference) if (out / f"{reference}.jsonl").exists() else {}
    rows = []
    for name in recipes:
        recs = accuracies(name)
        if not recs:
            continue
        common = [h for h in archs if h in recs and h in ref]
        rows.append({
            "recipe": name,
            "overrides": PRESETS[args.preset][name],
            "n": len(recs),
            "s_per_arch": sum(r.train_seconds for r in recs.values()) / len(recs),
            "cpu_s_per_arch": sum(r.cpu_seconds for r in recs.values()) / len(recs),
            "mean_val_acc": sum(r.val_acc for r in recs.values()) / len(recs),
            "spearman_vs_ref": _spearman([recs[h].val_acc for h in common], [ref[h].val_acc for h in common]),
            "n_common": len(common),
            "reference": reference,
        })  # fmt: skip
    return rows


def markdown(rows: list[dict[str, Any]]) -> str:
    lines = [
        "| recipe | n | CPU s/arch | wall s/arch | mean val acc | Spearman vs ref |",
        "| --- | ---: | ---: | ---: | ---: | ---: |",
    ]
    for r in rows:
        rho = "n/a" if r["spearman_vs_ref"] is None else f"{r['spearman_vs_ref']:.3f} ({r['n_common']})"
        lines.append(
            f"| {r['recipe']} | {r['n']} | {r['cpu_s_per_arch']:.2f} | {r['s_per_arch']:.2f} "
            f"| {r['mean_val_acc']:.4f} | {rho} |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data-dir", required=True, help="folder holding cifar-10-batches-py")
    parser.add_argument("--out", required=True, help="folder for one zoo file per recipe (resumable)")
    parser.add_argument("--n-archs", type=int, default=50)
    parser.add_argument("--seed", type=int, default=0, help="seeds the architecture sample and training")
    parser.add_argument("--workers", type=int, default=None, help="training processes (default: all cores)")
    parser.add_argument("--preset", choices=sorted(PRESETS), default="full")
    parser.add_argument("--recipes", nargs="*", help="run only these recipes of the preset")
    parser.add_argument("--reference", help="recipe to correlate against (default: the preset's last)")
    parser.add_argument("--report-only", action="store_true", help="train nothing; report what the files hold")
    rows = run(parser.parse_args(argv))
    for row in rows:
        print(json.dumps(row, sort_keys=True))
    print()
    print(markdown(rows))


if __name__ == "__main__":
    main()
