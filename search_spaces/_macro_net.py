"""The MacroCNN network: a stem, three stages of inverted-bottleneck blocks, and a pooling head."""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn as nn

__all__ = ["InvertedBottleneck", "MacroNetwork", "BlockSpec"]

#: one block as built: ``(c_in, c_out, kernel, expansion, stride, skip)`` in real channel counts
BlockSpec = tuple[int, int, int, int, int, bool]


class InvertedBottleneck(nn.Module):
    """An inverted bottleneck (MobileNetV2 style) with an optional residual add.

    Layers: a 1x1 expand conv-BN-ReLU to ``c_in * expansion`` channels (only when ``expansion > 1``),
    a ``kernel x kernel`` depthwise conv-BN-ReLU (carrying the stride), a 1x1 project conv-BN to
    ``c_out``; all convolutions are bias-free. With ``skip`` the input is added to the output, which
    needs ``stride == 1`` and ``c_in == c_out``.

    Shapes: ``[B, c_in, H, W] -> [B, c_out, H / stride, W / stride]``.
    """

    def __init__(self, c_in: int, c_out: int, kernel: int, expansion: int, stride: int, skip: bool) -> None:
        super().__init__()
        if skip and (stride != 1 or c_in != c_out):
            raise ValueError(
                f"a residual add needs stride 1 and c_in == c_out, got stride={stride}, c_in={c_in}, c_out={c_out}"
            )
        hidden = c_in * expansion
        layers: list[nn.Module] = []
        if expansion > 1:
            layers += [nn.Conv2d(c_in, hidden, 1, bias=False), nn.BatchNorm2d(hidden), nn.ReLU(inplace=False)]
        layers += [
            nn.Conv2d(hidden, hidden, kernel, stride=stride, padding=kernel // 2, groups=hidden, bias=False),
            nn.BatchNorm2d(hidden),
            nn.ReLU(inplace=False),
            nn.Conv2d(hidden, c_out, 1, bias=False),
            nn.BatchNorm2d(c_out),
        ]
        self.body = nn.Sequential(*layers)
        self.skip = bool(skip)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.body(x)  # [B, c_out, H / stride, W / stride]
        return x + y if self.skip else y


class MacroNetwork(nn.Module):
    """Stem conv-BN-ReLU (3x3, stride 1), the blocks in order, global average pooling, a linear classifier.

    Shapes: ``[B, in_channels, H, W] -> [B, num_classes]``.
    """

    def __init__(self, blocks: Sequence[BlockSpec], *, stem: int, num_classes: int, in_channels: int) -> None:
        super().__init__()
        self.stem = nn.Sequential(
            nn.Conv2d(in_channels, stem, 3, padding=1, bias=False), nn.BatchNorm2d(stem), nn.ReLU(inplace=False)
        )
        self.blocks = nn.Sequential(*(InvertedBottleneck(*spec) for spec in blocks))
        c_last = blocks[-1][1] if blocks else stem
        self.global_pooling = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Linear(c_last, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.blocks(self.stem(x))  # [B, c_last, H / 4, W / 4]
        x = self.global_pooling(x).flatten(1)  # [B, c_last]
        return self.classifier(x)  # [B, num_classes]
