"""The one dispatch rule shared by every kernel of wsnas.

``WSNAS_KERNELS`` chooses the implementation:

* ``auto`` (default): the Triton kernel when every tensor is on a CUDA device and Triton imports, the
  PyTorch reference otherwise;
* ``reference``: always the PyTorch reference;
* ``triton``: always the Triton kernel. If it cannot run (Triton missing, or CPU tensors without
  ``TRITON_INTERPRET=1``) that is a :class:`KernelUnavailable` error, never a silent fallback.

``TRITON_INTERPRET=1`` runs Triton kernels on the CPU through Triton's interpreter; the tests use it to
compare kernels with their references on machines without a GPU. Triton reads it when a kernel module
is first imported, so set it before importing ``wsnas.kernels`` modules.
"""

from __future__ import annotations

import functools
import os
from typing import TYPE_CHECKING

from wsnas._errors import WsnasError

if TYPE_CHECKING:
    import torch

__all__ = ["KernelUnavailable", "kernel_mode", "triton_available", "use_triton"]

_MODES = ("auto", "reference", "triton")


class KernelUnavailable(WsnasError, RuntimeError):
    """``WSNAS_KERNELS=triton`` was asked for, but the Triton path cannot run here."""


def kernel_mode() -> str:
    """The current ``WSNAS_KERNELS`` value, checked (read on every call, so tests may change it)."""
    mode = os.environ.get("WSNAS_KERNELS", "auto").strip().lower() or "auto"
    if mode not in _MODES:
        raise KernelUnavailable(f"WSNAS_KERNELS must be one of {', '.join(_MODES)}, got {mode!r}")
    return mode


@functools.lru_cache(maxsize=1)
def _triton_import_error() -> str | None:
    try:
        import triton  # noqa: F401
        import triton.language  # noqa: F401
    except Exception as exc:  # ImportError, or a broken install raising something else
        return f"{type(exc).__name__}: {exc}"
    return None


def triton_available() -> bool:
    """Whether Triton imports in this environment."""
    return _triton_import_error() is None


def _interpreting() -> bool:
    return os.environ.get("TRITON_INTERPRET", "0") not in ("", "0")


def use_triton(*tensors: torch.Tensor, op: str = "kernel") -> bool:
    """Decide, for one call of ``op`` on ``tensors``, whether the Triton path runs.

    Raises:
        KernelUnavailable: ``WSNAS_KERNELS=triton`` but Triton is missing, or the tensors are not on a
            CUDA device and ``TRITON_INTERPRET=1`` is not set.
    """
    mode = kernel_mode()
    if mode == "reference":
        return False
    on_cuda = bool(tensors) and all(t.is_cuda for t in tensors)
    if mode == "auto":
        return on_cuda and triton_available()
    if not triton_available():
        raise KernelUnavailable(
            f"WSNAS_KERNELS=triton but Triton does not import ({_triton_import_error()}); "
            "install triton or set WSNAS_KERNELS=auto"
        )
    if not on_cuda and not _interpreting():
        devices = sorted({str(t.device) for t in tensors})
        raise KernelUnavailable(
            f"WSNAS_KERNELS=triton needs CUDA tensors (or TRITON_INTERPRET=1) for {op}, got tensors on {devices}"
        )
    return True
