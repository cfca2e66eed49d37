"""Small building blocks shared by the search spaces' networks.

Every block is made of layers the parameter-graph tracer supports (Conv2d, BatchNorm, ReLU, pooling,
``Zero`` from :mod:`wsnas.encoding`, ``Identity``), so networks of every space can be encoded without per-space code.
"""

from __future__ import annotations

import torch.nn as nn

from wsnas.encoding import Zero

__all__ = ["Zero", "ReLUConvBN", "ConvBNReLU"]


class ReLUConvBN(nn.Sequential):
    """ReLU, then a bias-free convolution, then affine batch norm (the NAS-Bench-201 cell op)."""

    def __init__(self, c_in: int, c_out: int, kernel: int, stride: int = 1) -> None:
        super().__init__(
            nn.ReLU(inplace=False),
            nn.Conv2d(c_in, c_out, kernel, stride=stride, padding=kernel // 2, bias=False),
            nn.BatchNorm2d(c_out),
        )


class ConvBNReLU(nn.Sequential):
    """Bias-free convolution, batch norm, ReLU (the NAS-Bench-101 conv op)."""

    def __init__(self, c_in: int, c_out: int, kernel: int, stride: int = 1) -> None:
        super().__init__(
            nn.Conv2d(c_in, c_out, kernel, stride=stride, padding=kernel // 2, bias=False),
            nn.BatchNorm2d(c_out),
            nn.ReLU(inplace=False),
        )
