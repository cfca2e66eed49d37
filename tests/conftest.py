"""Test-wide settings: Triton kernels run through Triton's interpreter when no GPU is present."""

from __future__ import annotations

import os

# Triton reads TRITON_INTERPRET when a kernel module is imported, so it must be set before any test
# imports wsnas.kernels modules. On a machine with a GPU the real kernels are compiled instead.
try:
    import torch

    _has_cuda = torch.cuda.is_available()
except Exception:  # pragma: no cover - torch is a hard dependency
    _has_cuda = False
if not _has_cuda:
    os.environ.setdefault("TRITON_INTERPRET", "1")

# One torch thread for the whole suite, as in wsnas's own training processes. On a busy 2-core machine
# two intra-op threads spin-wait for each other: NB201 C=8 weight generation took 6-165 ms on two
# threads against about 6 ms on one, and batches of small ops were 2-20x slower.
torch.set_num_threads(1)
