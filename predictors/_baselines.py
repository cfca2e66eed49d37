"""Baselines of the weight encoder, reported beside it on the same splits (see DESIGN.md, "Predictors").

Every baseline has ``fit(archs, targets) -> self`` (a no-op for the training-free ones) and
``predict(archs) -> np.ndarray [n]`` (higher = better), and is deterministic for its ``seed``:

* :class:`ZeroCostBaseline`: one zero-cost proxy of the network built at the encoding width with
  generated weights, on one fixed batch of a task's training data.
* :class:`ArchGNNBaseline`: a message-passing network over the :class:`~wsnas.Arch` graph itself (op
  embeddings, numeric attributes), trained with the WeightPredictor's ranking loss; no weights at all.
* :class:`WeightStatsBaseline`: per-role statistics of the generated weights fed to a gradient-boosted
  regressor.
* :class:`ShuffledWeightPredictor`: the weight encoder on graphs whose generated weights are shuffled
  within each tensor (same structure, destroyed weight information): the shuffled-weights ablation.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
import torch.nn as nn

from wsnas._arch import Arch
from wsnas.encoding import CandidateGraphs
from wsnas.predictors._training import as_targets, check_positive, ranking_loss
from wsnas.predictors._zero_cost import ZERO_COST_PROXIES, zero_cost

if TYPE_CHECKING:
    from wsnas.search_spaces import SearchSpace
    from wsnas.training import Task

__all__ = [
    "ZeroCostBaseline",
    "ArchGNNBaseline",
    "WeightStatsBaseline",
    "weight_stat_features",
]


def _check_seed(seed: int) -> int:
    if isinstance(seed, bool) or not isinstance(seed, int) or not 0 <= seed < 2**62:
        raise ValueError(f"seed must be an int in [0, 2**62), got {seed!r}")
    return seed


def _archs(space: SearchSpace, archs: Sequence[Arch | str]) -> list[Arch]:
    return [space.from_string(a) if isinstance(a, str) else space.validate(a) for a in archs]


# -- zero-cost proxies ----------------------------------------------------------------------------------
class ZeroCostBaseline:
    """One zero-cost proxy as a training-free predictor.

    Each architecture is built at ``size`` (default ``space.proxy_size``) for the task's classes and
    channels, given weights generated from ``seed`` (:func:`wsnas.generate` + :func:`wsnas.load_into`)
    and scored on one fixed batch of ``batch_size`` training images of ``task`` drawn with ``seed``.

    Args:
        space: the search space.
        proxy: a name of :data:`~wsnas.predictors.ZERO_COST_PROXIES`.
        task: the data; ``None``: :func:`wsnas.synthetic`.
        batch_size: images in the batch (>= 2).
        size: the encoding width; ``None``: ``space.proxy_size``.
        seed: the weight-generator seed and the seed of the batch draw.
        init: the weight init rule of the generated networks.
    """

    trainable = False

    def __init__(
        self,
        space: SearchSpace,
        proxy: str,
        *,
        task: Task | None = None,
        batch_size: int = 64,
        size: dict[str, Any] | None = None,
        seed: int = 0,
        init: str = "kaiming_normal",
    ) -> None:
        if proxy not in ZERO_COST_PROXIES:
            raise ValueError(f"unknown zero-cost proxy {proxy!r}; known proxies: {', '.join(ZERO_COST_PROXIES)}")
        check_positive(batch_size=batch_size)
        if batch_size < 2:
            raise ValueError(f"batch_size must be >= 2 (proxies compare samples), got {batch_size}")
        from wsnas.training import synthetic

        self.space, self.proxy, self.seed, self.init = space, proxy, _check_seed(seed), init
        self.task = task if task is not None else synthetic()
        self.size = dict(space.proxy_size if size is None else size)
        self.batch_size = batch_size
        self._batch: tuple[torch.Tensor, torch.Tensor] | None = None

    def __repr__(self) -> str:
        return f"ZeroCostBaseline({self.space.name!r}, {self.proxy!r}, task={self.task.name!r}, seed={self.seed})"

    def batch(self) -> tuple[torch.Tensor, torch.Tensor]:
        """The fixed batch ``x [B, C, R, R]``, ``y [B]`` (drawn once with ``seed``)."""
        if self._batch is None:
            data = self.task.prepare()
            n = len(data.train_y)
            idx = np.sort(np.random.default_rng(self.seed).permutation(n)[: min(self.batch_size, n)])
            self._batch = data.train_x[torch.as_tensor(idx)], data.train_y[torch.as_tensor(idx)]
        return self._batch

    def fit(self, archs: Sequence[Arch | str], targets: Sequence[float] | np.ndarray) -> ZeroCostBaseline:
        """Training-free: returns ``self`` unchanged."""
        return self

    def network(self, arch: Arch | str) -> nn.Module:
        """``arch`` built at ``size`` for the task's classes and channels, with weights generated from ``seed``."""
        from wsnas.encoding import generate, load_into, weight_spec

        arch = _archs(self.space, [arch])[0]
        kwargs = {"num_classes": self.task.source.num_classes, "in_channels": self.task.source.in_channels}
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(self.seed)  # whatever build draws is overwritten, but keep it seeded anyway
            net = self.space.build(arch, **{**kwargs, **self.size})
        spec = weight_spec(net, init=self.init)
        load_into(net, generate(spec, [self.seed], device="cpu").candidate(0))
        return net

    def value(self, net: nn.Module, proxy: str | None = None) -> float:
        """One proxy (default: this baseline's) of a :meth:`network` on the fixed batch; ``nan`` -> ``-inf``."""
        x, y = self.batch()
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(self.seed)
            value = zero_cost(self.proxy if proxy is None else proxy, net, x, y)
        return -math.inf if math.isnan(value) else value

    def score(self, arch: Arch | str) -> float:
        """The proxy of one architecture (``nan`` becomes ``-inf``: a broken network ranks last)."""
        return self.value(self.network(arch))

    def predict(self, archs: Sequence[Arch | str]) -> np.ndarray:
        """``[n]`` proxy values (float64)."""
        return np.array([self.score(a) for a in archs], dtype=np.float64)


