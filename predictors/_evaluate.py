"""The evaluation table: the weight encoder against its baselines on one held-out split of a zoo.

>>> table = evaluate(["zoo.jsonl"], label_budgets=(50, 100, None), seed=0)
>>> print(table.to_markdown())

The zoo's distinct architectures (records of one architecture averaged, diverged ones skipped) are split
once with ``seed``: a test set (``test_fraction`` of them, or ``n_test``) fixed across budgets, and a
pool drawn in one seeded order; the training set of budget ``b`` is the first ``b`` of that order (so
the sets are nested; ``None`` = the whole pool). Trainable methods are fitted at each budget, training-
free ones (the zero-cost proxies) are computed once and repeated at every budget; budgets that come to the
same number of labels (200 and all on a pool of 180) share one fit and its row. Each row holds the
Spearman and Kendall correlation of the method's scores with the test targets and its top-5% precision.
"""

from __future__ import annotations

import copy
import json
import math
import os
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from wsnas.predictors._encoder import EncoderConfig
    from wsnas.predictors._predictor import WeightPredictor
    from wsnas.search_spaces import SearchSpace
    from wsnas.training import Task

__all__ = ["evaluate", "EvalTable", "top_fraction_precision", "TRAINABLE_METHODS", "ZERO_COST_METHODS", "METHODS"]

#: methods fitted at each label budget
TRAINABLE_METHODS = ("encoder", "encoder_shuffled", "arch_gnn", "weight_stats", "zc_gbm")
#: training-free methods (one per zero-cost proxy)
ZERO_COST_METHODS = ("synflow", "naswot", "snip", "grad_norm", "jacob_cov", "params", "flops")
METHODS = TRAINABLE_METHODS + ZERO_COST_METHODS
_COLUMNS = ("method", "budget", "n_train", "n_test", "spearman", "kendall", "top5_precision", "seconds")


def top_fraction_precision(y_true: np.ndarray, y_pred: np.ndarray, fraction: float = 0.05) -> float:
    """Fraction of the true top ``k`` of ``y_true [n]`` found in the predicted top ``k`` of ``y_pred [n]``,
    ``k = max(1, round(fraction * n))``; ties broken by position (the earlier index ranks higher)."""
    y_true, y_pred = np.asarray(y_true, np.float64), np.asarray(y_pred, np.float64)
    if y_true.shape != y_pred.shape or y_true.ndim != 1 or len(y_true) == 0:
        raise ValueError(f"top_fraction_precision needs two [n] arrays, n >= 1, got {y_true.shape} and {y_pred.shape}")
    if not 0 < fraction <= 1:
        raise ValueError(f"fraction must be in (0, 1], got {fraction}")
    k = max(1, round(fraction * len(y_true)))
    top = lambda v: set(np.argsort(-np.nan_to_num(v, nan=-np.inf), kind="stable")[:k].tolist())  # noqa: E731
    return len(top(y_true) & top(y_pred)) / k


def _metrics(y_true: np.ndarray, y_pred: np.ndarray) -> dict[str, float | None]:
    from scipy.stats import kendalltau, rankdata, spearmanr

    r = rankdata(np.nan_to_num(y_pred, nan=-np.inf))  # rank-based metrics: infinities are fine as ranks
    ok = len(y_true) >= 3 and np.ptp(r) > 0 and np.ptp(y_true) > 0
    rho = float(spearmanr(r, y_true).statistic) if ok else math.nan
    tau = float(kendalltau(r, y_true).statistic) if ok else math.nan
    fin = lambda v: v if math.isfinite(v) else None  # noqa: E731
    return {"spearman": fin(rho), "kendall": fin(tau), "top5_precision": top_fraction_precision(y_true, r)}


