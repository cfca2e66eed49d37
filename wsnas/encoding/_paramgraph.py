"""Parameter graphs: a network's weights as a graph (Neural Graphs channel-pair form), and batching.

A node is a channel or neuron (the network's input channels, every layer's output channels, the output
neurons); an edge is an (in, out) channel pair of a Conv2d/Linear carrying the whole kernel, or a typed
channel-to-channel edge for sums, skips, pooling, normalisation and flattening. :mod:`wsnas.encoding._trace`
builds a :class:`GraphTemplate` per network structure with ``torch.fx`` (and its ``param_graph`` fills one
with a network's own weights); filling a template from a flat weight buffer is a single gather, vectorised
over a whole batch (:func:`build_batch`).

Node features ``node_feat [N, 11]`` (float32), one row per node:

====  ==========  ==============================================================================
col   name        meaning
====  ==========  ==============================================================================
0     is_input    1 for a channel of the network's input
1     is_output   1 for a neuron/channel of the network's output
2     io_index    the position among the input channels / output neurons (0 for hidden nodes)
3     bias        the Conv2d/Linear bias of this output channel (0 when none)
4     has_norm    1 when a BatchNorm scales this channel
5     gamma       BatchNorm weight (0 when none)
6     beta        BatchNorm bias (0 when none)
7-10  act         one-hot activation applied to this channel: ReLU, GELU, SiLU, Tanh (all 0: none)
====  ==========  ==============================================================================

Edge features ``edge_feat [E, K*K + 1]`` (float32), where ``K`` is the largest kernel size of the
network (1 when it has no Conv2d): columns ``0 .. K*K-1`` hold the kernel ``w[out, in]`` zero-padded
*centred* to ``K x K`` (row-major; an even kernel sits at offset ``(K - k) // 2``); Linear weights and the
value of channel-wise edges (1 for sum/skip/norm/flatten, ``1/k^2`` for average pooling, 1 for max pooling,
``s`` for a multiplication by a scalar ``s``) sit at the centre ``(K // 2) * K + K // 2``. Column ``K*K``
is 1 when the message passes through the activation of its source node (so a skip that reads the
pre-activation value of a channel is told apart from a conv that reads ``relu(channel)``).

``node_type [N]`` and ``edge_type [E]`` (int64) index :data:`NODE_TYPES` and :data:`EDGE_TYPES`.
Hidden nodes never carry index-based ids: their order is a symmetry of the network.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch

__all__ = [
    "EDGE_TYPES",
    "NODE_FEATURES",
    "NODE_TYPES",
    "GraphTemplate",
    "ParamGraph",
    "batch_graphs",
    "build_batch",
]

#: node types: who produced the channel
NODE_TYPES: tuple[str, ...] = ("input", "output", "conv", "linear", "sum", "norm", "flatten", "zero")
#: edge types
EDGE_TYPES: tuple[str, ...] = ("conv", "linear", "sum", "skip", "avg_pool", "max_pool", "norm", "flatten")
#: node feature columns (see the module docstring)
NODE_FEATURES: tuple[str, ...] = (
    "is_input", "is_output", "io_index", "bias", "has_norm", "gamma", "beta", "relu", "gelu", "silu", "tanh",
)  # fmt: skip


@dataclass(frozen=True, eq=False)
class ParamGraph:
    """One parameter graph, or many batched as one disjoint graph (the PyTorch Geometric convention).

    Shapes (``N`` nodes, ``E`` edges, ``B`` graphs, ``K`` the largest kernel size):

    * ``node_feat [N, 11]`` float32, ``node_type [N]`` int64 (see the module docstring for columns);
    * ``edge_index [2, E]`` int64 ``(src, dst)``, sorted by ``dst`` (stable), so that the incoming edges of
      node ``n`` are ``dst_ptr[n] : dst_ptr[n + 1]`` (CSR, ``dst_ptr [N + 1]``) for segment reductions;
    * ``edge_feat [E, K*K + 1]`` float32, ``edge_type [E]`` int64;
    * ``ptr [B + 1]``: graph ``b`` owns nodes ``ptr[b] : ptr[b + 1]``; ``batch [N]``: the graph of each node;
      ``edge_ptr [B + 1]``: graph ``b`` owns edges ``edge_ptr[b] : edge_ptr[b + 1]``.

    In a batch, ``edge_index`` is offset by the running node count, so it indexes the batched node rows.
    """

    node_feat: torch.Tensor
    edge_index: torch.Tensor
    edge_feat: torch.Tensor
    edge_type: torch.Tensor
    node_type: torch.Tensor
    ptr: torch.Tensor
    batch: torch.Tensor
    edge_ptr: torch.Tensor
    dst_ptr: torch.Tensor

    @property
    def num_nodes(self) -> int:
        return int(self.node_feat.shape[0])

    @property
    def num_edges(self) -> int:
        return int(self.edge_index.shape[1])

    @property
    def num_graphs(self) -> int:
        return int(self.ptr.numel() - 1)

    @property
    def kernel_size(self) -> int:
        """``K``: the edge kernels are ``K x K``."""
        return math.isqrt(int(self.edge_feat.shape[1]) - 1)

    def to(self, device: torch.device | str) -> ParamGraph:
        """The same graph with every tensor on ``device``."""
        return ParamGraph(**{k: getattr(self, k).to(device) for k in self.__dataclass_fields__})

    def unbatch(self) -> list[ParamGraph]:
        """The graphs of the batch, each with its own node numbering (inverse of :func:`batch_graphs`)."""
        out = []
        for b in range(self.num_graphs):
            n0, n1 = int(self.ptr[b]), int(self.ptr[b + 1])
            e0, e1 = int(self.edge_ptr[b]), int(self.edge_ptr[b + 1])
            out.append(
                _single(
                    self.node_feat[n0:n1],
                    self.edge_index[:, e0:e1] - n0,
                    self.edge_feat[e0:e1],
                    self.edge_type[e0:e1],
                    self.node_type[n0:n1],
                    self.dst_ptr[n0 : n1 + 1] - e0,
                )
            )
        return out


def _single(nf, ei, ef, et, nt, dst_ptr) -> ParamGraph:  # noqa: ANN001 - private helper
    n, e = nf.shape[0], ei.shape[1]
    return ParamGraph(
        node_feat=nf, edge_index=ei, edge_feat=ef, edge_type=et, node_type=nt,
        ptr=torch.tensor([0, n]), batch=torch.zeros(n, dtype=torch.long),
        edge_ptr=torch.tensor([0, e]), dst_ptr=dst_ptr,
    )  # fmt: skip


def _pad_kernels(edge_feat: torch.Tensor, k_to: int) -> torch.Tensor:
    """Re-pad ``edge_feat [E, k*k + 1]`` to ``[E, k_to*k_to + 1]``, kernels kept centred."""
    k = math.isqrt(edge_feat.shape[1] - 1)
    if k == k_to:
        return edge_feat
    lo = (k_to - k) // 2
    kern = torch.zeros(edge_feat.shape[0], k_to, k_to, dtype=edge_feat.dtype, device=edge_feat.device)
    kern[:, lo : lo + k, lo : lo + k] = edge_feat[:, : k * k].reshape(-1, k, k)
    return torch.cat([kern.flatten(1), edge_feat[:, k * k :]], dim=1)


def batch_graphs(graphs: Sequence[ParamGraph]) -> ParamGraph:
    """Concatenate parameter graphs (single or already batched) into one disjoint batch.

    ``edge_index`` and ``dst_ptr`` are offset by the running node/edge counts, ``ptr``/``edge_ptr``
    chain, ``batch`` numbers the graphs ``0 .. B-1``. Kernels of graphs with a smaller ``K`` are
    re-padded, centred, to the largest ``K`` of the batch. Shapes as in :class:`ParamGraph`.
    """
    if not graphs:
        raise ValueError("batch_graphs needs at least one graph, got an empty sequence")
    k = max(g.kernel_size for g in graphs)
    n_off = torch.tensor([0] + [g.num_nodes for g in graphs]).cumsum(0)
    e_off = torch.tensor([0] + [g.num_edges for g in graphs]).cumsum(0)
    ptr = torch.cat([graphs[0].ptr[:1]] + [g.ptr[1:] + n_off[i] for i, g in enumerate(graphs)])
    edge_ptr = torch.cat([graphs[0].edge_ptr[:1]] + [g.edge_ptr[1:] + e_off[i] for i, g in enumerate(graphs)])
    counts = ptr.diff()
    return ParamGraph(
        node_feat=torch.cat([g.node_feat for g in graphs]),
        edge_index=torch.cat([g.edge_index + n_off[i] for i, g in enumerate(graphs)], dim=1),
        edge_feat=torch.cat([_pad_kernels(g.edge_feat, k) for g in graphs]),
        edge_type=torch.cat([g.edge_type for g in graphs]),
        node_type=torch.cat([g.node_type for g in graphs]),
        ptr=ptr,
        batch=torch.repeat_interleave(torch.arange(counts.numel()), counts),
        edge_ptr=edge_ptr,
        dst_ptr=torch.cat([graphs[0].dst_ptr[:1]] + [g.dst_ptr[1:] + e_off[i] for i, g in enumerate(graphs)]),
    )


@dataclass(frozen=True, eq=False)
class GraphTemplate:
    """The structure of one network's parameter graph and where each weight goes (no weights in it).

    Shapes (``N`` nodes, ``E`` edges, ``P`` weights, ``Fn = 11``):
    ``edge_index [2, E]`` int32 sorted by dst, ``node_type [N]``/``edge_type [E]`` int8,
    ``in_degree [N]`` int32, ``node_static [N, Fn]`` float32 (node features that are not weights),
    ``edge_value [E]`` float32 (the centre value of channel-wise edges), ``edge_act [E]`` bool (the last
    edge feature column), ``node_pos``/``node_src [Q]`` int32: ``node_feat.view(-1)[node_pos] =
    weights[node_src]``, and ``edge_runs``: per Conv2d/Linear ``(row, n, offset, kh, kw)``, meaning edge
    rows ``row : row + n`` hold the kernels ``weights[offset : offset + n*kh*kw].view(n, kh, kw)``
    (a layer's edges stay contiguous after the sort by dst, because its output nodes have no other input).

    Runs instead of per-element indices: an NB201 C=8 candidate has ~44,600 weights but ~20 runs, so a
    batch copies slices instead of scattering 44,600 int64-indexed elements (measured 5x faster at B=1,000).
    """

    num_nodes: int
    num_weights: int
    kernel_size: int
    edge_index: torch.Tensor
    node_type: torch.Tensor
    edge_type: torch.Tensor
    in_degree: torch.Tensor
    node_static: torch.Tensor
    edge_value: torch.Tensor
    edge_act: torch.Tensor
    edge_runs: tuple[tuple[int, int, int, int, int], ...]
    node_pos: torch.Tensor
    node_src: torch.Tensor

    @property
    def num_edges(self) -> int:
        return int(self.edge_index.shape[1])

    def fill(self, weights: torch.Tensor) -> ParamGraph:
        """The parameter graph of one candidate whose flat weights ``[P]`` are ``weights``."""
        return build_batch([self], [weights])


def build_batch(templates: Sequence[GraphTemplate], weights: torch.Tensor | Sequence[torch.Tensor]) -> ParamGraph:
    """Fill ``B`` templates with their candidates' flat weights and batch the graphs.

    Args:
        templates: one :class:`GraphTemplate` per candidate (all with the same ``K``).
        weights: ``[B, P]`` when every candidate has ``P`` weights, a list of ``[P_b]`` tensors, or one
            flat ``[sum P_b]`` tensor with the candidates' buffers back to back.

    Returns: the batched :class:`ParamGraph` (``B`` graphs, on CPU; float32 features), laid out as
    :func:`batch_graphs` would lay out the single graphs.
    """
    if not templates:
        raise ValueError("build_batch needs at least one template, got none")
    ks = {t.kernel_size for t in templates}
    if len(ks) != 1:
        raise ValueError(f"build_batch needs templates of one kernel size K, got K in {sorted(ks)}")
    k = ks.pop()
    fe = k * k + 1
    p_sizes = [t.num_weights for t in templates]
    if isinstance(weights, torch.Tensor):
        flat = weights.reshape(-1)
    else:
        if len(weights) != len(templates):
            raise ValueError(f"build_batch: {len(templates)} templates but {len(weights)} weight buffers")
        flat = torch.cat([w.reshape(-1) for w in weights])
    if flat.numel() != sum(p_sizes):
        raise ValueError(
            f"build_batch: the templates need {sum(p_sizes)} weights in all (first {p_sizes[:4]}), got {flat.numel()}"
        )
    flat = flat.detach().float().cpu()
    n_sizes = [t.num_nodes for t in templates]
    e_sizes = [t.num_edges for t in templates]
    n, e = sum(n_sizes), sum(e_sizes)
    n_counts, e_counts = torch.tensor(n_sizes), torch.tensor(e_sizes)
    n_start = torch.cat([torch.zeros(1, dtype=torch.long), n_counts.cumsum(0)])
    e_start = torch.cat([torch.zeros(1, dtype=torch.long), e_counts.cumsum(0)])
    w_start = [0, *torch.tensor(p_sizes, dtype=torch.long).cumsum(0).tolist()]
    e_list = e_start.tolist()

    def cat(name: str) -> torch.Tensor:
        return torch.cat([getattr(t, name) for t in templates])

    node_feat = cat("node_static")  # [N, Fn]
    q_counts = torch.tensor([t.node_pos.numel() for t in templates])
    pos = cat("node_pos").long() + torch.repeat_interleave(n_start[:-1] * node_feat.shape[1], q_counts)
    src = cat("node_src").long() + torch.repeat_interleave(torch.tensor(w_start[:-1]), q_counts)
    node_feat.view(-1)[pos] = flat[src]

    edge_feat = torch.zeros(e, fe)
    edge_feat[:, (k // 2) * k + k // 2] = cat("edge_value")
    edge_feat[:, k * k] = cat("edge_act").float()
    # The per-run copies go through NumPy views of the same memory: a slice assignment costs ~1-4 us
    # there against ~6-15 us through torch's dispatcher (NB201 C=8: ~15 runs per candidate).
    ef = edge_feat.numpy()
    src_w = flat.numpy()
    kern = ef[:, : k * k].reshape(e, k, k)  # views: writes land in edge_feat
    full, centre = ef[:, : k * k], ef[:, (k // 2) * k + k // 2]  # K x K and 1 x 1 kernels
    edge_index = torch.empty(2, e, dtype=torch.long)
    ei = edge_index.numpy()
    n_list = n_start.tolist()
    for b, t in enumerate(templates):
        e0, w0 = e_list[b], w_start[b]
        ne = t.num_edges
        np.add(t.edge_index.numpy(), n_list[b], out=ei[:, e0 : e0 + ne])
        for row, count, off, kh, kw in t.edge_runs:
            r0, o0 = e0 + row, w0 + off
            if kh == kw == k:  # the common cases first: plain slices
                full[r0 : r0 + count] = src_w[o0 : o0 + count * k * k].reshape(count, k * k)
            elif kh == kw == 1:
                centre[r0 : r0 + count] = src_w[o0 : o0 + count]
            else:
                ph, pw = (k - kh) // 2, (k - kw) // 2
                block = src_w[o0 : o0 + count * kh * kw].reshape(count, kh, kw)
                kern[r0 : r0 + count, ph : ph + kh, pw : pw + kw] = block
    dst_ptr = torch.zeros(n + 1, dtype=torch.long)
    torch.cumsum(cat("in_degree").long(), 0, out=dst_ptr[1:])
    return ParamGraph(
        node_feat=node_feat,
        edge_index=edge_index,
        edge_feat=edge_feat,
        edge_type=cat("edge_type").long(),
        node_type=cat("node_type").long(),
        ptr=n_start,
        batch=torch.repeat_interleave(torch.arange(len(templates)), n_counts),
        edge_ptr=e_start,
        dst_ptr=dst_ptr,
    )

