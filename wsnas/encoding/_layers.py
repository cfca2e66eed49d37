"""Layers that the parameter-graph tracer understands beyond ``torch.nn``'s own.

Kept in a module of their own, importing only torch, so that a search space's networks can use them
without loading the tracer (or every other search space).
"""

from __future__ import annotations

import torch
import torch.nn as nn

__all__ = ["Zero"]


class Zero(nn.Module):
    """The ``none`` operation: outputs zeros shaped like its input (``[B, C, H, W] -> [B, C, H, W]``)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.zeros_like(x)