@dataclass
class EvalTable:
    """Rows (one per method x budget, dicts with the keys of ``columns``), the split and the settings.

    ``splits`` maps ``"test"`` and each budget label to the architecture hashes used.
    """

    rows: list[dict[str, Any]]
    meta: dict[str, Any]
    splits: dict[str, list[str]] = field(default_factory=dict)
    columns: tuple[str, ...] = _COLUMNS

    def row(self, method: str, budget: str) -> dict[str, Any]:
        """The row of ``method`` at ``budget`` (a label such as ``"50"`` or ``"all"``)."""
        for r in self.rows:
            if r["method"] == method and r["budget"] == budget:
                return r
        raise KeyError(f"no row for method {method!r} at budget {budget!r}")

    def to_markdown(self) -> str:
        """A GitHub-markdown table, one line per row, with a heading line of the settings."""
        m = self.meta
        head = (f"<!-- space={m.get('space')} target={m.get('target')} archs={m.get('n_archs')} "
                f"test={m.get('n_test')} seed={m.get('seed')} -->")  # fmt: skip
        lines = [head, "| " + " | ".join(self.columns) + " |", "|" + "---|" * len(self.columns)]
        for r in self.rows:
            cells = []
            for c in self.columns:
                v = r[c]
                cells.append("n/a" if v is None else f"{v:.3f}" if isinstance(v, float) else str(v))
            lines.append("| " + " | ".join(cells) + " |")
        return "\n".join(lines) + "\n"

    def to_dict(self) -> dict[str, Any]:
        return {"meta": self.meta, "rows": self.rows, "splits": self.splits}

    def to_json(self) -> str:
        """Strict JSON of :meth:`to_dict` (missing metrics are ``null``)."""
        return json.dumps(self.to_dict(), sort_keys=True, allow_nan=False)


def _budget_label(b: int | None) -> str:
    return "all" if b is None else str(b)


def _zoo_task(paths: Sequence[str | os.PathLike[str]], data_dir: str | None) -> tuple[Task | None, str]:
    """The task named by the zoo records (``None`` when it cannot be had) and why."""
    from wsnas.training import Zoo, get_task

    names = sorted({r.task for p in paths for r in Zoo.load(p)})
    if len(names) != 1:
        return None, f"the zoos name {len(names)} tasks {names}"
    options = {}
    if names[0] == "cifar10":
        data_dir = data_dir or os.environ.get("WSNAS_CIFAR10_DIR")
        if not data_dir:
            return None, "task 'cifar10' needs --data-dir or WSNAS_CIFAR10_DIR"
        options["data_dir"] = data_dir
    try:
        return get_task(names[0], **options), f"the zoo's task {names[0]!r}"
    except Exception as exc:  # a missing dataset: fall back, and say so
        return None, f"task {names[0]!r} is unavailable: {exc}"