# -- the architecture-only GNN ----------------------------------------------------------------------------
def _numeric(v: Any) -> float | None:
    if isinstance(v, bool):
        return float(v)
    if isinstance(v, (int, float)) and math.isfinite(v):
        return math.copysign(math.log1p(abs(v)), v)
    return None


class _ArchNet(nn.Module):
    """Node/edge op embeddings + numeric node attributes, ``layers`` rounds of two-way message passing,
    sum and mean readout -> MLP -> one score per graph."""

    def __init__(self, n_node_ops: int, n_edge_ops: int, n_numeric: int, hidden: int, layers: int) -> None:
        super().__init__()
        self.node_emb = nn.Embedding(n_node_ops, hidden)
        self.edge_emb = nn.Embedding(n_edge_ops, hidden)
        self.numeric = nn.Linear(n_numeric, hidden) if n_numeric else None
        self.fwd = nn.ModuleList(nn.Linear(hidden, hidden) for _ in range(layers))
        self.bwd = nn.ModuleList(nn.Linear(hidden, hidden) for _ in range(layers))
        self.upd = nn.ModuleList(
            nn.Sequential(nn.Linear(3 * hidden, hidden), nn.ReLU(), nn.Linear(hidden, hidden)) for _ in range(layers)
        )
        self.norm = nn.ModuleList(nn.LayerNorm(hidden) for _ in range(layers))
        self.head = nn.Sequential(nn.Linear(2 * hidden, hidden), nn.ReLU(), nn.Linear(hidden, 1))

    def forward(self, b: dict[str, torch.Tensor]) -> torch.Tensor:
        """``b``: ``node_op [N]``, ``numeric [N, F]``, ``src, dst, edge_op [E]``, ``graph [N]`` -> ``[G]`` scores."""
        h = self.node_emb(b["node_op"])
        if self.numeric is not None:
            h = h + self.numeric(b["numeric"])
        src, dst, e = b["src"], b["dst"], self.edge_emb(b["edge_op"])
        n = h.shape[0]
        deg_in = torch.zeros(n).index_add_(0, dst, torch.ones(len(dst))).clamp_min(1)[:, None]
        deg_out = torch.zeros(n).index_add_(0, src, torch.ones(len(src))).clamp_min(1)[:, None]
        for fwd, bwd, upd, norm in zip(self.fwd, self.bwd, self.upd, self.norm):
            m_f = torch.zeros_like(h).index_add_(0, dst, fwd(h)[src] + e) / deg_in
            m_b = torch.zeros_like(h).index_add_(0, src, bwd(h)[dst] + e) / deg_out
            h = norm(h + upd(torch.cat([h, m_f, m_b], dim=1)))
        g, n_graphs = b["graph"], int(b["n_graphs"])
        total = torch.zeros(n_graphs, h.shape[1]).index_add_(0, g, h)
        count = torch.zeros(n_graphs).index_add_(0, g, torch.ones(n)).clamp_min(1)[:, None]
        return self.head(torch.cat([total, total / count], dim=1)).squeeze(1)


