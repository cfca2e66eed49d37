"""Search under label shift: wsnas vs plain Optuna TPE vs random when the table is not what the predictor learned.

A user's evaluator never measures exactly what the predictor was trained on. Two settings, each a table of
really-trained NB201 cells looked up with :class:`wsnas.TableEvaluator`:

* ``NO SHIFT``: a predictor fitted on one seeded half of the OLD zoo (1 epoch, C=8); the table is the
  other half (same recipe, unseen cells);
* ``SHIFT``: a predictor fitted on the OLD zoo's cells that are NOT in the NEW zoo (3 epochs, C=16, 9k
  images); the table is the NEW zoo (another recipe's labels, on cells the predictor never saw).

Every method runs through the real :func:`wsnas.search` (``eval_budget`` real evaluations, ``seed=s``,
tracking off, a temporary output folder): ``wsnas`` with ``predictor=`` the setting's predictor, ``tpe`` and
``random`` with ``predictor=None, sampler="tpe"/"random"`` (the same domain rules), ``gp`` with Optuna's
``GPSampler`` where the installed Optuna has it. The predictors (WeightPredictor, ensemble 3, size C=2 N=1)
are fitted once and cached in the output folder. Reported per setting and method: the best found
(median [IQR]), real evaluations to the table's top 1% and top 0.1% (median; a miss counts as budget + 1;
reached/seeds) and wall seconds per search; raw rows go to ``OUT/rows.jsonl``.

    python benchmarks/search_shift.py [--old-zoo OLD.jsonl] [--new-zoo NEW.jsonl] [--seeds 10]
        [--budget 50] [--methods wsnas,tpe,random,gp] [--settings noshift,shift] [--out runs/search_shift]
"""

from __future__ import annotations

import argparse
import csv
import hashlib
import json
import math
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
OLD = ROOT / "predictors" / "_shipped" / "zoos" / "nb201-cifar10-onecycle.jsonl"
NEW = ROOT / "predictors" / "_shipped" / "zoos" / "nb201-cifar10-e3c16.jsonl"
NEW_FALLBACK = Path("/work/zoo-out/nb201-cifar10-e3c16.jsonl")


def _records(path: Path) -> list:
    import wsnas

    return [r for r in wsnas.Zoo.load(str(path)) if not r.diverged and r.val_acc is not None]


def _predictor(space, train: list, out: Path, ensemble: int):
    """A WeightPredictor fitted on ``train`` (cached in ``out`` under a digest of its cells and labels)."""
    from wsnas.predictors import WeightPredictor, load

    key = hashlib.sha256(json.dumps(sorted((r.arch_hash, r.val_acc) for r in train)).encode()).hexdigest()[:12]
    path = out / f"predictor-{key}-e{ensemble}.safetensors"
    if path.exists():
        return load(str(path)), 0.0
    t0 = time.time()
    pred = WeightPredictor(space, ensemble=ensemble, seed=0, size={"C": 2, "N": 1})
    pred.fit([r.arch for r in train], [r.val_acc for r in train], progress=False)
    pred.save(str(path))
    return pred, time.time() - t0


class _Memo:
    """A fitted predictor whose scores are memoised by architecture hash (a :class:`wsnas.SearchPredictor`):
    every search of a setting scores the same table, and the search deep-copies its predictor, so the table
    is scored once here (:meth:`fill`) instead of once per search. ``fine_tune`` forgets the memo."""

    def __init__(self, pred) -> None:  # noqa: ANN001
        self.pred, self.memo = pred, {}
        self.space, self.target, self.card = pred.space, pred.target, pred.card

    def fill(self, archs: list) -> None:
        missing = [a for a in archs if a.hash not in self.memo]
        if missing:
            p = self.pred.predict(missing)
            for a, s, u in zip(missing, np.asarray(p.score), np.asarray(p.uncertainty)):
                self.memo[a.hash] = (float(s), float(u))

    def predict(self, archs: list):  # noqa: ANN201
        from types import SimpleNamespace

        self.fill(archs)
        rows = np.array([self.memo[a.hash] for a in archs]).reshape(-1, 2)
        return SimpleNamespace(score=rows[:, 0], uncertainty=rows[:, 1])

    def fine_tune(self, archs, targets, *, epochs: int):  # noqa: ANN001, ANN201
        self.memo.clear()
        return self.pred.fine_tune(archs, targets, epochs=epochs)


