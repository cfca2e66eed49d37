"""The weight encoder: a message-passing graph network over batched parameter graphs.

The input is a :class:`wsnas.ParamGraph` batch (a node per channel or neuron, an edge per channel pair
carrying its kernel; see :mod:`wsnas.encoding._paramgraph` for the feature columns). The network is

1. **embeddings**: hidden nodes get ``Linear(numeric features) + type embedding``; input and output
   nodes add a learned identity indexed by their position (``io_index``), hidden nodes never do, so the
   encoder is invariant to permutations of hidden channels. Edge kernels are re-padded or centre-cropped
   to ``kernel_size x kernel_size`` (so one encoder reads networks of any kernel size), then
   ``e = Linear(kernel, act flag) + edge-type embedding``.
2. **message passing**, ``layers`` times, in both directions of the network's data flow::

       m_fwd[e] = (W_f h)[src(e)] * e        aggregated at dst(e) with sum, mean, std (and max)
       m_bwd[e] = (W_b h)[dst(e)] * e        aggregated at src(e)
       h <- LayerNorm(h + MLP([h, agg_fwd, agg_bwd]))

   Edge-gated linear messages keep the cost at ``O(E * hidden)`` per layer: parameter graphs have
   thousands of edges per candidate, and the encoder must score thousands of candidates a second.
3. **readout**: mean, max and log-sum of the node states of each graph -> MLP -> one score. With
   ``aux_outputs > 0`` a second MLP (the *pretraining head*) predicts that many costless targets of the
   architecture (its zero-cost proxies, see :mod:`wsnas.predictors._pretrain`) from the pooled state, and
   the score head reads the pooled state and those predictions side by side.

Segment reductions go through :mod:`wsnas.kernels` (Triton on CUDA, the PyTorch reference elsewhere).
"""

from __future__ import annotations

import math
import warnings
import weakref
from dataclasses import asdict, dataclass

import torch
import torch.nn as nn
import torch.nn.functional as F

from wsnas.encoding import EDGE_TYPES, NODE_FEATURES, NODE_TYPES, ParamGraph
from wsnas.kernels import segment_max, segment_mean, segment_sum, use_triton

__all__ = ["EncoderConfig", "WeightEncoder", "AGGREGATORS"]

#: every aggregator the encoder knows. The default is sum and mean (one reduction): on the NB201 CIFAR-10 zoo
#: (879 train / 376 held out, one encoder, C=2) adding std gave Spearman 0.758 vs 0.748 for 1.7x the time.
AGGREGATORS = ("sum", "mean", "std", "max")
_COL = {name: i for i, name in enumerate(NODE_FEATURES)}
_NUMERIC = [i for name, i in _COL.items() if name not in ("is_input", "is_output", "io_index")]


@dataclass(frozen=True)
class EncoderConfig:
    """Size and shape of a :class:`WeightEncoder` (stored in predictor cards)."""

    hidden: int = 32
    layers: int = 3
    kernel_size: int = 7
    io_slots: int = 16
    aggregators: tuple[str, ...] = ("sum", "mean")
    #: outputs of the pretraining head (0: none); set by :meth:`WeightPredictor.pretrain`
    aux_outputs: int = 0

    def __post_init__(self) -> None:
        if self.hidden < 1 or self.layers < 0 or self.kernel_size < 1 or self.kernel_size % 2 == 0:
            raise ValueError(f"EncoderConfig: hidden >= 1, layers >= 0 and an odd kernel_size are required, got {self}")
        if isinstance(self.aux_outputs, bool) or not isinstance(self.aux_outputs, int) or self.aux_outputs < 0:
            raise ValueError(f"EncoderConfig: aux_outputs must be an int >= 0, got {self.aux_outputs!r}")
        unknown = sorted(set(self.aggregators) - set(AGGREGATORS))
        if unknown or not self.aggregators:
            raise ValueError(
                f"EncoderConfig: aggregators must be a non-empty subset of {AGGREGATORS}, got {self.aggregators}"
            )

    def to_dict(self) -> dict:
        return {**asdict(self), "aggregators": list(self.aggregators)}


def _resize_kernels(edge_feat: torch.Tensor, k_to: int) -> torch.Tensor:
    """``[E, k*k + 1] -> [E, k_to*k_to + 1]``: kernels zero-padded or cropped, centred."""
    k = math.isqrt(edge_feat.shape[1] - 1)
    if k == k_to:
        return edge_feat
    kern = edge_feat[:, : k * k].reshape(-1, k, k)
    if k > k_to:
        lo = (k - k_to) // 2
        kern = kern[:, lo : lo + k_to, lo : lo + k_to]
    else:
        lo = (k_to - k) // 2
        kern = F.pad(kern, (lo, k_to - k - lo, lo, k_to - k - lo))
    return torch.cat([kern.reshape(-1, k_to * k_to), edge_feat[:, k * k :]], dim=1)


