"""Fidelity report for zoo files of any space: how well does each recipe rank the architectures a reference ranks?

Each ``--zoo NAME=PATH`` is a zoo file (``wsnas zoo build``) of one recipe, or of one training seed of a recipe;
``--ref NAME`` names the reference among them (the longest recipe). For every file the report gives the number of
architectures, the CPU seconds a network took, the median validation accuracy, and on the architectures it shares
with the reference (by hash) the Spearman of its validation accuracy with the reference's, with the standard
error ``(1 - rho^2) / sqrt(n - 1)``. ``--pair A,B`` adds the Spearman of two files on their common architectures
(two training seeds of one recipe: the label noise floor). The last columns are the Spearman of the reference's
accuracy with each network's parameter count and FLOPs, and with its layer count where the space's strings
name layers (MacroCNN: one ``k`` per layer).

    python benchmarks/fidelity_report.py --ref e20 --zoo e20=benchmarks/results/fidelity-macro/e20.jsonl \
        --zoo e10=benchmarks/results/fidelity-macro/e10.jsonl \
        --zoo e3=predictors/_shipped/zoos/macro-cifar10-e3w25.jsonl --pair e3,e3-seed1 ...

Prints a markdown table, then one JSON line per file and per pair.
"""

from __future__ import annotations

import argparse
import json
import math
from typing import Any

import numpy as np


def _spearman(a: list[float], b: list[float]) -> float | None:
    """:func:`wsnas.predictors.spearman`, with ``None`` (JSON's null) where it gives ``nan``."""
    from wsnas.predictors import spearman

    rho = spearman(np.asarray(a, dtype=float), np.asarray(b, dtype=float))
    return None if math.isnan(rho) else rho


def _se(rho: float | None, n: int) -> float | None:
    return None if rho is None or n < 3 else (1 - rho**2) / math.sqrt(n - 1)


def _load(path: str) -> dict[str, dict[str, Any]]:
    out: dict[str, dict[str, Any]] = {}
    with open(path) as f:
        for line in f:
            if line.strip():
                rec = json.loads(line)
                if not rec.get("diverged"):
                    out[rec["arch_hash"]] = rec
    return out


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--zoo", action="append", required=True, metavar="NAME=PATH", help="a recipe's zoo file")
    parser.add_argument("--ref", required=True, help="the NAME of the reference file")
    parser.add_argument("--pair", action="append", default=[], metavar="A,B", help="two files to correlate")
    args = parser.parse_args(argv)
    zoos: dict[str, dict[str, dict[str, Any]]] = {}
    for item in args.zoo:
        name, sep, path = item.partition("=")
        if not sep:
            parser.error(f"--zoo wants NAME=PATH, got {item!r}")
        zoos[name] = _load(path)
    if args.ref not in zoos:
        parser.error(f"--ref {args.ref!r} is none of the --zoo names {sorted(zoos)}")
    ref = zoos[args.ref]
    rows = []
    for name, recs in zoos.items():
        common = [h for h in ref if h in recs]
        rho = _spearman([recs[h]["val_acc"] for h in common], [ref[h]["val_acc"] for h in common])
        rows.append({
            "recipe": name, "n": len(recs), "n_common": len(common), "spearman_vs_ref": rho,
            "se": _se(rho, len(common)),
            "cpu_s_per_arch": float(np.median([r["cpu_seconds"] for r in recs.values()])),
            "median_val_acc": float(np.median([r["val_acc"] for r in recs.values()])),
        })  # fmt: skip
    pairs = []
    for item in args.pair:
        a, _, b = item.partition(",")
        if a not in zoos or b not in zoos:
            parser.error(f"--pair {item!r}: both must be --zoo names")
        common = [h for h in zoos[a] if h in zoos[b]]
        rho = _spearman([zoos[a][h]["val_acc"] for h in common], [zoos[b][h]["val_acc"] for h in common])
        pairs.append({"pair": [a, b], "n_common": len(common), "spearman": rho, "se": _se(rho, len(common))})
    acc = [r["val_acc"] for r in ref.values()]
    sizes = {key: _spearman([float(r[key]) for r in ref.values()], acc) for key in ("params", "flops")}
    layers = [r["arch"].count("k") for r in ref.values()]
    if len(set(layers)) > 1:
        sizes["layers"] = _spearman([float(v) for v in layers], acc)

    def fmt(v: float | None) -> str:
        return "n/a" if v is None else f"{v:.3f}"

    print("| recipe | archs | CPU s/arch (median) | median val acc | Spearman vs ref (common) |")
    print("| --- | ---: | ---: | ---: | ---: |")
    for r in rows:
        print(f"| {r['recipe']} | {r['n']} | {r['cpu_s_per_arch']:.1f} | {r['median_val_acc']:.3f} "
              f"| {fmt(r['spearman_vs_ref'])} ± {fmt(r['se'])} ({r['n_common']}) |")  # fmt: skip
    for p in pairs:
        print(f"\n{p['pair'][0]} vs {p['pair'][1]}: {fmt(p['spearman'])} ± {fmt(p['se'])} ({p['n_common']} archs)")
    print("\nreference accuracy vs " + ", ".join(f"{k} {fmt(v)}" for k, v in sizes.items()))
    for r in rows:
        print(json.dumps(r, sort_keys=True))
    for p in pairs:
        print(json.dumps(p, sort_keys=True))
    print(json.dumps({"reference": args.ref, "size_spearman": sizes}, sort_keys=True))


if __name__ == "__main__":
    main()