def evaluate(
    zoo_paths: str | os.PathLike[str] | Sequence[str | os.PathLike[str]],
    *,
    space: SearchSpace | str | None = None,
    target: str = "val_acc",
    label_budgets: Sequence[int | None] = (50, 100, 200, None),
    test_fraction: float = 0.3,
    n_test: int | None = None,
    seed: int = 0,
    methods: Sequence[str] = METHODS,
    encoder: EncoderConfig | None = None,
    ensemble: int | None = None,
    size: dict[str, Any] | None = None,
    baseline_size: dict[str, Any] | None = None,
    init: str = "kaiming_normal",
    fit_options: dict[str, Any] | None = None,
    gnn_options: dict[str, Any] | None = None,
    task: Task | None = None,
    data_dir: str | None = None,
    zero_cost_batch: int = 64,
    device: str | None = None,
    save_predictor: str | os.PathLike[str] | None = None,
    pretrained: WeightPredictor | None = None,
    progress: bool = True,
) -> EvalTable:
    """Score every method of ``methods`` (names of :data:`METHODS`) on one seeded held-out split.

    Args:
        zoo_paths: zoo files; ``space``/``target`` as in :meth:`WeightPredictor.from_zoo`.
        label_budgets: training-set sizes (ints >= 5); ``None``: the whole pool. A budget above the pool
            size is clipped to it (``n_train`` says what was used).
        test_fraction, n_test: the size of the test set (``n_test`` wins when given).
        encoder, ensemble, size, init, fit_options: the WeightPredictor (and its shuffled ablation);
            ``ensemble`` ``None``: 5, or ``pretrained``'s (which fixes it: another number is a ValueError);
            ``size`` is its encoding width (``None``: the space's proxy size).
        baseline_size: the width at which the zero-cost proxies and the weight statistics see each
            network; ``None``: the space's proxy size (the width zoos are trained at), so a narrow
            encoding width of the encoder does not handicap the baselines.
        gnn_options: keywords of :class:`ArchGNNBaseline`.
        task: the zero-cost proxies' data; ``None``: the zoo's task when it can be had (``data_dir`` or
            ``WSNAS_CIFAR10_DIR`` for cifar10), else :func:`wsnas.synthetic` (``meta["zero_cost_task"]``).
        save_predictor: write the encoder fitted at the largest budget to this file, its card's
            ``evaluation`` holding this table (rows, settings and the held-out hashes): the predictor
            that the table's encoder row measures. Needs ``"encoder"`` in ``methods``.
        pretrained: a :meth:`~WeightPredictor.pretrain` ed predictor of the zoo's space: the ``encoder`` rows
            fit copies of it (its encoder, ensemble, width and seed; pretraining saw no label, so one
            pretrained predictor serves every budget). ``None``: the encoder rows train from scratch.

    Returns:
        An :class:`EvalTable` with ``len(methods) * len(label_budgets)`` rows, method-major.

    Raises:
        ValueError: an unknown method, a bad budget or split size, too few architectures.
    """
    import torch

    from wsnas.predictors._baselines import ArchGNNBaseline, WeightStatsBaseline
    from wsnas.predictors._encoder import EncoderConfig
    from wsnas.predictors._predictor import WeightPredictor
    from wsnas.predictors._shuffled import ShuffledWeightPredictor
    from wsnas.predictors._training import progress_bar, zoo_training_set
    from wsnas.predictors._zc_gbm import ZeroCostGBMBaseline, ZeroCostScores

    methods = list(dict.fromkeys(methods))
    unknown = [m for m in methods if m not in METHODS]
    if unknown or not methods:
        raise ValueError(f"methods must be a non-empty list of {list(METHODS)}, got unknown {unknown or 'none'}")
    if pretrained is not None and getattr(pretrained, "pretraining", None) is None:
        raise ValueError("pretrained must be a pretrained WeightPredictor (pretrain() or a file written after it)")
    if pretrained is not None and ensemble not in (None, pretrained.ensemble):
        raise ValueError(f"pretrained fixes the ensemble at {pretrained.ensemble}, got ensemble={ensemble}")
    ensemble = (pretrained.ensemble if pretrained is not None else 5) if ensemble is None else ensemble
    if save_predictor is not None and "encoder" not in methods:
        raise ValueError("save_predictor needs the 'encoder' method in methods")
    budgets = list(label_budgets)
    for b in budgets:
        if b is not None and (isinstance(b, bool) or not isinstance(b, int) or b < 5):
            raise ValueError(f"label budgets must be ints >= 5 or None (all), got {b!r}")
    if not budgets or len({_budget_label(b) for b in budgets}) != len(budgets):
        raise ValueError(f"label budgets must be a non-empty list without repeats, got {budgets}")
    paths = [zoo_paths] if isinstance(zoo_paths, (str, os.PathLike)) else list(zoo_paths)
    space_obj, archs, y, description = zoo_training_set(paths, space, target)
    n = len(archs)
    if pretrained is not None and pretrained.space.name != space_obj.name:
        raise ValueError(f"pretrained was pretrained on {pretrained.space.name!r}, the zoo is of {space_obj.name!r}")
    if n_test is None:
        if not 0 < test_fraction < 1:
            raise ValueError(f"test_fraction must be in (0, 1), got {test_fraction}")
        n_test = round(test_fraction * n)
    if isinstance(n_test, bool) or not isinstance(n_test, int) or n_test < 3 or n - n_test < 5:
        raise ValueError(f"the split needs >= 3 test and >= 5 training architectures, got n_test={n_test} of {n}")
    perm = np.random.default_rng(seed).permutation(n)
    test_idx, pool = np.sort(perm[:n_test]), perm[n_test:]
    test_archs, y_test = [archs[i] for i in test_idx], y[test_idx]
    encoder = encoder if encoder is not None else EncoderConfig()
    baseline_size = dict(space_obj.proxy_size if baseline_size is None else baseline_size)
    fit_options = {"progress": False, "target_name": target, **(fit_options or {})}
    zc_task, why = (task, "given") if task is not None else _zoo_task(paths, data_dir)
    if zc_task is None and any(m in ZERO_COST_METHODS for m in methods):
        print(f"evaluate: zero-cost proxies use the synthetic task ({why})", file=sys.stderr)
    splits = {"test": [archs[i].hash for i in test_idx]}
    meta = {
        "space": space_obj.name, "target": target, "seed": seed, "n_archs": n, "n_test": n_test,
        "n_pool": len(pool), "methods": methods, "budgets": [_budget_label(b) for b in budgets],
        "encoder": encoder.to_dict(), "ensemble": ensemble, "size": size, "baseline_size": baseline_size,
        "init": init,
        "zero_cost_task": zc_task.name if zc_task is not None else "synthetic", "zero_cost_task_source": why,
        "zoo": description,
        "pretrained": None if pretrained is None else {
            k: pretrained.pretraining.get(k) for k in ("source", "task", "n", "targets", "epochs", "held_out_spearman")
        },
    }  # fmt: skip
    n_trainable = sum(m in TRAINABLE_METHODS for m in methods)
    # budgets that come to the same number of labels (200 and all on a pool of 180) share one fit
    n_trains = {_budget_label(b): len(pool) if b is None else min(b, len(pool)) for b in budgets}
    n_fits = n_trainable * len(set(n_trains.values()))
    bar = progress_bar(n_fits + len(methods) - n_trainable, "evaluate", progress)
    bar.unit = "fit"
    results: dict[tuple[str, str], dict[str, Any]] = {}
    # every proxy of an architecture comes from one network (built and given weights once), memoised for the
    # single-proxy rows and the boosting baseline alike; a row's seconds are its share of the test set's cost
    zc_scores = ZeroCostScores(space_obj, task=zc_task, batch_size=zero_cost_batch, size=baseline_size, seed=seed,
                               init=init)  # fmt: skip
    single = [m for m in methods if m in ZERO_COST_METHODS]
    if single:
        t0 = time.perf_counter()
        zc_test = zc_scores.matrix(test_archs)  # [n_test, P]
        share = (time.perf_counter() - t0) / len(zc_scores.names)
        for m in single:
            row = {**_metrics(y_test, zc_test[:, zc_scores.names.index(m)]), "seconds": share}
            for b in budgets:
                results[(m, _budget_label(b))] = {"n_train": 0, **row}
            bar.set_postfix(method=m)
            bar.update(1)
    largest = max(budgets, key=lambda b: n_trains[_budget_label(b)])
    kept = None
    fitted: dict[tuple[str, int], dict[str, Any]] = {}  # (method, n_train) -> its row
    for b in budgets:
        n_tr = n_trains[_budget_label(b)]
        train_idx = pool[:n_tr]
        splits[_budget_label(b)] = [archs[i].hash for i in train_idx]
        tr_archs, y_tr = [archs[i] for i in train_idx], y[train_idx]
        for m in methods:
            if m not in TRAINABLE_METHODS:
                continue
            if (m, n_tr) in fitted:
                results[(m, _budget_label(b))] = fitted[(m, n_tr)]
                continue
            bar.set_postfix(method=m, budget=_budget_label(b))
            t0 = time.perf_counter()
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(seed)
                if m == "encoder" and pretrained is not None:
                    model = copy.deepcopy(pretrained).fit(tr_archs, y_tr, **fit_options)
                    scores = model.predict(test_archs).score
                    if n_tr == n_trains[_budget_label(largest)]:
                        kept = model
                elif m in ("encoder", "encoder_shuffled"):
                    cls = WeightPredictor if m == "encoder" else ShuffledWeightPredictor
                    model = cls(space_obj, encoder=encoder, ensemble=ensemble, seed=seed, size=size, init=init,
                                device=device).fit(tr_archs, y_tr, **fit_options)  # fmt: skip
                    scores = model.predict(test_archs).score
                    if m == "encoder" and n_tr == n_trains[_budget_label(largest)]:
                        kept = model
                elif m == "arch_gnn":
                    scores = (
                        ArchGNNBaseline(space_obj, seed=seed, **(gnn_options or {}))
                        .fit(tr_archs, y_tr)
                        .predict(test_archs)
                    )
                elif m == "zc_gbm":
                    scores = ZeroCostGBMBaseline(space_obj, scores=zc_scores, seed=seed).fit(tr_archs, y_tr).predict(
                        test_archs
                    )
                else:
                    scores = (
                        WeightStatsBaseline(space_obj, size=baseline_size, seed=seed, init=init)
                        .fit(tr_archs, y_tr)
                        .predict(test_archs)
                    )
            results[(m, _budget_label(b))] = fitted[(m, n_tr)] = {
                "n_train": n_tr,
                **_metrics(y_test, scores),
                "seconds": time.perf_counter() - t0,
            }
            bar.update(1)
    bar.close()
    rows = [
        {"method": m, "budget": _budget_label(b), "n_test": n_test, **results[(m, _budget_label(b))]}
        for m in methods
        for b in budgets
    ]
    rows = [{c: r[c] for c in _COLUMNS} for r in rows]
    table = EvalTable(rows=rows, meta=meta, splits=splits)
    if save_predictor is not None:
        assert kept is not None
        kept.evaluation = {"rows": table.rows, "meta": table.meta, "test_hashes": splits["test"],
                           "encoder_budget": _budget_label(largest)}  # fmt: skip
        kept.training_data = {**(kept.training_data or {}), **description, "n_test_held_out": n_test}
        kept.save(save_predictor)
    return table