def _settings(names: list[str], old: list, new: list) -> dict[str, tuple[list, list, str]]:
    """name -> (predictor's training records, table records, description)."""
    out: dict[str, tuple[list, list, str]] = {}
    new_hashes = {r.arch_hash for r in new}
    if "noshift" in names:
        order = np.random.default_rng(0).permutation(len(old))
        half = len(old) // 2
        train, table = [old[i] for i in order[:half]], [old[i] for i in order[half:]]
        out["noshift"] = (train, table, f"NO SHIFT: predictor on {len(train)} OLD-zoo cells, table = the other "
                                        f"{len(table)} OLD-zoo cells (same recipe)")  # fmt: skip
    if "shift" in names:
        train = [r for r in old if r.arch_hash not in new_hashes]
        out["shift"] = (train, new, f"SHIFT: predictor on {len(train)} OLD-zoo cells (1 epoch, C=8) not in the "
                                    f"NEW zoo; table = the {len(new)} NEW-zoo cells (3 epochs, C=16)")  # fmt: skip
    return out


def _write_table(records: list, path: Path) -> None:
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["arch", "val_acc"])
        for r in records:
            w.writerow([r.arch, 100.0 * r.val_acc])


def _run(method: str, table: Path, pred, seed: int, budget: int) -> tuple[list[float], float]:
    import optuna

    import wsnas

    kwargs: dict = {"predictor": None}
    if method == "wsnas":
        kwargs = {"predictor": pred}
    elif method == "gp":
        kwargs["sampler"] = optuna.samplers.GPSampler(seed=seed)
    else:
        kwargs["sampler"] = method
    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.time()
        res = wsnas.search("nb201", evaluator=wsnas.TableEvaluator(str(table), "arch", "val_acc"),
                           eval_budget=budget, seed=seed, output_dir=tmp, tracking=False, progress=False,
                           **kwargs)  # fmt: skip
        wall = time.time() - t0
    return [r.values["accuracy"] for r in res.history if r.state == "COMPLETE"], wall


