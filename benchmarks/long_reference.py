"""A longer yardstick than the zoo: the shipped predictor's held-out NB201 cells trained under a longer recipe.

The shipped predictor's table is measured against its zoo's 3-epoch labels, which agree with long training only
so far (0.83 against a 200-epoch benchmark outside the project on 50 cells; 0.754 against the in-house C=16
reference of the fidelity study on 30). This script trains the cells the predictor never saw (its card's
held-out hashes, in the card's order, so a larger ``--n`` extends a smaller one) under the fidelity study's
longest C=16 recipe, ``ref_e6_r32_c16_9k`` (6 epochs of cosine SGD at 32x32 on 9,000 CIFAR-10 images, C=16
N=1, training seed 0; about 116 CPU-s a cell), appends each to ``--out`` (a wsnas zoo; rerun to resume), and
reports the Spearman of each ranking against it on every held-out cell with a reference run: the predictor, its ensemble
without the size prior, the parameter count, the zoo's own 3-epoch label and every zero-cost proxy (at the
space's proxy width, NB201 C=8 as ``predictor eval`` computes them, one batch of 64 of the zoo task's training
images, weights generated with seed 0).

    nice -n 19 python benchmarks/long_reference.py --data-dir ../shared/data/cifar10 \
        --out benchmarks/results/long-reference/nb201-heldout-ref_e6_r32_c16_9k.jsonl --n 60 --workers 2
    python benchmarks/long_reference.py --data-dir ... --out ... --n 60 --report-only

Records of the same cells and recipe in ``--also`` files (the fidelity study's ``ref_e6_r32_c16_9k.jsonl``) are
used as well. Prints one JSON line per ranking; ``--bootstrap 2000`` adds each figure's spread over resampled
cells and the predictor's lead over it, paired on the same resamples.

``--baselines 50,100,200,all`` adds zc_gbm (boosting over every
zero-cost proxy and the architecture's tokens) and the arch-only GNN, each fitted on the first B cells of the
predictor's own training split, as its card's table fitted them; ``--pretrained FILE`` (a file of
``benchmarks/pretrain_nb201.py``) adds that pretrained encoder fitted on the same cells, size prior included.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import numpy as np

#: the fidelity study's base recipe and its C=16 reference (``benchmarks/fidelity.py``), so records match
BASE = {"resolution": 16, "subset": 5000, "epochs": 1, "schedule": "cosine", "size": {"C": 8, "N": 1}}
REFERENCE = {"epochs": 6, "resolution": 32, "subset": 9000, "size": {"C": 16, "N": 1}}


def zoo_path(given: str | None) -> Path:
    """The zoo of the predictor's 3-epoch labels: ``given``, else the shipped NB201 zoo."""
    from wsnas.predictors import SHIPPED_DIR

    return Path(given) if given else Path(SHIPPED_DIR) / "zoos" / "nb201-cifar10-e3c16.jsonl"