class ArchGNNBaseline:
    """An architecture-only GNN trained with the pairwise ranking loss (+ MSE) of the WeightPredictor.

    Node features: an embedding of the node's op (the space's ``node_ops`` plus input, output and an
    unknown slot) plus a linear map of its numeric attributes (``sign * log1p|v|``, keys found at fit
    time); edge features: an embedding of the edge's op (the space's ``edge_ops``, a plain wire, unknown).

    Args:
        space: the search space.
        hidden, layers: width and message-passing rounds.
        epochs, batch_size, lr, weight_decay, regression_weight: training (no early stopping).
        seed: initialisation and batch order.
    """

    trainable = True

    def __init__(
        self,
        space: SearchSpace,
        *,
        hidden: int = 32,
        layers: int = 3,
        epochs: int = 100,
        batch_size: int = 32,
        lr: float = 3e-3,
        weight_decay: float = 1e-4,
        regression_weight: float = 0.5,
        seed: int = 0,
    ) -> None:
        check_positive(hidden=hidden, epochs=epochs, batch_size=batch_size)
        if isinstance(layers, bool) or not isinstance(layers, int) or layers < 0:
            raise ValueError(f"layers must be an int >= 0, got {layers!r}")
        self.space, self.hidden, self.layers, self.seed = space, hidden, layers, _check_seed(seed)
        self.epochs, self.batch_size, self.lr = epochs, batch_size, lr
        self.wd, self.rw = weight_decay, regression_weight
        self.node_vocab = {op: i for i, op in enumerate(["input", "output", *sorted(space.node_ops or {})])}
        self.edge_vocab = {op: i for i, op in enumerate(["", *sorted(space.edge_ops or ())])}
        self.numeric_keys: list[str] = []
        self.net: _ArchNet | None = None
        self.target = (0.0, 1.0)

    def __repr__(self) -> str:
        return f"ArchGNNBaseline({self.space.name!r}, hidden={self.hidden}, layers={self.layers}, seed={self.seed})"

    def _encode(self, arch: Arch) -> dict[str, Any]:
        g = arch.graph
        nodes = list(g.nodes)
        index = {v: i for i, v in enumerate(nodes)}
        unk_n, unk_e = len(self.node_vocab), len(self.edge_vocab)
        data = g.nodes
        numeric = [[_numeric(data[v].get(k)) or 0.0 for k in self.numeric_keys] for v in nodes]
        edges = list(g.edges(data=True))
        return {
            "node_op": [self.node_vocab.get(data[v]["op"], unk_n) for v in nodes],
            "numeric": numeric,
            "src": [index[u] for u, _, _ in edges],
            "dst": [index[v] for _, v, _ in edges],
            "edge_op": [self.edge_vocab.get(str(d.get("op", "")), unk_e) for _, _, d in edges],
        }

    def _batch(self, encoded: list[dict[str, Any]]) -> dict[str, torch.Tensor]:
        node_op, numeric, src, dst, edge_op, graph, off = [], [], [], [], [], [], 0
        for i, e in enumerate(encoded):
            node_op += e["node_op"]
            numeric += e["numeric"]
            src += [s + off for s in e["src"]]
            dst += [d + off for d in e["dst"]]
            edge_op += e["edge_op"]
            graph += [i] * len(e["node_op"])
            off += len(e["node_op"])
        as_long = lambda v: torch.as_tensor(v, dtype=torch.long)  # noqa: E731
        return {
            "node_op": as_long(node_op),
            "numeric": torch.as_tensor(numeric, dtype=torch.float32).reshape(off, len(self.numeric_keys)),
            "src": as_long(src),
            "dst": as_long(dst),
            "edge_op": as_long(edge_op),
            "graph": as_long(graph),
            "n_graphs": torch.tensor(len(encoded)),
        }

    def fit(self, archs: Sequence[Arch | str], targets: Sequence[float] | np.ndarray) -> ArchGNNBaseline:
        """Train from scratch on ``archs`` and ``targets [n]`` (higher = better)."""
        arch_list = _archs(self.space, archs)
        y = as_targets(targets, len(arch_list))
        if len(arch_list) < 2:
            raise ValueError(f"ArchGNNBaseline.fit needs at least 2 architectures, got {len(arch_list)}")
        keys = {k for a in arch_list for _, d in a.graph.nodes(data=True) for k, v in d.items() if k != "op"}
        self.numeric_keys = sorted(k for k in keys if any(_numeric(d.get(k)) is not None for a in arch_list
                                                          for _, d in a.graph.nodes(data=True)))  # fmt: skip
        std = float(y.std())
        self.target = (float(y.mean()), std if std > 0 else 1.0)
        z = torch.as_tensor((y - self.target[0]) / self.target[1], dtype=torch.float32)
        encoded = [self._encode(a) for a in arch_list]
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(self.seed)
            self.net = _ArchNet(
                len(self.node_vocab) + 1, len(self.edge_vocab) + 1, len(self.numeric_keys), self.hidden, self.layers
            )
        opt = torch.optim.AdamW(self.net.parameters(), lr=self.lr, weight_decay=self.wd)
        rng = np.random.default_rng(self.seed)
        self.net.train()
        for _ in range(self.epochs):
            order = rng.permutation(len(encoded))
            for i in range(0, len(order), self.batch_size):
                idx = order[i : i + self.batch_size]
                if len(idx) < 2:
                    continue
                s = self.net(self._batch([encoded[j] for j in idx]))
                loss = ranking_loss(s, z[torch.as_tensor(idx)], self.rw)
                opt.zero_grad(set_to_none=True)
                loss.backward()
                torch.nn.utils.clip_grad_norm_(self.net.parameters(), 1.0)
                opt.step()
        return self

    def predict(self, archs: Sequence[Arch | str]) -> np.ndarray:
        """``[n]`` scores in target units (float64)."""
        if self.net is None:
            raise RuntimeError("ArchGNNBaseline.predict needs a fitted baseline: call fit() first")
        arch_list = _archs(self.space, archs)
        if not arch_list:
            return np.zeros(0)
        self.net.eval()
        with torch.inference_mode():
            s = self.net(self._batch([self._encode(a) for a in arch_list])).double().numpy()
        return self.target[0] + self.target[1] * s


