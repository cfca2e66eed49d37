"""What the tracer's modules share: the supported layers, the traced value and the graph builder.

:mod:`wsnas.encoding._trace` (templates and their cache), :mod:`wsnas.encoding._trace_ops` (the symbolic
interpreter) and :mod:`wsnas.encoding._trace_cache` (one-level graphs) all import from here, and this module
imports none of them, so the tracer's files form no import cycle.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from functools import lru_cache

import numpy as np
import torch
import torch.fx as fx
import torch.nn as nn
import torch.nn.functional as F

from wsnas.encoding._layers import Zero
from wsnas.encoding._paramgraph import EDGE_TYPES, NODE_FEATURES, NODE_TYPES

__all__ = [
    "ACTS",
    "ACT_FUNCS",
    "ACT_METHODS",
    "COL",
    "ET",
    "FN",
    "NT",
    "SUPPORTED_LAYERS",
    "Builder",
    "FlatTracer",
    "Value",
    "pair",
    "window",
]

SUPPORTED_LAYERS: tuple[type[nn.Module], ...] = (
    nn.Conv2d, nn.Linear, nn.BatchNorm1d, nn.BatchNorm2d, nn.ReLU, nn.GELU, nn.SiLU, nn.Tanh,
    nn.MaxPool2d, nn.AvgPool2d, nn.AdaptiveAvgPool2d, nn.Identity, nn.Dropout, nn.Flatten, Zero,
)  # fmt: skip
ACTS = {nn.ReLU: 1, nn.GELU: 2, nn.SiLU: 3, nn.Tanh: 4}
ACT_FUNCS = {F.relu: 1, torch.relu: 1, F.gelu: 2, F.silu: 3, torch.tanh: 4, F.tanh: 4}
ACT_METHODS = {"relu": 1, "tanh": 4}
NT = {name: i for i, name in enumerate(NODE_TYPES)}
ET = {name: i for i, name in enumerate(EDGE_TYPES)}
FN = len(NODE_FEATURES)
COL = {name: i for i, name in enumerate(NODE_FEATURES)}


@dataclass
class Value:
    """A traced tensor: materialised channel ``nodes [C]``, or pending ``terms`` (src nodes, edge type,
    value, act [C]) summed channel by channel; ``spatial`` is the shape after the channel dim.
    Index arrays are int64 numpy arrays (numpy's small-op overhead is ~5x below torch's; see Builder)."""

    channels: int
    spatial: tuple[int, ...]
    nodes: np.ndarray | None = None
    act: np.ndarray | None = None  # [C] activation code per channel (0: none), with ``nodes``
    terms: list[tuple[np.ndarray, str, float, np.ndarray]] = field(default_factory=list)
    producer: tuple | None = None  # (frame, fx node) of the Conv2d/Linear that made ``nodes``, for BN folding


class Builder:
    """Accumulates nodes, edges and weight placements while the fx graph is interpreted.

    Bookkeeping is numpy and per call, not per element: node and edge types are (count, code) runs,
    channel-wise edge values are (count, value) runs, and activation flags per-call masks, all expanded
    once in :func:`_finish` (NB201 C=8: interpretation + finish fell from ~2.5 ms with torch ops per
    call to a few hundred us).
    """

    def __init__(self, k: int, offsets: dict[int, int]) -> None:
        self.k, self.fe, self.offsets = k, k * k + 1, offsets
        self.n = 0
        self.node_runs: list[tuple[int, int]] = []  # (count, node type code)
        self.static_rows: list[tuple[np.ndarray, int, np.ndarray | float]] = []
        self.node_w: list[tuple[np.ndarray, int, np.ndarray]] = []  # (nodes, col, weight index)
        self.src: list[np.ndarray] = []
        self.dst: list[np.ndarray] = []
        self.edge_runs: list[tuple[int, int, float]] = []  # (count, edge type code, centre value)
        self.e_act: list[np.ndarray] = []  # per call: whether each edge's message passes the source's act
        self.e_runs: list[tuple[int, int, int, int, int]] = []  # (first edge id, n, weight offset, kh, kw)
        self.e = 0
        self.acts: list[tuple[np.ndarray, int]] = []  # (nodes, activation code 1..4), last one wins

    def nodes(self, count: int, ntype: str) -> np.ndarray:
        ids = np.arange(self.n, self.n + count)
        self.n += count
        self.node_runs.append((count, NT[ntype]))
        return ids

    def edges(self, src: np.ndarray, dst: np.ndarray, etype: str, act: np.ndarray, value: float = 0.0) -> int:
        """Add edges ``src[i] -> dst[i]``; ``act [E]`` is the source's activation code on each edge.
        Returns the id of the first new edge."""
        first = self.e
        self.e += src.size
        self.src.append(src)
        self.dst.append(dst)
        self.edge_runs.append((src.size, ET[etype], value))
        self.e_act.append(act != 0)
        return first

    def channelwise(self, src: np.ndarray, dst: np.ndarray, etype: str, value: float, act: np.ndarray) -> None:
        self.edges(src, dst, etype, act, float(value))

    def weight(self, param: torch.Tensor) -> int:
        """The offset of ``param`` in the flat weight buffer."""
        return self.offsets[id(param)]


class FlatTracer(fx.Tracer):
    """Traces a whole network in one piece, keeping only the supported layers whole (the reference path)."""

    def is_leaf_module(self, m: nn.Module, qualname: str) -> bool:
        return isinstance(m, SUPPORTED_LAYERS) or super().is_leaf_module(m, qualname)


def pair(v: int | tuple[int, ...]) -> tuple[int, int]:
    return (v, v) if isinstance(v, int) else (int(v[0]), int(v[1]))


@lru_cache(maxsize=4096)  # ~5k calls per 250 NB201 nets with a handful of distinct arguments
def _window_cached(spatial: tuple[int, ...], k, s, p, d=1, ceil: bool = False) -> tuple[int, ...]:  # noqa: ANN001
    """The spatial shape after a conv/pool window (the usual floor((h + 2p - d(k-1) - 1)/s + 1))."""
    if len(spatial) != 2 or p == "same":
        return spatial
    if p == "valid":
        p = 0
    rnd = math.ceil if ceil else math.floor
    return tuple(
        int(rnd((h + 2 * pp - dd * (kk - 1) - 1) / ss + 1))
        for h, kk, ss, pp, dd in zip(spatial, pair(k), pair(s), pair(p), pair(d))
    )


def window(spatial: tuple[int, ...], k, s, p, d=1, ceil: bool = False) -> tuple[int, ...]:  # noqa: ANN001
    """The spatial shape after a conv/pool window (the usual floor((h + 2p - d(k-1) - 1)/s + 1))."""
    try:
        return _window_cached(spatial, k, s, p, d, ceil)
    except TypeError:  # a list argument (F.avg_pool2d(x, [2, 2])): not hashable
        return _window_cached.__wrapped__(spatial, k, s, p, d, ceil)
