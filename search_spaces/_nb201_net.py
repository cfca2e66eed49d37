"""The NAS-Bench-201 network (cells, residual reduction blocks, macro skeleton)."""

from __future__ import annotations

import torch
import torch.nn as nn

from ._ops import ReLUConvBN, Zero

__all__ = ["NB201Cell", "NB201Network", "ResNetBasicBlock"]

_EDGES = tuple((i, j) for i in range(1, 4) for j in range(i))


def _op(name: str, c: int) -> nn.Module:
    if name == "none":
        return Zero()
    if name == "skip_connect":
        return nn.Identity()
    if name == "nor_conv_1x1":
        return ReLUConvBN(c, c, 1)
    if name == "nor_conv_3x3":
        return ReLUConvBN(c, c, 3)
    if name == "avg_pool_3x3":
        return nn.AvgPool2d(3, stride=1, padding=1, count_include_pad=False)
    raise ValueError(f"unknown NB201 op {name!r}")


class NB201Cell(nn.Module):
    """A 4-node cell: node ``i`` is the sum of ``op(i, j)(node j)`` over ``j < i``; the output is node 3.

    Shapes: ``[B, C, H, W] -> [B, C, H, W]``.
    """

    def __init__(self, ops: tuple[str, ...], c: int) -> None:
        super().__init__()
        self.edges = nn.ModuleDict({f"{i}<-{j}": _op(op, c) for (i, j), op in zip(_EDGES, ops)})

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        nodes = [x]
        for i in range(1, 4):
            total = self.edges[f"{i}<-0"](nodes[0])
            for j in range(1, i):
                total = total + self.edges[f"{i}<-{j}"](nodes[j])
            nodes.append(total)
        return nodes[3]


class ResNetBasicBlock(nn.Module):
    """Stride-2 residual block between stages: two ReLU-Conv-BN and a pool + 1x1 conv shortcut.

    Shapes: ``[B, c_in, H, W] -> [B, c_out, H/2, W/2]``.
    """

    def __init__(self, c_in: int, c_out: int) -> None:
        super().__init__()
        self.conv_a = ReLUConvBN(c_in, c_out, 3, stride=2)
        self.conv_b = ReLUConvBN(c_out, c_out, 3)
        self.downsample = nn.Sequential(
            nn.AvgPool2d(kernel_size=2, stride=2, padding=0),
            nn.Conv2d(c_in, c_out, kernel_size=1, stride=1, padding=0, bias=False),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.downsample(x) + self.conv_b(self.conv_a(x))


class NB201Network(nn.Module):
    """The NAS-Bench-201 macro network around a cell. Shapes: ``[B, in_channels, H, W] -> [B, num_classes]``."""

    def __init__(self, ops: tuple[str, ...], *, C: int, N: int, num_classes: int, in_channels: int) -> None:
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(in_channels, C, 3, padding=1, bias=False), nn.BatchNorm2d(C))
        layers: list[nn.Module] = []
        c_prev = C
        for stage, c in enumerate((C, 2 * C, 4 * C)):
            if stage > 0:
                layers.append(ResNetBasicBlock(c_prev, c))
            layers.extend(NB201Cell(ops, c) for _ in range(N))
            c_prev = c
        self.cells = nn.Sequential(*layers)
        self.lastact = nn.Sequential(nn.BatchNorm2d(c_prev), nn.ReLU(inplace=False))
        self.global_pooling = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Linear(c_prev, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.lastact(self.cells(self.stem(x)))  # [B, 4C, H/4, W/4]
        x = self.global_pooling(x).flatten(1)  # [B, 4C]
        return self.classifier(x)  # [B, num_classes]