def _embed_edges(lin: nn.Linear, edge_feat: torch.Tensor, k_to: int) -> torch.Tensor:
    """``lin(_resize_kernels(edge_feat, k_to))`` -> ``[E, H]`` without padding smaller kernels.

    Zero-padded columns contribute nothing, so a ``k < k_to`` kernel is multiplied by the weight columns
    of the centred ``k x k`` block only: for 3x3 kernels and ``k_to = 7`` that reads 10 input columns
    instead of 50 (the edge embedding was the largest matmul of the forward pass).
    """
    k = math.isqrt(edge_feat.shape[1] - 1)
    if k >= k_to:
        return lin(_resize_kernels(edge_feat, k_to))
    lo = (k_to - k) // 2
    grid = torch.arange(k_to * k_to, device=edge_feat.device).reshape(k_to, k_to)[lo : lo + k, lo : lo + k]
    cols = torch.cat([grid.reshape(-1), torch.arange(k_to * k_to, lin.in_features, device=edge_feat.device)])
    return F.linear(edge_feat, lin.weight.index_select(1, cols), lin.bias)


def _segment_sum(
    x: torch.Tensor, ids: torch.Tensor, ptr: torch.Tensor | None, n: int, incidence: torch.Tensor | None = None
) -> torch.Tensor:
    """``[n, H]``: rows of ``x [E, H]`` summed by ``ids [E]``. With ``ptr`` (rows sorted by id, CSR) the
    dispatching segment kernel runs (Triton on CUDA); with ``incidence`` (a sparse CSR ``[n, E]`` of ones,
    see :meth:`_Flow.of`) one sparse-dense product; otherwise one ``index_add`` (measured on 2 CPU cores,
    415k x 32 rows: index_add 60 ms vs 100 ms for the CSR reference that rebuilds the ids)."""
    if ptr is not None and use_triton(x, ptr, op="segment_sum"):
        return segment_sum(x, ptr)
    if incidence is not None:
        return incidence @ x
    return torch.zeros(n, x.shape[1], dtype=x.dtype, device=x.device).index_add_(0, ids, x)


def _aggregate(
    x: torch.Tensor,
    ids: torch.Tensor,
    ptr: torch.Tensor | None,
    deg: torch.Tensor,
    aggregators: tuple[str, ...],
    incidence: torch.Tensor | None = None,
) -> torch.Tensor:
    """``x [E, H]`` grouped by ``ids [E]`` -> ``[N, len(aggregators) * H]``; ``deg [N, 1]`` clamped >= 1.

    Sum and mean share one reduction, std costs a second (of squared deviations), max one more.
    """
    n = deg.shape[0]
    total = _segment_sum(x, ids, ptr, n, incidence)  # [N, H]
    mean = total / deg
    out = []
    for name in aggregators:
        if name == "sum":
            out.append(total)
        elif name == "mean":
            out.append(mean)
        elif name == "std":
            # two passes (deviations from the segment mean), not E[x^2] - mean^2: the one-pass form
            # cancels catastrophically for near-constant segments, and sqrt then magnifies rounding
            # differences of summation order past 1e-5 (seen as a flaky permutation test)
            dev = x - mean.index_select(0, ids)  # [E, H]
            out.append(torch.sqrt(_segment_sum(dev * dev, ids, ptr, n, incidence) / deg + 1e-6))
        else:  # max
            if ptr is not None:
                out.append(segment_max(x, ptr)[0])
            else:
                top = torch.zeros(n, x.shape[1], dtype=x.dtype, device=x.device)
                idx = ids[:, None].expand_as(x)
                out.append(top.scatter_reduce(0, idx, x, "amax", include_self=False))
    return torch.cat(out, dim=1)


