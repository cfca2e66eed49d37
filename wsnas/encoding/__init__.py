"""Encoding: a built network's weights as data (weight specs, seeded generation, parameter graphs).

>>> spec = weight_spec(net)                     # every parameter tensor: shape, fan-in, init rule, role
>>> weights = generate([spec], seeds=[0])       # one launch for a whole batch of candidates
>>> graph = param_graph(net)                    # traced with torch.fx: a node per channel, an edge per pair
>>> graphs = CandidateGraphs(space).graphs(archs, seeds=0)   # architectures -> one batched ParamGraph

Modules: :mod:`~wsnas.encoding._weight_spec` (specs and init rules), :mod:`~wsnas.encoding._weights`
(generation), :mod:`~wsnas.encoding._paramgraph` (graph types, batching), the tracer
(:mod:`~wsnas.encoding._trace` on top of ``_trace_ops``, ``_trace_cache`` and ``_trace_core``),
:mod:`~wsnas.encoding._candidates` (architectures to batched graphs) and :mod:`~wsnas.encoding._layers`
(layers the tracer supports beyond ``torch.nn``). Importing this package is cheap: names load their
module (and torch) on first use.
"""

from __future__ import annotations

import importlib
from typing import Any

# name -> module, imported on first access (these modules import torch at import time)
_LAZY: dict[str, str] = {
    **dict.fromkeys(
        ["INIT_RULES", "ROLES", "TensorSpec", "WeightSpec", "weight_spec"], "wsnas.encoding._weight_spec"
    ),
    **dict.fromkeys(["GeneratedWeights", "generate", "load_into"], "wsnas.encoding._weights"),
    **dict.fromkeys(
        ["EDGE_TYPES", "NODE_FEATURES", "NODE_TYPES", "GraphTemplate", "ParamGraph", "batch_graphs", "build_batch"],
        "wsnas.encoding._paramgraph",
    ),
    **dict.fromkeys(
        ["SUPPORTED_LAYERS", "clear_template_cache", "graph_template", "param_graph", "trace_template"],
        "wsnas.encoding._trace",
    ),
    **dict.fromkeys(["CandidateGraphs", "kernel_runs", "skip_reset_parameters"], "wsnas.encoding._candidates"),
    "Zero": "wsnas.encoding._layers",
}

__all__ = list(_LAZY)


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        value = getattr(importlib.import_module(_LAZY[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'wsnas.encoding' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(__all__)
