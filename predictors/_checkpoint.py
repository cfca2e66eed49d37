"""Fit checkpoints: the progress of :meth:`WeightPredictor.fit` in one safetensors file, so that a fit that
is stopped (Ctrl-C, SIGTERM, a crash) resumes where it stopped and ends with the predictor an unstopped
fit gives.

>>> pred.fit(archs, accs, checkpoint="nb201.safetensors.ckpt")   # Ctrl-C ... then the same call again

The file holds, at an epoch boundary, every finished member's kept state (``done{i}.{name}``) and of the
member in training its weights (``cur.{name}``), its best epoch's weights (``best.{name}``), its
optimizer's moments (``opt.{p}.{name}``) and, in the ``checkpoint`` metadata (JSON), the member index,
epochs done, best validation Spearman, epochs waited, the member's data-order generator and the
``key``: a digest of everything the fit's result depends on (the predictor's space, encoding, encoder,
ensemble, seed, pretrained encoder, the architectures, the targets and the fit's options). A file whose
key differs belongs to another fit: :func:`open_checkpoint` refuses it rather than overwrite it.
Reading uses ``safetensors.safe_open`` (data only: nothing is executed); writing is atomic.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from wsnas._atomic import atomic_path
from wsnas._errors import PredictorFileError

if TYPE_CHECKING:
    from wsnas.predictors._predictor import WeightPredictor

__all__ = ["FitCheckpoint", "FitState", "fit_key", "open_checkpoint", "SAVE_EVERY"]

_FORMAT = "wsnas-fit-checkpoint"
#: seconds between two writes within a member (a member's end is always written)
SAVE_EVERY = 5.0


@dataclass
class FitState:
    """Where a fit stands at an epoch boundary.

    Attributes:
        member: index of the member in training (``== ensemble`` once all are done).
        epoch: epochs this member has finished.
        best: its best validation Spearman so far (``-inf``: none yet).
        waited: epochs since that best.
        rng: the state of its data-order generator (``numpy.random.Generator.bit_generator.state``).
        done: kept state dicts of members ``0 .. member - 1``.
        member_best: their best validation Spearman (``None`` without validation).
        weights, best_weights, optimizer: the member's state dict, its best epoch's (or ``None``) and the
            ``state`` part of its optimizer's state dict.
    """

    member: int
    epoch: int = 0
    best: float = -float("inf")
    waited: int = 0
    rng: dict[str, Any] | None = None
    done: list[dict[str, torch.Tensor]] = field(default_factory=list)
    member_best: list[float | None] = field(default_factory=list)
    weights: dict[str, torch.Tensor] | None = None
    best_weights: dict[str, torch.Tensor] | None = None
    optimizer: dict[int, dict[str, torch.Tensor]] | None = None


def fit_key(pred: WeightPredictor, archs: Sequence[Any], targets: np.ndarray, options: dict[str, Any]) -> str:
    """sha256 over what a fit's result depends on: the predictor's card fields that shape it, its pretrained
    encoder, the architectures (their strings), the targets and ``options`` (JSON-able)."""
    h = hashlib.sha256()
    card = pred.card
    shape = {k: card[k] for k in ("space", "encoding", "encoder", "ensemble", "seed")}
    h.update(json.dumps({"predictor": shape, "options": options}, sort_keys=True, default=str).encode())
    for name, t in sorted((pred._pretrained or {}).items()):
        h.update(name.encode() + t.detach().cpu().contiguous().reshape(-1).view(torch.uint8).numpy().tobytes())
    h.update("\n".join(str(a) for a in archs).encode())
    h.update(np.ascontiguousarray(targets, dtype=np.float64).tobytes())
    return h.hexdigest()


class FitCheckpoint:
    """The checkpoint file of one fit (``key``); written at most every ``every`` seconds (``None``:
    :data:`SAVE_EVERY`) and at the end of every member, removed by :meth:`remove` when the fit completes."""

    def __init__(self, path: str | os.PathLike[str], key: str, *, every: float | None = None) -> None:
        self.path = Path(path)
        self.key = key
        self.every = SAVE_EVERY if every is None else every
        self._last = -float("inf")
        #: what :func:`open_checkpoint` found: ``None`` or the state the fit resumes from
        self.resumed: FitState | None = None

    def due(self) -> bool:
        """Whether ``every`` seconds have passed since the last write."""
        return time.monotonic() - self._last >= self.every

    def save(self, state: FitState, *, force: bool = False) -> bool:
        """Write ``state`` (atomically) when ``force`` or :meth:`due`; whether it wrote."""
        if not force and not self.due():
            return False
        from safetensors.torch import save_file

        tensors: dict[str, torch.Tensor] = {}
        for i, sd in enumerate(state.done):
            tensors.update({f"done{i}.{k}": v for k, v in sd.items()})
        for prefix, sd in (("cur", state.weights), ("best", state.best_weights)):
            tensors.update({f"{prefix}.{k}": v for k, v in (sd or {}).items()})
        for p, moments in (state.optimizer or {}).items():
            tensors.update({f"opt.{p}.{k}": v for k, v in moments.items()})
        tensors = {k: v.detach().cpu().contiguous().clone() for k, v in tensors.items()}
        meta = {
            "key": self.key,
            "member": state.member,
            "epoch": state.epoch,
            "best": None if state.best == -float("inf") else state.best,
            "waited": state.waited,
            "rng": state.rng,
            "member_best": state.member_best,
            "has_best": state.best_weights is not None,
        }
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with atomic_path(self.path) as tmp:
            save_file(tensors, str(tmp), metadata={"format": _FORMAT, "checkpoint": json.dumps(meta)})
        self._last = time.monotonic()
        return True

    def remove(self) -> None:
        """Delete the file (the fit is complete)."""
        self.path.unlink(missing_ok=True)


def _read(path: Path) -> tuple[dict[str, Any], dict[str, torch.Tensor]]:
    from safetensors import safe_open

    try:
        with safe_open(str(path), framework="pt") as f:
            metadata = f.metadata() or {}
            tensors = {k: f.get_tensor(k) for k in f.keys()}
    except Exception as exc:  # safetensors raises its own error types for a damaged file
        raise PredictorFileError(f"{str(path)!r} is not a readable fit checkpoint: {exc}") from None
    if metadata.get("format") != _FORMAT:
        raise PredictorFileError(f"{str(path)!r} is not a wsnas fit checkpoint")
    try:
        meta = json.loads(metadata["checkpoint"])
    except (KeyError, json.JSONDecodeError):
        raise PredictorFileError(f"{str(path)!r}: the fit checkpoint's metadata is damaged") from None
    return meta, tensors


def _split(tensors: dict[str, torch.Tensor], prefix: str) -> dict[str, torch.Tensor]:
    return {k[len(prefix) :]: v for k, v in tensors.items() if k.startswith(prefix)}


def open_checkpoint(path: str | os.PathLike[str], key: str, *, every: float | None = None) -> FitCheckpoint:
    """The checkpoint of the fit ``key`` at ``path``; its :attr:`~FitCheckpoint.resumed` state is the saved
    progress when the file exists.

    Raises:
        ValueError: the file holds the progress of another fit (other inputs or options).
        wsnas.PredictorFileError: the file is not a fit checkpoint or is damaged.
    """
    ckpt = FitCheckpoint(path, key, every=every)
    if not ckpt.path.exists():
        return ckpt
    meta, tensors = _read(ckpt.path)
    if meta.get("key") != key:
        raise ValueError(
            f"the checkpoint {str(ckpt.path)!r} holds the progress of a fit with other data or options; "
            "rerun with the ones it was started with to resume, or delete it to start over"
        )
    member = int(meta["member"])
    optimizer: dict[int, dict[str, torch.Tensor]] = {}
    for k, v in _split(tensors, "opt.").items():
        p, name = k.split(".", 1)
        optimizer.setdefault(int(p), {})[name] = v
    ckpt.resumed = FitState(
        member=member,
        epoch=int(meta["epoch"]),
        best=-float("inf") if meta["best"] is None else float(meta["best"]),
        waited=int(meta["waited"]),
        rng=meta["rng"],
        done=[_split(tensors, f"done{i}.") for i in range(member)],
        member_best=list(meta["member_best"]),
        weights=_split(tensors, "cur.") or None,
        best_weights=_split(tensors, "best.") if meta.get("has_best") else None,
        optimizer=optimizer or None,
    )
    return ckpt