class _Layer(nn.Module):
    def __init__(self, hidden: int, n_agg: int) -> None:
        super().__init__()
        self.fwd = nn.Linear(hidden, hidden)
        self.bwd = nn.Linear(hidden, hidden)
        self.update = nn.Sequential(nn.Linear((1 + 2 * n_agg) * hidden, hidden), nn.ReLU(), nn.Linear(hidden, hidden))
        self.norm = nn.LayerNorm(hidden)

    def forward(self, h: torch.Tensor, e: torch.Tensor, flow: _Flow, aggregators: tuple[str, ...]) -> torch.Tensor:
        if not torch.is_grad_enabled() and set(aggregators) <= {"sum", "mean"}:
            return self._infer(h, e, flow, aggregators)
        m_fwd = self.fwd(h).index_select(0, flow.src) * e  # [E, H]: along the data flow, aggregated at dst
        m_bwd = self.bwd(h).index_select(0, flow.dst) * e  # [E, H]: against it, aggregated at src
        agg_f = _aggregate(m_fwd, flow.dst, flow.dst_ptr, flow.in_deg, aggregators, flow.into_dst)  # [N, A*H]
        if flow.by_src is not None:  # CSR kernels want the rows sorted by src
            agg_b = _aggregate(m_bwd[flow.by_src], flow.src[flow.by_src], flow.src_ptr, flow.out_deg, aggregators)
        else:
            agg_b = _aggregate(m_bwd, flow.src, None, flow.out_deg, aggregators, flow.into_src)
        return self.norm(h + self.update(torch.cat([h, agg_f, agg_b], dim=1)))

    def _infer(self, h: torch.Tensor, e: torch.Tensor, flow: _Flow, aggregators: tuple[str, ...]) -> torch.Tensor:
        """:meth:`forward` for sum and mean without gradients: the first update layer's weight is split by
        input block, so neither the aggregates nor ``[h, agg_f, agg_b]`` are concatenated, and a mean block
        reads the sum (``(total / deg) @ W.T == (total @ W.T) / deg``): one sum and one matmul a direction."""
        n, hid = h.shape
        first = self.update[0]
        w = first.weight  # [H, (1 + 2A) H]
        m_fwd = self.fwd(h).index_select(0, flow.src) * e  # [E, H]: along the data flow, aggregated at dst
        m_bwd = self.bwd(h).index_select(0, flow.dst) * e  # [E, H]: against it, aggregated at src
        z = F.linear(h, w[:, :hid], first.bias)  # [N, H]: the block that reads h
        a = len(aggregators)
        tot_f = _segment_sum(m_fwd, flow.dst, flow.dst_ptr, n, flow.into_dst)  # [N, H]
        if flow.by_src is not None:  # CSR kernels want the rows sorted by src
            tot_b = _segment_sum(m_bwd[flow.by_src], flow.src[flow.by_src], flow.src_ptr, n)
        else:
            tot_b = _segment_sum(m_bwd, flow.src, None, n, flow.into_src)
        for j, (total, deg) in enumerate(((tot_f, flow.in_deg), (tot_b, flow.out_deg))):
            start = hid * (1 + j * a)
            blocks = w[:, start : start + a * hid].reshape(hid, a, hid).transpose(0, 1).reshape(a * hid, hid)
            t = F.linear(total, blocks)  # [N, A*H]: the block of aggregator i in columns i*H:(i+1)*H
            for i, name in enumerate(aggregators):
                part = t[:, i * hid : (i + 1) * hid]
                z = z + (part if name == "sum" else part / deg)
        return self.norm(h + self.update[2](self.update[1](z)))


@dataclass(frozen=True)
class _Flow:
    """Index tensors of one batch, computed once per forward."""

    src: torch.Tensor  # [E]
    dst: torch.Tensor  # [E], sorted
    dst_ptr: torch.Tensor | None  # [N + 1] CSR by dst, when the segment kernels run
    by_src: torch.Tensor | None  # [E] permutation sorting edges by src, when the segment kernels run
    src_ptr: torch.Tensor | None  # [N + 1]
    in_deg: torch.Tensor  # [N, 1] float, clamped >= 1
    out_deg: torch.Tensor  # [N, 1]
    into_dst: torch.Tensor | None = None  # [N, E] sparse CSR of ones: edge -> its dst (CPU inference)
    into_src: torch.Tensor | None = None  # [N, E] sparse CSR of ones: edge -> its src (CPU inference)

    @classmethod
    def of(cls, g: ParamGraph) -> _Flow:
        """The flow of ``g``; made once per graph and grad mode, shared by every member of an ensemble."""
        key = torch.is_grad_enabled()
        hit = _FLOWS.get(g)
        if hit is not None and hit[0] == key:
            return hit[1]
        flow = cls._make(g)
        _FLOWS[g] = (key, flow)
        return flow

    @classmethod
    def _make(cls, g: ParamGraph) -> _Flow:
        src, dst = g.edge_index[0], g.edge_index[1]
        n = g.num_nodes
        out_counts = torch.bincount(src, minlength=n)
        in_deg = g.dst_ptr.diff().clamp_min(1).to(g.node_feat.dtype)[:, None]
        out_deg = out_counts.clamp_min(1).to(g.node_feat.dtype)[:, None]
        triton = use_triton(g.edge_feat, g.dst_ptr, op="segment_sum")
        if not triton and (torch.is_grad_enabled() or src.device.type != "cpu" or g.num_edges == 0):
            return cls(src, dst, None, None, None, in_deg, out_deg)
        src_ptr = torch.zeros(n + 1, dtype=torch.long, device=src.device)
        torch.cumsum(out_counts, 0, out=src_ptr[1:])
        by_src = torch.argsort(src, stable=True)
        if triton:
            return cls(src, dst, g.dst_ptr, by_src, src_ptr, in_deg, out_deg)
        # Scoring on the CPU: a sparse-dense product sums the messages 1.7-2.4x faster than index_add
        # (NB201 C=2, 64 graphs, 36k edges x 32: 0.86 vs 2.1 ms by dst, 1.1 vs 2.0 ms by src). Training
        # keeps index_add, whose gradient is a plain gather.
        ones = torch.ones(g.num_edges, dtype=g.edge_feat.dtype)
        with warnings.catch_warnings():  # "sparse CSR support is in beta": the product used here is not
            warnings.simplefilter("ignore")
            into_dst = torch.sparse_csr_tensor(g.dst_ptr, torch.arange(g.num_edges), ones, size=(n, g.num_edges))
            into_src = torch.sparse_csr_tensor(src_ptr, by_src, ones, size=(n, g.num_edges))
        return cls(src, dst, None, None, None, in_deg, out_deg, into_dst, into_src)