def main(argv: list[str] | None = None) -> int:
    import numpy as np
    import torch
    from scipy.stats import spearmanr

    from wsnas.predictors import load
    from wsnas.predictors._evaluate import _zoo_task
    from wsnas.predictors._zc_gbm import ZeroCostScores
    from wsnas.search_spaces import get_space
    from wsnas.training import Zoo, cifar10, train_many

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data-dir", required=True)
    ap.add_argument("--out", required=True, help="zoo file of the reference runs (appended to; resumable)")
    ap.add_argument("--predictor", default="nb201", help="predictor file or shipped name (default: nb201)")
    ap.add_argument("--zoo", help="the zoo the predictor was fitted on (default: the shipped NB201 zoo)")
    ap.add_argument("--n", type=int, default=60, help="train the first N held-out cells (default 60)")
    ap.add_argument("--workers", type=int, default=None)
    ap.add_argument("--also", action="append", default=[], help="more zoo files with reference records")
    ap.add_argument("--report-only", action="store_true")
    ap.add_argument("--bootstrap", type=int, default=0, metavar="N",
                    help="N seeded resamples of the cells: each figure's spread and the predictor's paired lead")
    ap.add_argument("--baselines", default="", metavar="B,B,...",
                    help="also fit zc_gbm and the arch-only GNN on the first B cells of the predictor's training "
                         "split (its card's split; 'all' = every one) and rank the held-out cells with each")
    ap.add_argument("--pretrained", metavar="FILE",
                    help="with --baselines: also fit copies of this pretrained predictor (benchmarks/pretrain_nb201.py)"
                         " on the same cells, as predictor_eval.py --pretrained fits its encoder rows")  # fmt: skip
    args = ap.parse_args(argv)
    if args.pretrained and not args.baselines:
        print("error: --pretrained goes with --baselines (the label budgets to fit it on)", file=sys.stderr)
        return 2
    torch.set_num_threads(1)

    pred = load(args.predictor)
    evaluation = pred.card.get("evaluation") or {}
    held_out = list(evaluation.get("test_hashes") or [])
    if not held_out:
        print(f"error: predictor {args.predictor!r} has no held-out cells in its card", file=sys.stderr)
        return 2
    space = get_space(pred.space.name)
    zoo = zoo_path(args.zoo)
    labels = {r.arch_hash: r for r in Zoo.load(zoo) if not r.diverged}
    cells = [h for h in held_out if h in labels][: args.n]
    task = cifar10(args.data_dir, **BASE).with_recipe(**REFERENCE)
    fp = task.fingerprint
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)

    def reference() -> dict[str, float]:
        found: dict[str, float] = {}
        for path in [out, *map(Path, args.also)]:
            if path.exists():
                for r in Zoo.load(path):
                    if r.task_fingerprint == fp and r.seed == 0 and not r.diverged:
                        found.setdefault(r.arch_hash, r.val_acc)
        return found

    if not args.report_only:
        todo = [labels[h].arch for h in cells if h not in reference()]
        print(f"long_reference: {len(cells) - len(todo)} of {len(cells)} cells trained, {len(todo)} to go",
              file=sys.stderr)  # fmt: skip
        runs = Zoo(out)
        for i, result in enumerate(train_many(space, todo, task, seeds=0, workers=args.workers), 1):
            runs.append(result)
            print(f"long_reference: {i}/{len(todo)} {result.arch_hash[:8]} acc {result.val_acc:.4f}", file=sys.stderr)

    ref = reference()
    have = [h for h in held_out if h in ref and h in labels]  # every held-out cell with a run, --also's too
    if len(have) < 3:
        print(f"error: only {len(have)} held-out cells have a reference run; train more first", file=sys.stderr)
        return 2
    archs = [space.from_string(labels[h].arch) for h in have]
    y = np.array([ref[h] for h in have])
    rows: dict[str, np.ndarray] = {"predictor": pred.predict(archs).score}
    ensemble = pred._member_scores(pred._archs(archs), 64).mean(axis=0)
    rows["predictor ensemble without the size prior"] = ensemble
    rows["zoo label (3 epochs, C=16)"] = np.array([labels[h].val_acc for h in have])
    zc_task, _ = _zoo_task([zoo], args.data_dir)  # the batch `predictor eval` gives the proxies
    zc = ZeroCostScores(space, task=zc_task, size=dict(space.proxy_size), seed=0)
    matrix = zc.matrix(archs)  # [n, P]
    for j, name in enumerate(zc.names):
        rows[name] = matrix[:, j]
    if args.baselines:
        try:
            rows.update(_baselines(pred, zoo, space, archs, zc_task, args.baselines, args.pretrained))
        except (ValueError, OSError) as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 2
    lead = paired_bootstrap(rows, y, args.bootstrap) if args.bootstrap else {}
    for name, scores in rows.items():
        rho = float(spearmanr(scores, y).statistic)
        row = {"ranking": name, "spearman_vs_reference": round(rho, 4), "n": len(have),
               "reference": "ref_e6_r32_c16_9k", "predictor": args.predictor}  # fmt: skip
        print(json.dumps({**row, **lead.get(name, {})}))
    return 0