# -- per-layer weight statistics + gradient boosting --------------------------------------------------
_STATS = ("mean", "std", "abs_mean", "fan_in", "fan_out", "kernel")
_AGGS = ("mean", "std", "min", "max")


def weight_stat_features(candidates: CandidateGraphs, archs: Sequence[Arch], seed: int) -> np.ndarray:
    """``[n, len(ROLES) * (2 + 6 * 4) + 1]`` features: per role, the tensor count, log total numel and
    mean/std/min/max over its tensors of (mean, std, abs-mean, log fan-in, log fan-out, kernel size) of
    the weights generated with ``seed``; then the log parameter count."""
    from wsnas.encoding import ROLES, generate

    rows = []
    for i in range(0, len(archs), 128):
        chunk = archs[i : i + 128]
        specs = [candidates.entry(a)[0] for a in chunk]
        weights = generate(specs, [seed] * len(chunk), device="cpu")
        for b, spec in enumerate(specs):
            flat = weights.candidate(b).double()
            per_role: dict[str, list[list[float]]] = {r: [] for r in ROLES}
            numel = dict.fromkeys(ROLES, 0)
            for t, lo, hi in zip(spec.tensors, spec.offsets[:-1], spec.offsets[1:]):
                w = flat[lo:hi]
                kernel = t.shape[-1] if len(t.shape) >= 3 else 1
                per_role[t.role].append([float(w.mean()), float(w.std(correction=0)), float(w.abs().mean()),
                                         math.log(t.fan_in), math.log(t.fan_out), float(kernel)])  # fmt: skip
                numel[t.role] += hi - lo
            row: list[float] = []
            for r in ROLES:
                s = np.array(per_role[r]).reshape(-1, len(_STATS))
                row += [len(s), math.log1p(numel[r])]
                for agg in _AGGS:
                    row += (getattr(np, agg)(s, axis=0) if len(s) else np.zeros(len(_STATS))).tolist()
            rows.append(row + [math.log1p(spec.numel)])
    return np.asarray(rows, dtype=np.float64)


