from __future__ import annotations

import math

import pytest
import torch

from wsnas.predictors._zero_cost import ZERO_COST_PROXIES, zero_cost, zero_cost_all
from wsnas.search_spaces import NB201

ALL_NONE = "|none~0|+|none~0|none~1|+|none~0|none~1|none~2|"
ALL_CONV = "|nor_conv_3x3~0|+|nor_conv_3x3~0|nor_conv_3x3~1|+|nor_conv_3x3~0|nor_conv_3x3~1|nor_conv_3x3~2|"
SKIPS = "|skip_connect~0|+|skip_connect~0|skip_connect~1|+|skip_connect~0|skip_connect~1|skip_connect~2|"


def net(text: str) -> torch.nn.Module:
    torch.manual_seed(0)
    space = NB201()
    return space.build(space.from_string(text), C=4, N=1)


def batch() -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(1)
    return torch.randn(8, 3, 16, 16, generator=g), torch.randint(0, 10, (8,), generator=g)


def test_every_proxy_is_finite_and_leaves_the_network_alone() -> None:
    x, y = batch()
    model = net(ALL_CONV)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    scores = zero_cost_all(model, x, y)
    assert set(scores) == set(ZERO_COST_PROXIES)
    assert all(math.isfinite(v) for v in scores.values()), scores
    after = model.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)
    assert all(p.dtype == torch.float32 for p in model.parameters())


def test_proxies_are_deterministic() -> None:
    x, y = batch()
    assert zero_cost_all(net(ALL_CONV), x, y) == zero_cost_all(net(ALL_CONV), x, y)


def test_proxies_separate_a_dead_cell_from_a_conv_cell() -> None:
    """A cell of 'none' edges cuts the input off from the output: every signal proxy must rank it lower."""
    x, y = batch()
    dead, conv = net(ALL_NONE), net(ALL_CONV)
    for name in ("synflow", "snip", "grad_norm", "params", "flops"):
        assert zero_cost(name, conv, x, y) > zero_cost(name, dead, x, y), name
    # with the input cut off, all samples have the same activation codes: the kernel is singular
    assert zero_cost("naswot", dead, x, y) < zero_cost("naswot", conv, x, y)


def test_synflow_grows_with_depth_of_conv_paths() -> None:
    x, y = batch()
    assert zero_cost("synflow", net(ALL_CONV), x, y) > zero_cost("synflow", net(SKIPS), x, y)


def test_bad_input() -> None:
    x, y = batch()
    with pytest.raises(KeyError, match="unknown zero-cost proxy 'zen'; known proxies: synflow"):
        zero_cost("zen", net(ALL_CONV), x, y)
    with pytest.raises(ValueError, match=r"expects x \[B, ...\] and y \[B\], got \(8, 3, 16, 16\) and \(7,\)"):
        zero_cost("snip", net(ALL_CONV), x, y[:7])


def test_jacob_cov_of_a_network_whose_output_ignores_its_input() -> None:
    """The all-'none' cell's output does not depend on x: no autograd error, the lowest score."""
    x, y = batch()
    dead = zero_cost("jacob_cov", net(ALL_NONE), x, y)
    assert math.isfinite(dead)
    assert dead < zero_cost("jacob_cov", net(ALL_CONV), x, y)
    assert dead < zero_cost("jacob_cov", net(SKIPS), x, y)
