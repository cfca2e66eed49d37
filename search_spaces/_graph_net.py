"""The network of a GraphSpace architecture: a stem, the template's live nodes, a pooling head."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence

import torch
import torch.nn as nn

from ._ops import ReLUConvBN, Zero

__all__ = ["BUILTIN_FACTORIES", "GraphNetwork", "NodePlan"]

#: a node as built: ``(key, op, [(source key, edge op or None), ...])``; op ``"output"`` adds no module
NodePlan = tuple[str, str, Sequence[tuple[str, "str | None"]]]

#: the built-in ops, each ``C -> nn.Module`` mapping ``[B, C, H, W] -> [B, C, H, W]``
BUILTIN_FACTORIES: dict[str, Callable[[int], nn.Module]] = {
    "conv1x1": lambda c: ReLUConvBN(c, c, 1),
    "conv3x3": lambda c: ReLUConvBN(c, c, 3),
    "conv5x5": lambda c: ReLUConvBN(c, c, 5),
    "maxpool3x3": lambda c: nn.MaxPool2d(3, stride=1, padding=1),
    "avgpool3x3": lambda c: nn.AvgPool2d(3, stride=1, padding=1, count_include_pad=False),
    "identity": lambda c: nn.Identity(),
    "zero": lambda c: Zero(),
}


def _make(factories: Mapping[str, Callable[[int], nn.Module]], op: str, c: int) -> nn.Module:
    module = factories[op](c)
    if not isinstance(module, nn.Module):
        raise TypeError(f"the factory of op {op!r} must return an nn.Module, got {type(module).__name__}")
    return module


class GraphNetwork(nn.Module):
    """Stem conv-BN (3x3), the nodes in topological order, BN-ReLU, global average pooling, a linear classifier.

    A node sums its inputs (each through its edge's op, if any) and applies its own op; the input
    node holds the stem's output and the output node's sum goes to the head. Every op keeps ``C``
    channels and the resolution.

    Shapes: ``[B, in_channels, H, W] -> [B, num_classes]``.
    """

    def __init__(
        self,
        plan: Sequence[NodePlan],
        *,
        input_key: str,
        factories: Mapping[str, Callable[[int], nn.Module]],
        C: int,
        num_classes: int,
        in_channels: int,
    ) -> None:
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(in_channels, C, 3, padding=1, bias=False), nn.BatchNorm2d(C))
        self.node_ops = nn.ModuleDict()
        self.edge_ops = nn.ModuleDict()
        for key, op, inputs in plan:
            if op != "output":
                self.node_ops[f"n_{key}"] = _make(factories, op, C)
            for src, edge_op in inputs:
                if edge_op is not None:
                    self.edge_ops[f"{src}->{key}"] = _make(factories, edge_op, C)
        self.plan = [(key, op, [(src, edge_op is not None) for src, edge_op in inputs]) for key, op, inputs in plan]
        self.input_key = input_key
        self.lastact = nn.Sequential(nn.BatchNorm2d(C), nn.ReLU(inplace=False))
        self.global_pooling = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Linear(C, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        values = {self.input_key: self.stem(x)}  # each [B, C, H, W]
        out = values[self.input_key]
        for key, op, inputs in self.plan:
            total: torch.Tensor | None = None
            for src, has_op in inputs:
                term = self.edge_ops[f"{src}->{key}"](values[src]) if has_op else values[src]
                total = term if total is None else total + term
            assert total is not None  # every planned node has a live input
            out = total if op == "output" else self.node_ops[f"n_{key}"](total)
            values[key] = out
        x = self.lastact(out)  # [B, C, H, W]: the output node is planned last
        x = self.global_pooling(x).flatten(1)  # [B, C]
        return self.classifier(x)  # [B, num_classes]