def _to_reach(values: list[float], threshold: float, miss: int) -> int:
    return next((i for i, v in enumerate(values, 1) if v >= threshold - 1e-9), miss)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--old-zoo", default=str(OLD))
    parser.add_argument("--new-zoo", default=str(NEW if NEW.exists() else NEW_FALLBACK))
    parser.add_argument("--seeds", type=int, default=10)
    parser.add_argument("--budget", type=int, default=50)
    parser.add_argument("--methods", default="wsnas,tpe,random,gp")
    parser.add_argument("--settings", default="noshift,shift")
    parser.add_argument("--ensemble", type=int, default=3)
    parser.add_argument("--out", default="runs/search_shift")
    parser.add_argument("--predictor", action="append", default=[], metavar="SETTING=FILE",
                        help="a predictor file for a setting instead of fitting one (noshift=FILE)")
    parser.add_argument("--fit-only", action="store_true", help="fit (and cache) the predictors, then stop")
    args = parser.parse_args(argv)

    import optuna
    import torch

    from wsnas.search_spaces import get_space

    torch.set_num_threads(1)
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    methods = [m for m in args.methods.split(",") if m != "gp" or hasattr(optuna.samplers, "GPSampler")]
    space = get_space("nb201")
    old, new = _records(Path(args.old_zoo)), _records(Path(args.new_zoo))
    print(f"OLD zoo {args.old_zoo}: {len(old)} cells; NEW zoo {args.new_zoo}: {len(new)} cells", flush=True)
    settings = _settings(args.settings.split(","), old, new)
    preds = {}
    given = dict(p.split("=", 1) for p in args.predictor)
    for name, (train, _, _) in settings.items():
        if name in given:
            from wsnas.predictors import load

            preds[name] = load(given[name])
            print(f"{name}: predictor {given[name]} (given; trained on {len(train)} cells by the same split?: the "
                  "caller vouches)", flush=True)  # fmt: skip
            continue
        preds[name], fit_s = _predictor(space, train, out, args.ensemble)
        print(f"{name}: predictor on {len(train)} cells " + (f"fitted in {fit_s:.0f} s" if fit_s else "(cached)"),
              flush=True)  # fmt: skip
    if args.fit_only:
        return
    rows_path = out / "rows.jsonl"
    report = []
    for name, (_, table_recs, desc) in settings.items():
        table = out / f"table-{name}.csv"
        _write_table(table_recs, table)
        t0 = time.time()
        preds[name] = _Memo(preds[name])
        preds[name].fill([space.from_string(r.arch) for r in table_recs])
        print(f"{name}: the predictor scored the {len(table_recs)} table cells once in {time.time() - t0:.1f} s "
              "(memoised for every search)", flush=True)  # fmt: skip
        ys = np.sort(np.array([100.0 * r.val_acc for r in table_recs]))[::-1]
        k1, k01 = max(1, math.ceil(0.01 * len(ys))), max(1, math.ceil(0.001 * len(ys)))
        t1, t01 = float(ys[k1 - 1]), float(ys[k01 - 1])
        report += [f"\n### {desc}\n", f"N={len(ys)} cells, budget={args.budget}, seeds=0-{args.seeds - 1}; top 1% = "
                   f"the best {k1} (>= {t1:.2f}), top 0.1% = the best {k01} (>= {t01:.2f}); max {ys[0]:.2f}, "
                   f"median {float(np.median(ys)):.2f}\n",
                   "| method | best@B median [IQR] | evals to top 1% median (reached) | "
                   "evals to top 0.1% median (reached) | wall s/search median |",
                   "| --- | --- | --- | --- | --- |"]  # fmt: skip
        for method in methods:
            rows = []
            for seed in range(args.seeds):
                values, wall = _run(method, table, preds[name], seed, args.budget)
                miss = args.budget + 1
                row = {"setting": name, "method": method, "seed": seed, "n": len(values),
                       "best": max(values) if values else None, "to_top1": _to_reach(values, t1, miss),
                       "to_top01": _to_reach(values, t01, miss), "wall_s": round(wall, 2),
                       "values": values}  # fmt: skip
                rows.append(row)
                with open(rows_path, "a") as f:
                    f.write(json.dumps(row) + "\n")
                print(f"{name} {method} seed {seed}: best {row['best']:.2f}, top1% at {row['to_top1']}, "
                      f"top0.1% at {row['to_top01']}, {len(values)} evals, {wall:.1f} s", flush=True)  # fmt: skip
            best = np.array([r["best"] for r in rows])
            q1, q3 = np.percentile(best, [25, 75])
            r1 = [r["to_top1"] for r in rows]
            r01 = [r["to_top01"] for r in rows]
            report.append(
                f"| {method} | {np.median(best):.2f} [{q1:.2f}, {q3:.2f}] | {np.median(r1):g} "
                f"({sum(x <= args.budget for x in r1)}/{len(rows)}) | {np.median(r01):g} "
                f"({sum(x <= args.budget for x in r01)}/{len(rows)}) | {np.median([r['wall_s'] for r in rows]):.1f} |"
            )
    text = "\n".join(report)
    (out / "table.md").write_text(text + "\n")
    print(text)


if __name__ == "__main__":
    main()