#: the flow of recently seen graphs (weakly held: a graph's flow goes when the graph does)
_FLOWS: weakref.WeakKeyDictionary[ParamGraph, tuple[bool, _Flow]] = weakref.WeakKeyDictionary()


class WeightEncoder(nn.Module):
    """Scores parameter graphs: ``ParamGraph`` batch of ``B`` graphs -> ``[B]`` scores (higher is better).

    Invariant to permutations of hidden channels (no hidden node carries an index), equivariant nowhere
    else: input and output nodes keep learned identities.
    """

    def __init__(self, config: EncoderConfig | None = None) -> None:
        super().__init__()
        self.config = cfg = config or EncoderConfig()
        h = cfg.hidden
        self.node_in = nn.Linear(len(_NUMERIC), h)
        self.node_type = nn.Embedding(len(NODE_TYPES), h)
        self.in_ids = nn.Embedding(cfg.io_slots, h)
        self.out_ids = nn.Embedding(cfg.io_slots, h)
        self.edge_in = nn.Linear(cfg.kernel_size**2 + 1, h)
        self.edge_type = nn.Embedding(len(EDGE_TYPES), h)
        self.layers = nn.ModuleList(_Layer(h, len(cfg.aggregators)) for _ in range(cfg.layers))
        a = cfg.aux_outputs
        self.aux = nn.Sequential(nn.Linear(3 * h, h), nn.ReLU(), nn.Linear(h, a)) if a else None
        self.head = nn.Sequential(nn.Linear(3 * h + a, h), nn.ReLU(), nn.Linear(h, 1))

    def embed(self, g: ParamGraph) -> torch.Tensor:
        """``[B, 3 * hidden]``: the pooled graph representation before the head."""
        cfg = self.config
        nf = g.node_feat
        io = nf[:, _COL["io_index"]].long().clamp(0, cfg.io_slots - 1)  # [N]
        h = self.node_in(nf[:, _NUMERIC]) + self.node_type(g.node_type)  # [N, H]
        h = h + nf[:, _COL["is_input"], None] * self.in_ids(io) + nf[:, _COL["is_output"], None] * self.out_ids(io)
        e = _embed_edges(self.edge_in, g.edge_feat, cfg.kernel_size) + self.edge_type(g.edge_type)  # [E, H]
        flow = _Flow.of(g)
        for layer in self.layers:
            h = layer(h, e, flow, cfg.aggregators)
        mean = segment_mean(h, g.ptr)  # [B, H]
        top = segment_max(h, g.ptr)[0]  # [B, H]
        logsum = torch.log1p(segment_sum(h.abs(), g.ptr))  # [B, H]
        return torch.cat([mean, top, logsum], dim=1)

    def auxiliary(self, g: ParamGraph) -> torch.Tensor:
        """``[B, aux_outputs]``: the pretraining head's predictions (standardised costless targets)."""
        if self.aux is None:
            raise RuntimeError("this encoder has no pretraining head (EncoderConfig.aux_outputs is 0)")
        return self.aux(self.embed(g))

    def forward(self, g: ParamGraph) -> torch.Tensor:
        z = self.embed(g)  # [B, 3H]
        if self.aux is not None:
            z = torch.cat([z, self.aux(z)], dim=1)  # [B, 3H + A]
        return self.head(z).squeeze(1)  # [B]
