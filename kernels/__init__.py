"""Triton kernels of wsnas, each beside its PyTorch reference, and the one dispatch rule.

See :mod:`wsnas.kernels._dispatch` for how ``WSNAS_KERNELS=reference|triton|auto`` picks a path. The
dispatching entry points are :func:`segment_sum`, :func:`segment_mean`, :func:`segment_max` (CSR segment
reductions with autograd) and :func:`wsnas.generate` (batched weight generation). The Triton launchers
(``weight_gen_triton``) load on first use: Triton reads ``TRITON_INTERPRET`` when they are imported.
"""

from __future__ import annotations

import importlib
from typing import Any

from wsnas.kernels._dispatch import KernelUnavailable, kernel_mode, triton_available, use_triton
from wsnas.kernels._segment import segment_max, segment_mean, segment_sum
from wsnas.kernels._segment_ref import segment_max_ref, segment_mean_ref, segment_sum_ref
from wsnas.kernels._weight_gen_ref import mix_keys, normal_tables, weight_gen_reference

_LAZY = {"weight_gen_triton": "wsnas.kernels._weight_gen", "block_table": "wsnas.kernels._weight_gen"}

__all__ = [
    "KernelUnavailable",
    "kernel_mode",
    "triton_available",
    "use_triton",
    "segment_sum",
    "segment_mean",
    "segment_max",
    "segment_sum_ref",
    "segment_mean_ref",
    "segment_max_ref",
    "weight_gen_reference",
    "mix_keys",
    "normal_tables",
    *_LAZY,
]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'wsnas.kernels' has no attribute {name!r}")
