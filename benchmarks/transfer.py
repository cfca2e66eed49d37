"""Transfer report: the NB201 predictor on other search spaces, zero-shot and fine-tuned, against baselines.

    python benchmarks/transfer.py [--predictor nb201] [--zoo nb101=FILE --zoo macro=FILE] \\
        [--budgets 10,25,50] [--seeds 5] [--test-fraction 0.5] [--data-dir CIFAR_DIR] [--threads 1]
    python benchmarks/transfer.py --leave-one-out --zoo nb201=FILE --zoo nb101=FILE --zoo macro=FILE[,FILE] ...

A space's zoo may be several files (``SPACE=A,B``, or ``--zoo SPACE=A --zoo SPACE=B``): training seeds of one
recipe, whose records of one architecture are averaged (``zoo_training_set``).

For each target space, its zoo's distinct architectures are split once into a held-out test set (about
``--test-fraction`` of them, chosen by a hash of each architecture, so growing a zoo never moves one across)
and a pool. On the test set it reports Spearman and Kendall for

* ``zero-shot``: the predictor transferred to the space (:meth:`WeightPredictor.transfer`, default width);
* ``fine-tuned``: that predictor fine-tuned on K labels drawn from the pool (``--ft-epochs``, ``--ft-lr``);
* ``scratch``: the same encoder configuration and ensemble trained from scratch on the same K labels
  (:meth:`WeightPredictor.fit` with its defaults: 20% of the K held out for early stopping);
* every zero-cost proxy (``params`` and ``flops`` included), at the width the zoo was trained at.

With ``--leave-one-out`` the predictor of each target space is trained, for this report, on the zoos of
every other space given (one multi-space fit, ``WeightPredictor.fit(other_spaces=...)``, from the
``--pretrained`` encoder if given): the honest test of a new space, whose labels it never saw.

K draws use seeds ``0 .. --seeds - 1`` (median, min and max over them). Prints a markdown table per space,
then one JSON line per measurement and a last JSON line with the settings.

``--select`` runs the selection study instead, on the pool only (the test set is never read): zero-shot
Spearman on the pool at several encoding widths (how ``TRANSFER_SIZES`` were chosen), and fine-tuning
settings (epochs x learning rate) with K labels from the pool scored on the rest of the pool.
"""

from __future__ import annotations

import argparse
import copy
import hashlib
import json
import math
import sys
import time
import warnings
from typing import Any

import numpy as np

#: the width each in-house zoo was trained at (see predictors/_shipped/README.md): the zero-cost proxies see this
ZOO_SIZES: dict[str, dict[str, Any]] = {
    "nb201": {"C": 16, "N": 1},
    "nb101": {"C": 16, "stacks": 3, "cells_per_stack": 1},
    "macro": {"width_mult": 0.25},
}
#: the faithful-recipe zoos (3 epochs, 16x16, 9k images, cosine; predictors/_shipped/README.md)
DEFAULT_ZOOS = {
    "nb101": ["predictors/_shipped/zoos/nb101-cifar10-e3c16.jsonl"],
    "macro": ["predictors/_shipped/zoos/macro-cifar10-e3w25.jsonl"],
}
#: encoding widths tried by --select
WIDTHS: dict[str, list[dict[str, Any]]] = {
    "nb101": [{"C": c, "stacks": 3, "cells_per_stack": 1} for c in (5, 6, 8)],
    "macro": [{"width_mult": w} for w in (0.0625, 0.125, 0.25)],
}
#: fine-tuning settings tried by --select: (epochs, lr)
FT_GRID = [(10, 3e-4), (30, 3e-4), (100, 3e-4), (100, 1e-3)]
ZERO_COST = ("synflow", "naswot", "snip", "grad_norm", "jacob_cov", "params", "flops")


def _number(text: str) -> int | float:
    return float(text) if "." in text else int(text)


def metrics(y: np.ndarray, s: np.ndarray) -> dict[str, float | None]:
    """Spearman and Kendall of scores ``s [n]`` against targets ``y [n]`` (``None`` when undefined)."""
    from scipy.stats import kendalltau, rankdata, spearmanr

    r = rankdata(np.nan_to_num(s, nan=-np.inf))
    if np.ptp(r) == 0:
        return {"spearman": None, "kendall": None}
    rho, tau = float(spearmanr(r, y).statistic), float(kendalltau(r, y).statistic)
    return {"spearman": rho if math.isfinite(rho) else None, "kendall": tau if math.isfinite(tau) else None}


