"""The NAS-Bench-101 network (cells with channel-split concatenation, max-pool downsampling, skeleton)."""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn as nn

from ._ops import ConvBNReLU

__all__ = ["NB101Cell", "NB101Network", "compute_vertex_channels"]


def compute_vertex_channels(c_in: int, c_out: int, matrix: Sequence[Sequence[int]]) -> list[int]:
    """Channels of every node of a cell, as NAS-Bench-101's ``compute_vertex_channels``.

    The ``c_out`` output channels are split evenly across the intermediate nodes that feed the output
    (the first ones in node order get one more channel each while a remainder is left), because the
    output concatenates them; every other intermediate node gets the largest channel count among its
    successors (a node's value is truncated to each successor's count). Node 0 has ``c_in``, the output
    ``c_out`` channels.

    Raises:
        ValueError: ``c_out`` is smaller than the number of nodes feeding the output.
    """
    n = len(matrix)
    channels = [0] * n
    channels[0], channels[n - 1] = c_in, c_out
    if n == 2:
        return channels
    feeders = [v for v in range(1, n - 1) if matrix[v][n - 1]]
    if c_out < len(feeders):
        raise ValueError(
            f"NB101 cell: {c_out} output channels cannot be split across the {len(feeders)} nodes feeding "
            f"the output; use C >= {len(feeders)}"
        )
    share, extra = divmod(c_out, len(feeders))
    for k, v in enumerate(feeders):
        channels[v] = share + (1 if k < extra else 0)
    for v in range(n - 3, 0, -1):
        if not matrix[v][n - 1]:
            channels[v] = max((channels[d] for d in range(v + 1, n - 1) if matrix[v][d]), default=0)
    assert all(channels[v] > 0 for v in range(1, n - 1)), "a pruned cell has no dead-end nodes"
    return channels


def _op(name: str, c: int) -> nn.Module:
    if name == "conv3x3-bn-relu":
        return ConvBNReLU(c, c, 3)
    if name == "conv1x1-bn-relu":
        return ConvBNReLU(c, c, 1)
    if name == "maxpool3x3":
        return nn.MaxPool2d(3, stride=1, padding=1)
    raise ValueError(f"unknown NB101 op {name!r}")


class NB101Cell(nn.Module):
    """One NAS-Bench-101 cell of a pruned spec (``matrix`` upper-triangular, ``ops[0]`` the input).

    Node ``t`` applies its op to the sum of its inputs: every earlier intermediate node that feeds it,
    truncated to ``vertex_channels[t]`` channels, and a 1x1 conv-BN-ReLU projection of the cell input
    when the input feeds it. The output concatenates the nodes that feed it (``c_out`` channels in all)
    and adds a projection of the cell input when the input feeds it directly. This is NAS-Bench-101's
    ``build_module`` on the spec as given: its node order decides which nodes get the extra channels of
    an uneven split (:meth:`NB101.build` passes the order the benchmark trained).

    Shapes: ``[B, c_in, H, W] -> [B, c_out, H, W]``.
    """

    def __init__(self, matrix: Sequence[Sequence[int]], ops: Sequence[str], c_in: int, c_out: int) -> None:
        super().__init__()
        self.matrix = tuple(tuple(int(x) for x in row) for row in matrix)
        self.n = n = len(ops)
        self.vertex_channels = tuple(compute_vertex_channels(c_in, c_out, self.matrix))
        self.proj = nn.ModuleDict()
        self.ops = nn.ModuleDict()
        for t in range(1, n):
            if self.matrix[0][t]:  # projections of the cell input (key n-1: onto the output)
                self.proj[str(t)] = ConvBNReLU(c_in, self.vertex_channels[t], 1)
            if t < n - 1:
                self.ops[str(t)] = _op(ops[t], self.vertex_channels[t])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        m, ch, n = self.matrix, self.vertex_channels, self.n
        nodes = [x]  # nodes[t]: [B, ch[t], H, W]
        concat = []
        for t in range(1, n - 1):
            inputs = [nodes[s] if ch[s] == ch[t] else nodes[s][:, : ch[t]] for s in range(1, t) if m[s][t]]
            if m[0][t]:
                inputs.append(self.proj[str(t)](x))
            total = inputs[0]
            for extra in inputs[1:]:
                total = total + extra
            nodes.append(self.ops[str(t)](total))  # [B, ch[t], H, W]
            if m[t][n - 1]:
                concat.append(nodes[t])
        if not concat:  # input -> output only
            return self.proj[str(n - 1)](x)
        out = concat[0] if len(concat) == 1 else torch.cat(concat, dim=1)  # [B, c_out, H, W]
        if m[0][n - 1]:
            out = out + self.proj[str(n - 1)](x)
        return out


class NB101Network(nn.Module):
    """The NAS-Bench-101 macro network around a cell.

    A conv3x3-BN-ReLU stem at ``C`` channels; ``stacks`` stacks of ``cells_per_stack`` cells, with a
    2x2 stride-2 max-pool (TensorFlow ``SAME`` rounding, hence ``ceil_mode``) before every stack but the
    first and the channel count doubled at the first cell of that stack; global average pooling and a
    linear classifier.

    Shapes: ``[B, in_channels, H, W] -> [B, num_classes]``.
    """

    def __init__(
        self,
        matrix: Sequence[Sequence[int]],
        ops: Sequence[str],
        *,
        C: int,
        stacks: int,
        cells_per_stack: int,
        num_classes: int,
        in_channels: int,
    ) -> None:
        super().__init__()
        self.stem = ConvBNReLU(in_channels, C, 3)
        layers: list[nn.Module] = []
        c_prev = c = C
        for stack in range(stacks):
            if stack > 0:
                layers.append(nn.MaxPool2d(2, stride=2, ceil_mode=True))
                c *= 2
            for _ in range(cells_per_stack):
                layers.append(NB101Cell(matrix, ops, c_prev, c))
                c_prev = c
        self.cells = nn.Sequential(*layers)
        self.global_pooling = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Linear(c, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.cells(self.stem(x))  # [B, C * 2**(stacks-1), H', W']
        x = self.global_pooling(x).flatten(1)  # [B, C * 2**(stacks-1)]
        return self.classifier(x)  # [B, num_classes]