class WeightStatsBaseline:
    """Per-role statistics of the generated weights (:func:`weight_stat_features`) fed to
    ``sklearn.ensemble.GradientBoostingRegressor(random_state=seed)``.

    Args:
        space: the search space.
        size: the encoding width; ``None``: ``space.proxy_size``.
        seed: the weight-generator seed and the regressor's ``random_state``.
        init: the weight init rule.
        gbm_options: more keywords for the regressor.
    """

    trainable = True

    def __init__(
        self,
        space: SearchSpace,
        *,
        size: dict[str, Any] | None = None,
        seed: int = 0,
        init: str = "kaiming_normal",
        **gbm_options: Any,
    ) -> None:
        self.space, self.seed = space, _check_seed(seed)
        self.candidates = CandidateGraphs(space, size=size, init=init)
        self.gbm_options = gbm_options
        self.model: Any = None

    def __repr__(self) -> str:
        return f"WeightStatsBaseline({self.space.name!r}, seed={self.seed})"

    def features(self, archs: Sequence[Arch | str]) -> np.ndarray:
        """``[n, F]`` the feature vectors of ``archs``."""
        return weight_stat_features(self.candidates, _archs(self.space, archs), self.seed)

    def fit(self, archs: Sequence[Arch | str], targets: Sequence[float] | np.ndarray) -> WeightStatsBaseline:
        """Fit the regressor on ``archs`` and ``targets [n]``."""
        from sklearn.ensemble import GradientBoostingRegressor

        x = self.features(archs)
        y = as_targets(targets, len(x))
        if len(x) < 2:
            raise ValueError(f"WeightStatsBaseline.fit needs at least 2 architectures, got {len(x)}")
        self.model = GradientBoostingRegressor(random_state=self.seed, **self.gbm_options).fit(x, y)
        return self

    def predict(self, archs: Sequence[Arch | str]) -> np.ndarray:
        """``[n]`` predicted targets (float64)."""
        if self.model is None:
            raise RuntimeError("WeightStatsBaseline.predict needs a fitted baseline: call fit() first")
        return np.asarray(self.model.predict(self.features(archs)), dtype=np.float64)