def paired_bootstrap(rows: dict[str, np.ndarray], y: np.ndarray, n: int, seed: int = 0) -> dict[str, dict[str, float]]:
    """Per ranking, over ``n`` resamples of the cells (seeded): its Spearman's standard deviation and, paired on
    the same resamples, the predictor's lead over it (mean, standard deviation, share of resamples behind)."""
    import numpy as np
    from scipy.stats import spearmanr

    rng = np.random.default_rng(seed)
    draws = [rng.integers(0, len(y), len(y)) for _ in range(n)]
    rho = {k: np.array([spearmanr(s[i], y[i]).statistic for i in draws]) for k, s in rows.items()}
    out = {}
    for k, r in rho.items():
        out[k] = {"bootstrap_sd": round(float(np.nanstd(r)), 4)}
        if k != "predictor":
            d = rho["predictor"] - r
            out[k].update({"predictor_lead": round(float(np.nanmean(d)), 4),
                           "predictor_lead_sd": round(float(np.nanstd(d)), 4),
                           "predictor_behind_share": round(float(np.mean(d < 0)), 4)})  # fmt: skip
    return out


def _baselines(pred, zoo: Path, space, test_archs: list, task, budgets: str,
               pretrained: str | None = None) -> dict[str, np.ndarray]:  # fmt: skip
    """``{name: [n] scores}`` of zc_gbm and the arch-only GNN fitted as ``predictor eval`` fitted them for the
    card's table: the zoo's cells split by the card's seed (checked against its held-out hashes), the first B
    cells of the training pool, the regressors seeded with the split seed. ``pretrained`` (a file): copies of
    that pretrained predictor fitted on the same cells (size prior included), as the card's encoder rows."""
    import copy

    import numpy as np
    import torch

    from wsnas.predictors import load
    from wsnas.predictors._baselines import ArchGNNBaseline
    from wsnas.predictors._training import zoo_training_set
    from wsnas.predictors._zc_gbm import ZeroCostGBMBaseline, ZeroCostScores

    meta = pred.card["evaluation"]["meta"]
    seed, n_test = int(meta["seed"]), int(meta["n_test"])
    _, archs, y, _ = zoo_training_set([zoo], space, meta.get("target", "val_acc"))
    perm = np.random.default_rng(seed).permutation(len(archs))
    if [archs[i].hash for i in np.sort(perm[:n_test])] != list(pred.card["evaluation"]["test_hashes"]):
        raise ValueError(f"the zoo {str(zoo)!r} does not give the predictor card's held-out split")
    pool = perm[n_test:]
    pre = load(pretrained) if pretrained else None
    if pre is not None and (pre.pretraining is None or pre.space.name != space.name):
        raise ValueError(f"--pretrained {pretrained!r} is no pretrained {space.name} predictor")
    zc = ZeroCostScores(space, task=task, size=dict(meta.get("baseline_size") or space.proxy_size), seed=seed)
    out: dict[str, np.ndarray] = {}
    for b in budgets.split(","):
        n = len(pool) if b == "all" else int(b)
        if not 5 <= n <= len(pool):
            raise ValueError(f"--baselines wants label budgets in [5, {len(pool)}] or 'all', got {b!r}")
        idx = pool[:n]
        tr, y_tr = [archs[i] for i in idx], y[idx]
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            gbm = ZeroCostGBMBaseline(space, scores=zc, seed=seed).fit(tr, y_tr)
            out[f"zc_gbm, {n} labels"] = gbm.predict(test_archs)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            out[f"arch_gnn, {n} labels"] = ArchGNNBaseline(space, seed=seed).fit(tr, y_tr).predict(test_archs)
        if pre is not None:
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(seed)
                fitted = copy.deepcopy(pre).fit(tr, y_tr, progress=False, target_name=meta.get("target", "val_acc"))
            out[f"pretrained encoder + prior, {n} labels"] = fitted.predict(test_archs).score
    return out


if __name__ == "__main__":
    raise SystemExit(main())
