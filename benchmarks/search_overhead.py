"""The fixed costs of a search with a cheap evaluator: wall and CPU seconds of ``wsnas search`` per case.

    nice -n 5 python benchmarks/search_overhead.py [--budgets 6,50] [--objectives accuracy] [--repeat 2] [--out FILE]
    nice -n 5 python benchmarks/search_overhead.py --profile --budgets 6   # cProfile of one case, in-process

The evaluator is a table (no training): ``arch,accuracy`` rows made in a temporary folder from the
project's own NB201 zoo (``predictors/_shipped/zoos/nb201-cifar10-e3c16.jsonl``, ``accuracy = val_acc``),
so what is timed is everything around the evaluations: start-up, screening, FLOP counting, fine-tuning,
MLflow. Each case is one ``wsnas search`` process (the time a user waits, imports included) in a fresh
output folder: NB201, ``eval_budget`` 6 and 50, the shipped predictor and ``--predictor none``, tracking to
a SQLite MLflow store in the temporary folder and ``--no-tracking``; then the same command once more on a
finished search (``rerun``: it only prints the result). Prints one line per case (wall and CPU seconds,
the least of ``--repeat`` runs: on a shared machine the CPU figure is the steadier) and a JSON line.
Nothing is fetched from a network.
"""

from __future__ import annotations

import argparse
import cProfile
import io
import json
import os
import pstats
import re
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
ZOO = ROOT / "predictors" / "_shipped" / "zoos" / "nb201-cifar10-e3c16.jsonl"


def make_table(folder: Path) -> Path:
    """``folder/nb201-table.csv``: the zoo's cells as ``arch,accuracy`` (accuracy = the zoo's val_acc)."""
    out = folder / "nb201-table.csv"
    lines = ["arch,accuracy"]
    with open(ZOO, encoding="utf-8") as f:
        for line in f:
            row = json.loads(line)
            if row.get("val_acc") is not None and not row.get("diverged"):
                lines.append(f"\"{row['arch']}\",{float(row['val_acc'])!r}")
    out.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return out


def search_args(table: Path, budget: int, predictor: str, tracking: bool, out: Path, objectives: str) -> list[str]:
    """The ``wsnas search`` arguments of one case (its output folder ``out``, its MLflow store inside it)."""
    track = ["--tracking-uri", f"sqlite:///{out / 'mlflow.db'}"] if tracking else ["--no-tracking"]
    return ["search", "--space", "nb201", "--evaluator", f"table:{table}:arch:accuracy", "--eval-budget",
            str(budget), "--predictor", predictor, "--objectives", objectives, "--seed", "0", "--output-dir",
            str(out), *track, "--quiet", "--json"]  # fmt: skip


def timed(args: list[str]) -> tuple[float, float, dict]:
    """Wall seconds and CPU seconds (user + system, its child processes included) of ``python -m wsnas.cli
    ARGS``, and its JSON document. On a shared machine the CPU figure is the steadier one."""
    env = {**os.environ, "PYTHONWARNINGS": "ignore"}
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    proc = subprocess.run([sys.executable, "-m", "wsnas.cli", *args], capture_output=True, text=True, env=env,
                          cwd=ROOT)  # -m puts the working directory first on sys.path: this checkout's wsnas runs
    seconds = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = after.ru_utime - before.ru_utime + after.ru_stime - before.ru_stime
    if proc.returncode != 0:
        raise SystemExit(f"wsnas {' '.join(args)} failed ({proc.returncode}):\n{proc.stderr[-3000:]}")
    return seconds, cpu, json.loads(proc.stdout)