def split(hashes: list[str], test_fraction: float) -> tuple[np.ndarray, np.ndarray]:
    """``(test, pool)`` index arrays: an architecture is held out when the sha256 of its canonical hash
    falls below ``test_fraction``, so the split of an architecture never changes as a zoo grows."""
    u = np.array([int(hashlib.sha256(f"transfer-test:{h}".encode()).hexdigest()[:12], 16) / 16**12 for h in hashes])
    return np.flatnonzero(u < test_fraction), np.flatnonzero(u >= test_fraction)


def draw(pool: np.ndarray, k: int, seed: int) -> np.ndarray:
    """``k`` pool indices drawn with ``seed`` (seed ``s`` of the K-sample draw)."""
    return np.sort(np.random.default_rng([seed, k]).choice(pool, size=k, replace=False))


def fine_tuned(base: Any, archs: list, y: np.ndarray, epochs: int, lr: float) -> Any:
    pred = copy.deepcopy(base)
    return pred.fine_tune(archs, y, epochs=epochs, lr=lr)


def scratch(base: Any, archs: list, y: np.ndarray, seed: int) -> Any:
    from wsnas.predictors import WeightPredictor

    pred = WeightPredictor(base.space, encoder=base.encoder, ensemble=base.ensemble, seed=seed,
                           size=base.candidates.size, init=base.candidates.init, device=base.device)  # fmt: skip
    pred.candidates = base.candidates  # the same networks at the same width: share the graph cache
    return pred.fit(archs, y, progress=False)


def summary(values: list[float | None]) -> str:
    v = [x for x in values if x is not None]
    if not v:
        return "n/a"
    if len(v) == 1:
        return f"{v[0]:.3f}"
    return f"{np.median(v):.3f} [{min(v):.3f}, {max(v):.3f}]"


def report(space: str, rows: list[dict[str, Any]], n_test: int, n_pool: int) -> str:
    """The markdown table of one space: one line per (method, K), median [min, max] over the seeds."""
    groups: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for r in rows:
        groups.setdefault((r["method"], str(r["k"])), []).append(r)
    lines = [f"### {space} (held-out test {n_test}, pool {n_pool})", "",
             "| method | K | seeds | Spearman median [min, max] | Kendall median [min, max] |",
             "|---|---|---|---|---|"]  # fmt: skip
    for (method, k), rs in groups.items():
        sp, kt = summary([r["spearman"] for r in rs]), summary([r["kendall"] for r in rs])
        lines.append(f"| {method} | {k} | {len(rs)} | {sp} | {kt} |")
    return "\n".join(lines) + "\n"


def leave_one_out(args: argparse.Namespace, zoos: dict[str, list[str]], target: str) -> Any:
    """A predictor trained on every zoo but ``target``'s (one multi-space fit, from ``--pretrained`` if given)."""
    from wsnas.predictors import WeightPredictor, load

    sources = [path for name, paths in zoos.items() if name != target for path in paths]
    t0 = time.perf_counter()
    if args.pretrained:  # its encoder, on a predictor bound to the first source space
        from wsnas.predictors import default_transfer_size, zoo_spaces
        from wsnas.search_spaces import get_space

        pre, primary = load(args.pretrained), get_space(zoo_spaces(sources)[0])
        pred = WeightPredictor(primary, encoder=pre.encoder, ensemble=pre.ensemble, seed=pre.seed,
                               size=default_transfer_size(primary))  # fmt: skip
        pred._pretrained, pred.pretraining = pre._pretrained, pre.pretraining
        pred.fit(*_joint(sources, primary.name), progress=False, target_name="val_acc",
                 other_spaces=_others(sources, primary.name))  # fmt: skip
    else:
        pred = WeightPredictor.from_zoo(sources, progress=False)
    fit = pred.history[-1]
    per_space = {k: v.get("val_spearman") for k, v in (fit.get("spaces") or {}).items()}
    print(f"# {target} held out: trained on {list(fit.get('spaces') or [pred.space.name])} ({fit['n']} cells, "
          f"{time.perf_counter() - t0:.0f} s): validation Spearman per space {per_space}, size prior weights "
          f"{fit.get('prior_weights')}", file=sys.stderr, flush=True)
    return pred


def _joint(paths: list[str], space: str) -> tuple[list, np.ndarray]:
    from wsnas.predictors import zoo_training_set

    _, archs, y, _ = zoo_training_set(paths, space, "val_acc")
    return archs, y


