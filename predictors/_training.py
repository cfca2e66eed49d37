"""Helpers of predictor training: the ranking loss, Spearman, argument checks and reading zoo files."""

from __future__ import annotations

import math
import os
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
import torch.nn.functional as F

if TYPE_CHECKING:
    from wsnas._arch import Arch
    from wsnas.encoding import CandidateGraphs, ParamGraph
    from wsnas.search_spaces import SearchSpace

__all__ = [
    "Prediction", "pairwise_ranking_loss", "spearman", "zoo_training_set", "zoo_spaces", "space_graphs", "ZOO_TARGETS"
]  # fmt: skip

@dataclass(frozen=True)
class Prediction:
    """Scores of ``n`` architectures: ``score [n]`` the ensemble mean, ``uncertainty [n]`` its std (float64)."""

    score: np.ndarray
    uncertainty: np.ndarray

    def __len__(self) -> int:
        return len(self.score)


#: numeric zoo-record fields a predictor can be trained to predict
ZOO_TARGETS = ("val_acc", "val_loss", "params", "flops")


def pairwise_ranking_loss(scores: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Mean of ``softplus(-(s_i - s_j))`` over all pairs with ``t_i > t_j``; ``scores, targets [b]`` -> ``[]``.

    The logistic (RankNet) loss: zero gradient only when every better architecture scores higher by
    a wide margin. A batch without an ordered pair gives a zero loss that keeps the graph.
    """
    ds = scores[:, None] - scores[None, :]  # [b, b]
    better = targets[:, None] > targets[None, :]  # [b, b]
    if not bool(better.any()):
        return scores.sum() * 0.0
    return F.softplus(-ds[better]).mean()


def ranking_loss(scores: torch.Tensor, z: torch.Tensor, regression_weight: float) -> torch.Tensor:
    """``pairwise_ranking_loss + regression_weight * MSE``; ``scores, z [b]`` (``z``: standardised targets)."""
    return pairwise_ranking_loss(scores, z) + regression_weight * F.mse_loss(scores, z)


def spearman(a: np.ndarray, b: np.ndarray) -> float:
    """Spearman's rho (``scipy.stats.spearmanr``); ``nan`` with fewer than 3 points or a constant side."""
    from scipy.stats import spearmanr

    if len(a) < 3 or np.ptp(a) == 0 or np.ptp(b) == 0:
        return math.nan
    return float(spearmanr(a, b).statistic)


def as_targets(targets: Sequence[float] | np.ndarray, n: int) -> np.ndarray:
    """``[n]`` float64 targets, checked: one per architecture, all finite."""
    y = np.asarray(targets, dtype=np.float64).reshape(-1)
    if len(y) != n:
        raise ValueError(f"one target per architecture is needed, got {n} archs and {len(y)} targets")
    if not np.isfinite(y).all():
        bad = np.flatnonzero(~np.isfinite(y))[:5].tolist()
        raise ValueError(f"targets must be finite, got non-finite values at positions {bad}")
    return y


def check_positive(**values: int) -> None:
    """Every keyword must be an int >= 1 (the message names the first that is not)."""
    for name, v in values.items():
        if isinstance(v, bool) or not isinstance(v, int) or v < 1:
            raise ValueError(f"{name} must be an int >= 1, got {v!r}")


def finite_or_none(v: float | None) -> float | None:
    """``v`` as a float, or ``None`` when it is missing or not finite (cards are strict JSON)."""
    return None if v is None or not math.isfinite(v) else float(v)


def progress_bar(total: int, desc: str, enabled: bool) -> Any:
    """A tqdm bar on stderr counting member-epochs."""
    from tqdm import tqdm

    return tqdm(total=total, desc=desc, unit="epoch", file=sys.stderr, disable=not enabled, leave=False)


def zoo_training_set(
    paths: Sequence[str | os.PathLike[str]], space: SearchSpace | str | None, target: str
) -> tuple[SearchSpace, list[Arch], np.ndarray, dict[str, Any]]:
    """Architectures and targets from zoo files: diverged records and non-finite targets are skipped,
    records of one architecture (several seeds or tasks) are averaged.

    Returns:
        ``(space, archs, targets [n], description)`` where ``description`` is the card's training-data
        entry: record counts and, per file, its path and the tasks (name, fingerprint) it holds.

    Raises:
        ValueError: no file, a missing file, an unknown target, no usable record, several spaces.
        wsnas.ZooFileError: a file is not a zoo.
    """
    from wsnas.search_spaces import get_space
    from wsnas.training import Zoo

    if not paths:
        raise ValueError("training from zoos needs at least one zoo file, got none")
    if target not in ZOO_TARGETS:
        raise ValueError(f"target must be one of {list(ZOO_TARGETS)}, got {target!r}")
    files, records = [], []
    for p in paths:
        if not Path(p).is_file():
            raise ValueError(f"zoo file {str(p)!r} does not exist")
        recs = Zoo.load(p)
        kept = [r for r in recs if not r.diverged and _is_finite(getattr(r, target))]
        tasks = sorted({(r.task, r.task_fingerprint) for r in kept})
        files.append(
            {
                "path": str(p),
                "records": len(recs),
                "used": len(kept),
                "tasks": [{"task": t, "fingerprint": fp} for t, fp in tasks],
            }
        )
        records.extend(kept)
    if not records:
        raise ValueError(f"no usable zoo record (not diverged, finite {target}) in {[str(p) for p in paths]}")
    spaces = sorted({r.space for r in records})
    if space is None:
        if len(spaces) != 1:
            raise ValueError(f"the zoo records come from several spaces {spaces}; name the space to train on")
        space = spaces[0]
    space_obj = get_space(space) if isinstance(space, str) else space
    records = [r for r in records if r.space == space_obj.name]
    if not records:
        raise ValueError(f"no zoo record of space {space_obj.name!r}; the files hold {spaces}")
    groups: dict[str, list] = {}
    for r in records:
        groups.setdefault(r.arch_hash, []).append(r)
    archs = [space_obj.from_string(g[0].arch) for g in groups.values()]
    y = np.array([np.mean([float(getattr(r, target)) for r in g]) for g in groups.values()])
    description = {"source": "zoo", "records": len(records), "zoos": files}
    return space_obj, archs, y, description


def zoo_spaces(paths: Sequence[str | os.PathLike[str]]) -> list[str]:
    """The spaces of the records of zoo files, in order of first appearance (the first file's first)."""
    from wsnas.training import Zoo

    seen: dict[str, None] = {}
    for p in paths:
        if Path(p).is_file():
            seen.update(dict.fromkeys(r.space for r in Zoo.load(p)))
    return list(seen)


def space_graphs(candidates: CandidateGraphs, archs: Sequence[Arch], seed: int, chunk: int = 256) -> list[ParamGraph]:
    """One graph per (validated) architecture at ``candidates``' width, weights generated from ``seed``."""
    out: list[ParamGraph] = []
    for i in range(0, len(archs), chunk):
        part = archs[i : i + chunk]
        out.extend(candidates._graphs(part, [seed] * len(part), "cpu").unbatch())
    return out


def _is_finite(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)