def profile(args: list[str], top: int) -> None:
    """cProfile of the search in this process, in CPU time (steady on a shared machine): the ``top``
    functions by cumulative time."""
    from click.testing import CliRunner

    from wsnas.cli import main

    prof = cProfile.Profile(time.process_time)
    start = time.process_time()
    prof.enable()
    res = CliRunner().invoke(main, args)
    prof.disable()
    print(f"# {time.process_time() - start:.1f} CPU s in-process (imports before it not counted)")
    if res.exit_code != 0:
        raise SystemExit(res.output)
    buf = io.StringIO()
    pstats.Stats(prof, stream=buf).sort_stats("cumulative").print_stats(top)
    text = re.sub(r"/\S*/site-packages/", "", buf.getvalue().replace(str(ROOT) + "/", ""))
    print(text)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--budgets", default="6,50", help="comma-separated eval budgets")
    parser.add_argument("--predictors", default="default,none", help="comma-separated --predictor values")
    parser.add_argument("--tracking", default="on,off", help="comma-separated: on, off")
    parser.add_argument("--objectives", default="accuracy", help="--objectives of every case")
    parser.add_argument("--profile", action="store_true", help="cProfile the first case in-process instead")
    parser.add_argument("--top", type=int, default=45, help="functions the profile lists")
    parser.add_argument("--repeat", type=int, default=1, help="runs of each case (the least time is shown)")
    parser.add_argument("--out", default=None, help="also append the lines to this file")
    args = parser.parse_args(argv)

    budgets = [int(b) for b in args.budgets.split(",")]
    predictors = args.predictors.split(",")
    trackings = [t == "on" for t in args.tracking.split(",")]
    lines: list[str] = []

    def say(line: str) -> None:
        print(line, flush=True)
        lines.append(line)

    with tempfile.TemporaryDirectory(prefix="wsnas-overhead-") as tmp:
        folder = Path(tmp)
        table = make_table(folder)
        if args.profile:
            out = folder / "profiled"
            profile(search_args(table, budgets[0], predictors[0], trackings[0], out, args.objectives), args.top)
            return 0
        say(f"# wsnas search, nb201, table evaluator ({sum(1 for _ in open(table)) - 1} rows), objectives "
            f"{args.objectives}, one process per case; python {sys.version.split()[0]}, {os.cpu_count()} CPUs, "
            f"load average {os.getloadavg()[0]:.1f}")  # fmt: skip
        say(f"{'budget':>6}  {'predictor':>9}  {'tracking':>8}  {'case':>6}  {'wall s':>7}  {'CPU s':>6}  "
            f"best accuracy  (the least of {args.repeat} runs)")
        doc = []
        for budget in budgets:
            for predictor in predictors:
                for tracking in trackings:
                    cases = ("first", "rerun") if tracking and predictor == predictors[0] else ("first",)
                    runs: dict[str, list[tuple[float, float, dict]]] = {case: [] for case in cases}
                    for k in range(args.repeat):  # a fresh folder each time: "first" is a new search
                        out = folder / f"b{budget}-{predictor}-{'on' if tracking else 'off'}-{k}"
                        cmd = search_args(table, budget, predictor, tracking, out, args.objectives)
                        for case in cases:
                            runs[case].append(timed(cmd))
                    for case in cases:
                        seconds = min(r[0] for r in runs[case])
                        cpu = min(r[1] for r in runs[case])
                        bests = {(r[2].get("best") or {}).get("values", {}).get("accuracy") for r in runs[case]}
                        best = bests.pop() if len(bests) == 1 else sorted(bests)
                        say(f"{budget:>6}  {predictor:>9}  {'on' if tracking else 'off':>8}  {case:>6}  "
                            f"{seconds:7.1f}  {cpu:6.1f}  {best}")  # fmt: skip
                        doc.append({"budget": budget, "predictor": predictor, "tracking": tracking, "case": case,
                                    "seconds": [round(r[0], 2) for r in runs[case]],
                                    "cpu_seconds": [round(r[1], 2) for r in runs[case]], "best_accuracy": best,
                                    "evaluations": len(runs[case][0][2].get("history", []))})  # fmt: skip
        say(json.dumps(doc))
    if args.out:
        with open(args.out, "a", encoding="utf-8") as f:
            f.write("\n".join(lines) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