def _others(paths: list[str], primary: str) -> dict[str, tuple[list, np.ndarray]]:
    from wsnas.predictors import zoo_spaces

    return {n: _joint(paths, n) for n in zoo_spaces(paths) if n != primary}


def load_target(space_name: str, paths: list[str], predictor: Any, test_fraction: float) -> tuple:
    from wsnas.predictors import load
    from wsnas.predictors._training import zoo_training_set

    space, archs, y, _ = zoo_training_set(paths, space_name, "val_acc")
    test, pool = split([a.hash for a in archs], test_fraction)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        base = (load(predictor) if isinstance(predictor, str) else predictor).transfer(space)
    for w in caught:
        print(f"# {space_name}: {w.message}", file=sys.stderr)
    return space, archs, y, test, pool, base


def report_space(args: argparse.Namespace, name: str, paths: list[str]) -> list[dict[str, Any]]:
    """Every measurement of one target space (rows also go to stderr as they come)."""
    from wsnas.predictors import ZeroCostBaseline
    from wsnas.predictors._evaluate import _zoo_task

    source = leave_one_out(args, args.zoo_map, name) if args.leave_one_out else args.predictor
    space, archs, y, test, pool, base = load_target(name, paths, source, args.test_fraction)
    t_archs, y_t = [archs[i] for i in test], y[test]
    rows: list[dict[str, Any]] = []

    def add(method: str, k: int, seed: int | None, scores: np.ndarray, t0: float) -> None:
        row = {"space": name, "method": method, "k": k, "seed": seed, "n_test": len(test),
               **metrics(y_t, scores), "seconds": round(time.perf_counter() - t0, 2)}  # fmt: skip
        rows.append(row)
        print(json.dumps(row), file=sys.stderr, flush=True)

    t0 = time.perf_counter()
    add("zero-shot", 0, None, base.predict(t_archs).score, t0)
    if getattr(base, "prior", None) is not None:  # the same members without the size prior
        t0, prior, base.prior = time.perf_counter(), base.prior, None
        add("zero-shot, ensemble alone", 0, None, base.predict(t_archs).score, t0)
        base.prior = prior
    for k in args.budgets:
        if k > len(pool):
            print(f"# {name}: K={k} is more than the pool's {len(pool)} architectures; skipped", file=sys.stderr)
            continue
        for s in range(args.seeds):
            idx = draw(pool, k, s)
            k_archs, y_k = [archs[i] for i in idx], y[idx]
            t0 = time.perf_counter()
            tuned = fine_tuned(base, k_archs, y_k, args.ft_epochs, args.ft_lr)
            add("fine-tuned", k, s, tuned.predict(t_archs).score, t0)
            t0 = time.perf_counter()
            add("scratch", k, s, scratch(base, k_archs, y_k, s).predict(t_archs).score, t0)
    if args.no_proxies:
        print(report(name, rows, len(test), len(pool)), flush=True)
        return rows
    task, why = _zoo_task(paths, args.data_dir)
    print(f"# {name}: zero-cost proxies on {why}" + ("" if task is not None else " (synthetic task)"), file=sys.stderr)
    for proxy in ZERO_COST:
        t0 = time.perf_counter()
        zc = ZeroCostBaseline(space, proxy, task=task, size=ZOO_SIZES.get(name), seed=0)
        add(proxy, 0, None, zc.predict(t_archs), t0)
    order = {"zero-shot": 0, "zero-shot, ensemble alone": 0, "fine-tuned": 1, "scratch": 2}
    rows.sort(key=lambda r: (order.get(r["method"], 3), r["k"]))
    print(report(name, rows, len(test), len(pool)), flush=True)
    return rows


def run_report(args: argparse.Namespace, zoos: dict[str, list[str]]) -> list[dict[str, Any]]:
    targets = args.targets.split(",") if args.targets else list(zoos)
    return [row for name, paths in zoos.items() if name in targets for row in report_space(args, name, paths)]


def parse_zoos(items: list[str]) -> dict[str, list[str]]:
    """``SPACE=FILE[,FILE...]`` items (a space may repeat) -> space -> its files, in the order given."""
    zoos: dict[str, list[str]] = {}
    for item in items:
        name, sep, files = item.partition("=")
        if not sep or not name or not files or "" in files.split(","):
            raise SystemExit(f"error: --zoo wants SPACE=FILE[,FILE...], got {item!r}")
        zoos.setdefault(name, []).extend(files.split(","))
    return zoos


