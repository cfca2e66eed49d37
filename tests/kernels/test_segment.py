"""Segment reductions: Triton kernel (through the interpreter on CPU) vs the PyTorch reference.

Outputs and gradients agree within 1e-6 (absolute and relative: float32 sums of 37 rows are summed in a
different order) in float32 and within 1e-12 in float64.
"""

from __future__ import annotations

import pytest
import torch

from wsnas.kernels._segment import segment_max, segment_mean, segment_sum
from wsnas.kernels._segment_ref import segment_max_ref, segment_mean_ref, segment_sum_ref


def _ptr(lengths: list[int]) -> torch.Tensor:
    return torch.tensor([0, *lengths]).cumsum(0)


def _lengths(segments: int, seed: int) -> list[int]:
    """Odd segment lengths 0..9 with empty segments mixed in."""
    g = torch.Generator().manual_seed(seed)
    return torch.randint(0, 10, (segments,), generator=g).tolist()


CASES = {
    "one": [5],
    "one_empty": [0],
    "single_rows": [1, 1, 1],
    "seven_with_empty": [3, 0, 1, 7, 0, 2, 4],
    "long_segment": [37, 0, 18],
    "many": None,  # 1023 segments, random lengths
}


def _case(name: str) -> list[int]:
    return _lengths(1023, 0) if CASES[name] is None else CASES[name]


def _report(a: torch.Tensor, b: torch.Tensor, tol: float) -> str:
    bad = (a - b).abs() > tol * (1 + b.abs())
    return f"{int(bad.sum())} of {a.numel()} elements differ, first at {bad.nonzero()[:3].tolist()}"


def _compare(fn, ref, lengths: list[int], f: int, dtype: torch.dtype, tol: float, monkeypatch) -> None:  # noqa: ANN001
    ptr = _ptr(lengths)
    g = torch.Generator().manual_seed(1)
    x = torch.randn(int(ptr[-1]), f, generator=g, dtype=dtype)
    x_k = x.clone().requires_grad_(True)
    x_r = x.clone().requires_grad_(True)
    monkeypatch.setenv("WSNAS_KERNELS", "triton")
    out_k = fn(x_k, ptr)
    monkeypatch.setenv("WSNAS_KERNELS", "reference")
    out_r = ref(x_r, ptr)
    if isinstance(out_k, tuple):
        assert torch.equal(out_k[1], out_r[1]), "arg-max rows differ"
        out_k, out_r = out_k[0], out_r[0]
    assert out_k.shape == out_r.shape == (len(lengths), f)
    assert torch.allclose(out_k, out_r, atol=tol, rtol=tol), _report(out_k, out_r, tol)
    grad = torch.randn(out_r.shape, generator=g, dtype=dtype)
    (gk,) = torch.autograd.grad(out_k, x_k, grad)
    (gr,) = torch.autograd.grad(out_r, x_r, grad)
    assert torch.allclose(gk, gr, atol=tol, rtol=tol), _report(gk, gr, tol)
    empty = torch.tensor(lengths) == 0
    assert torch.all(out_k[empty] == 0), "an empty segment must give 0"


FNS = {"sum": (segment_sum, segment_sum_ref), "mean": (segment_mean, segment_mean_ref),
       "max": (segment_max, segment_max_ref)}  # fmt: skip


@pytest.mark.parametrize("case", list(CASES))
@pytest.mark.parametrize("reduce", list(FNS))
@pytest.mark.parametrize(("dtype", "tol"), [(torch.float32, 1e-6), (torch.float64, 1e-12)])
def test_kernel_matches_reference(case: str, reduce: str, dtype: torch.dtype, tol: float, monkeypatch) -> None:  # noqa: ANN001
    f = 1 if case == "many" else 37  # 37 columns: two column blocks, the second partly masked
    lengths = _case(case)
    if case == "many" and dtype is torch.float64:  # 1023 segments once (float32); 255 in float64, for speed
        lengths = lengths[:255]
    fn, ref = FNS[reduce]
    _compare(fn, ref, lengths, f, dtype, tol, monkeypatch)


def test_max_gradient_goes_to_first_argmax(monkeypatch) -> None:  # noqa: ANN001
    x = torch.tensor([[1.0], [3.0], [3.0], [2.0]], requires_grad=True)
    ptr = torch.tensor([0, 4, 4])
    for mode in ("triton", "reference"):
        monkeypatch.setenv("WSNAS_KERNELS", mode)
        out, arg = segment_max(x, ptr)
        assert out.tolist() == [[3.0], [0.0]] and arg.tolist() == [[1], [-1]]
        (g,) = torch.autograd.grad(out.sum(), x)
        assert g.view(-1).tolist() == [0.0, 1.0, 0.0, 0.0], mode


def test_one_dimensional_input_and_reference_gradcheck(monkeypatch) -> None:  # noqa: ANN001
    ptr = _ptr([2, 0, 3])
    x = torch.randn(5, dtype=torch.float64, requires_grad=True)
    monkeypatch.setenv("WSNAS_KERNELS", "triton")
    assert segment_sum(x, ptr).shape == (3,)
    assert torch.autograd.gradcheck(lambda t: segment_sum(t[:, None], ptr), (x,))
    assert torch.autograd.gradcheck(lambda t: segment_mean(t[:, None], ptr), (x,))
    assert torch.autograd.gradcheck(lambda t: segment_max(t[:, None], ptr)[0], (x,))


def test_bad_ptr_is_a_clear_error() -> None:
    with pytest.raises(ValueError, match="ptr must run from 0 to E=4"):
        segment_sum(torch.zeros(4, 2), torch.tensor([0, 3]))
