"""Error paths of the registry, network statistics, NB201 graphs and the kernel dispatch rule."""

from __future__ import annotations

import networkx as nx
import pytest
import torch

from wsnas import Arch, InvalidArchitecture, UnknownSearchSpace, count_flops
from wsnas.kernels import KernelUnavailable, kernel_mode, use_triton
from wsnas.search_spaces import NB201, get_space, register_space, space_names


def test_unknown_space_lists_the_known_ones() -> None:
    with pytest.raises(UnknownSearchSpace) as info:
        get_space("nb999")
    assert str(info.value) == "unknown search space 'nb999'; known spaces: " + ", ".join(space_names())


def test_register_space_checks_the_name_and_registers() -> None:
    with pytest.raises(ValueError, match=r"a space name must be letters, digits, '-' or '_', got 'bad name'"):
        register_space("bad name", NB201)
    register_space("nb201-copy", NB201)
    try:
        assert isinstance(get_space("nb201-copy"), NB201)
    finally:
        from wsnas.search_spaces import _REGISTRY

        del _REGISTRY["nb201-copy"]


def test_count_flops_rejects_bad_shapes() -> None:
    with pytest.raises(ValueError, match=r"input_shape and batch_size must be positive, got \(3, 0, 32\), 1"):
        count_flops(torch.nn.Conv2d(3, 4, 3), (3, 0, 32))


def test_nb201_rejects_foreign_and_malformed_graphs() -> None:
    space = NB201()
    chain = nx.DiGraph()
    chain.add_node("i", op="input")
    chain.add_node("o", op="output")
    chain.add_edge("i", "o", op="skip_connect")
    with pytest.raises(InvalidArchitecture, match="an NB201 graph has nodes 0..3 and the 6 edges j->i for j < i"):
        space.to_string(Arch(chain, "nb201"))
    with pytest.raises(InvalidArchitecture, match="expected an architecture of space 'nb201', got one of 'x'"):
        space.ops(Arch(chain, "x"))
    with pytest.raises(InvalidArchitecture, match="expected an Arch of space 'nb201', got str"):
        space.validate("|none~0|")  # type: ignore[arg-type]
    with pytest.raises(InvalidArchitecture, match="an NB201 string must be a str, got int"):
        space.from_string(5)  # type: ignore[arg-type]


def test_kernel_mode_is_checked(monkeypatch: pytest.MonkeyPatch) -> None:
    x = torch.zeros(3)
    monkeypatch.setenv("WSNAS_KERNELS", "fast")
    with pytest.raises(KernelUnavailable, match=r"WSNAS_KERNELS must be one of auto, reference, triton, got 'fast'"):
        kernel_mode()
    monkeypatch.setenv("WSNAS_KERNELS", "reference")
    assert use_triton(x) is False
    monkeypatch.setenv("WSNAS_KERNELS", "auto")
    assert use_triton(x) is False  # CPU tensors: the reference, whatever TRITON_INTERPRET says
    monkeypatch.setenv("WSNAS_KERNELS", "triton")
    monkeypatch.delenv("TRITON_INTERPRET", raising=False)
    with pytest.raises(KernelUnavailable, match=r"needs CUDA tensors \(or TRITON_INTERPRET=1\) for segment_sum"):
        use_triton(x, op="segment_sum")
    monkeypatch.setenv("TRITON_INTERPRET", "1")
    assert use_triton(x) is True