def run_select(args: argparse.Namespace, zoos: dict[str, list[str]]) -> list[dict[str, Any]]:
    """Encoding widths and fine-tuning settings, chosen on the pool only."""
    from wsnas.predictors import load

    out: list[dict[str, Any]] = []
    source = load(args.predictor)
    for name, paths in zoos.items():
        space, archs, y, test, pool, base = load_target(name, paths, args.predictor, args.test_fraction)
        p_archs = [archs[i] for i in pool]
        for size in WIDTHS.get(name, []) if args.select in ("all", "widths") else []:
            for adapt in (False, True):
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")
                    pred = source.transfer(space, size=size, adapt=adapt)
                row = {"space": name, "study": "width", "size": size, "adapt": adapt,
                       **metrics(y[pool], pred.predict(p_archs).score)}  # fmt: skip
                out.append(row)
                print(json.dumps(row), flush=True)
        for k in args.budgets if args.select in ("all", "finetune") else []:
            for epochs, lr in FT_GRID:
                vals = []
                for s in range(args.select_seeds):
                    idx = draw(pool, k, s)
                    rest = np.setdiff1d(pool, idx)
                    pred = fine_tuned(base, [archs[i] for i in idx], y[idx], epochs, lr)
                    vals.append(metrics(y[rest], pred.predict([archs[i] for i in rest]).score)["spearman"])
                row = {"space": name, "study": "fine_tune", "k": k, "epochs": epochs, "lr": lr,
                       "spearman": vals, "median": float(np.median([v for v in vals if v is not None]))}  # fmt: skip
                out.append(row)
                print(json.dumps(row), flush=True)
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--predictor", default="nb201", help="predictor file or shipped name (default: nb201)")
    parser.add_argument("--zoo", action="append", default=[], metavar="SPACE=FILE[,FILE]",
                        help="target space and its zoo files (repeatable; default: the shipped zoos)")  # fmt: skip
    parser.add_argument("--budgets", default="10,25,50", help="comma-separated K")
    parser.add_argument("--seeds", type=int, default=5, help="seeds of the K-sample draw")
    parser.add_argument("--test-fraction", type=float, default=0.5)
    parser.add_argument("--ft-epochs", type=int, default=100, help="fine-tuning epochs")
    parser.add_argument("--ft-lr", type=float, default=3e-4, help="fine-tuning learning rate")
    parser.add_argument("--select", choices=["widths", "finetune", "all"], default=None,
                        help="run the selection study on the pool instead")  # fmt: skip
    parser.add_argument("--select-seeds", type=int, default=3)
    parser.add_argument("--data-dir", default=None, help="CIFAR-10 folder for the zero-cost proxies")
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    parser.add_argument("--leave-one-out", action="store_true",
                        help="per target space, train a predictor on the other zoos, not --predictor")  # fmt: skip
    parser.add_argument("--targets", default=None, help="comma-separated spaces to report (default: every --zoo)")
    parser.add_argument("--no-proxies", action="store_true", help="skip the zero-cost proxies (measured before)")
    parser.add_argument("--pretrained", default=None, help="with --leave-one-out: start from this pretrained file")
    parser.add_argument("--zoo-size", action="append", default=[], metavar="SPACE=K=V[,K=V]",
                        help="the width a zoo was trained at, for its proxies (default: ZOO_SIZES)")  # fmt: skip
    args = parser.parse_args(argv)
    import torch

    torch.set_num_threads(args.threads)
    zoos = parse_zoos(args.zoo) if args.zoo else {k: list(v) for k, v in DEFAULT_ZOOS.items()}
    args.zoo_map = zoos
    for item in args.zoo_size:
        name, spec = item.split("=", 1)
        ZOO_SIZES[name] = {k: _number(v) for k, v in (kv.split("=", 1) for kv in spec.split(","))}
    args.budgets = [int(b) for b in args.budgets.split(",")]
    t0 = time.perf_counter()
    rows = run_select(args, zoos) if args.select else run_report(args, zoos)
    if not args.select:
        for r in rows:
            print(json.dumps(r))
    settings = {k: v for k, v in vars(args).items()}
    settings.update(zoos=zoos, zoo_sizes=ZOO_SIZES, seconds=round(time.perf_counter() - t0, 1))
    print(json.dumps({"settings": settings}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
