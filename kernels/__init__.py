"""Triton kernels of wsnas, each beside its PyTorch reference, and the one dispatch rule.

See :mod:`wsnas.kernels._dispatch` for how ``WSNAS_KERNELS=reference|triton|auto`` picks a path.
"""

from wsnas.kernels._dispatch import KernelUnavailable, kernel_mode, triton_available, use_triton

__all__ = ["KernelUnavailable", "kernel_mode", "triton_available", "use_triton"]
