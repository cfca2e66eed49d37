"""`wsnas predict` over a whole search space, timed end to end as a user runs it.

    python benchmarks/bench_predict.py [--space nb201] [--predictor P] [--workers N] [--limit N] [--repeat 1]
    python benchmarks/bench_predict.py --space macro --sample 200 [--seed 0]

Writes every architecture string of the space (or the first --limit, or --sample distinct ones drawn with
--seed: for spaces too large to enumerate, such as NB101 and MacroCNN) to a file, runs
``wsnas predict --space SPACE --input FILE --output CSV`` in a fresh process (interpreter start, imports,
predictor load, parsing, building, encoding and writing included) and prints one JSON line per run:
wall seconds, architectures per second and the settings. The issue's target is
all 15,625 NB201 cells in under 60 s on 2 CPU cores.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--space", default="nb201")
    parser.add_argument("--predictor", default=None, help="predictor file (default: the shipped one)")
    parser.add_argument("--workers", type=int, default=None, help="passed to wsnas predict (default: its own)")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--limit", type=int, default=None, help="score only the first N architectures")
    parser.add_argument("--sample", type=int, default=None, help="score N distinct architectures drawn with --seed")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--repeat", type=int, default=1)
    args = parser.parse_args(argv)

    from wsnas.search_spaces import get_space
    from wsnas.training import sample_distinct

    space = get_space(args.space)
    if args.sample is not None:
        texts = [space.to_string(a) for a in sample_distinct(space, args.sample, args.seed)]
    else:
        texts = [space.to_string(a) for a in space.enumerate()]
    if args.limit is not None:
        texts = texts[: args.limit]
    exe = Path(sys.executable).with_name("wsnas")
    with tempfile.TemporaryDirectory(prefix="wsnas-bench-") as tmp:
        src, out = Path(tmp) / "archs.txt", Path(tmp) / "scores.csv"
        src.write_text("\n".join(texts) + "\n", encoding="utf-8")
        cmd = [str(exe), "predict", "--space", args.space, "--input", str(src), "--output", str(out), "--quiet"]
        cmd += ["--batch-size", str(args.batch_size)]
        if args.predictor:
            cmd += ["--predictor", args.predictor]
        if args.workers:
            cmd += ["--workers", str(args.workers)]
        for run in range(args.repeat):
            t0 = time.perf_counter()
            subprocess.run(cmd, check=True)
            wall = time.perf_counter() - t0
            with out.open(newline="", encoding="utf-8") as f:
                rows = list(csv.DictReader(f))
            if [r["arch"] for r in rows] != texts:
                raise SystemExit("wsnas predict did not return every architecture in input order")
            print(json.dumps({
                "bench": "predict", "space": args.space, "n": len(texts), "run": run, "wall_s": round(wall, 2),
                "archs_per_s": round(len(texts) / wall, 1), "workers": args.workers,
                "batch_size": args.batch_size, "predictor": args.predictor or "shipped", "sample": args.sample,
                "cores": len(os.sched_getaffinity(0)), "machine": platform.machine(),
            }), flush=True)  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
