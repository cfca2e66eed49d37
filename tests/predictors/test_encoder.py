"""The weight encoder: permutation invariance (the headline property), batching, gradients, any kernel size."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn as nn

from wsnas import batch_graphs, generate, load_into, param_graph, weight_spec
from wsnas.predictors._encoder import EncoderConfig, WeightEncoder
from wsnas.search_spaces import NB201, get_space

SPACE = NB201()
OPS = ("nor_conv_3x3", "skip_connect", "nor_conv_1x1", "avg_pool_3x3", "none", "nor_conv_3x3")


def generated(net: nn.Module, seed: int = 0) -> nn.Module:
    return load_into(net, generate(weight_spec(net), [seed]).candidate(0))


def encoder(seed: int = 0, **config) -> WeightEncoder:
    torch.manual_seed(seed)
    return WeightEncoder(EncoderConfig(**config)).eval()


def _permute(first: nn.Conv2d, bn: nn.BatchNorm2d, nxt: nn.Conv2d, perm: torch.Tensor, inputs: bool = True) -> None:
    with torch.no_grad():
        first.weight.copy_(first.weight[perm])
        bn.weight.copy_(bn.weight[perm])
        bn.bias.copy_(bn.bias[perm])
        if inputs:
            nxt.weight.copy_(nxt.weight[:, perm])


@pytest.mark.parametrize("aggregators", [("sum", "mean"), ("sum", "mean", "std"), ("sum", "mean", "std", "max")])
def test_output_is_invariant_to_hidden_channel_permutations(aggregators: tuple[str, ...]) -> None:
    net = generated(SPACE.build(SPACE.from_ops(OPS), C=8, N=1))
    with torch.no_grad():  # make BN parameters differ across channels, so a wrong permutation shows
        for m in net.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.weight.uniform_(0.5, 1.5, generator=torch.Generator().manual_seed(3))
                m.bias.uniform_(-0.5, 0.5, generator=torch.Generator().manual_seed(4))
    enc = encoder(aggregators=aggregators)
    with torch.no_grad():
        before = enc.embed(param_graph(net))  # [1, 3H], the pooled representation the head reads
        block = net.cells[1]  # residual block 8 -> 16: conv_a's channels only feed conv_b
        perm = torch.randperm(16, generator=torch.Generator().manual_seed(0))
        _permute(block.conv_a[1], block.conv_a[2], block.conv_b[1], perm)
        after = enc.embed(param_graph(net))
        _permute(block.conv_a[1], block.conv_a[2], block.conv_b[1], perm, inputs=False)  # not a symmetry
        broken = enc.embed(param_graph(net))
    assert (after - before).abs().max() < 1e-5
    assert torch.allclose(enc.head(before), enc.head(after), atol=1e-5, rtol=0)
    # the untrained head compresses differences; the representation must still tell the networks apart
    assert (broken - before).abs().max() > 20 * max(float((after - before).abs().max()), 2.5e-6)


def test_batched_scores_equal_single_scores_and_differ_across_archs() -> None:
    rng = np.random.default_rng(0)
    graphs = [param_graph(generated(SPACE.build(SPACE.sample(rng), C=4, N=1), seed=i)) for i in range(6)]
    enc = encoder()
    with torch.no_grad():
        batched = enc(batch_graphs(graphs))
        single = torch.cat([enc(g) for g in graphs])
    assert batched.shape == (6,)
    assert torch.allclose(batched, single, atol=1e-5)
    assert len({round(float(s), 5) for s in batched}) == 6


def test_every_parameter_gets_a_gradient() -> None:
    rng = np.random.default_rng(1)
    g = batch_graphs([param_graph(generated(SPACE.build(SPACE.sample(rng), C=4, N=1))) for _ in range(3)])
    enc = encoder(aggregators=("sum", "mean", "std", "max")).train()
    enc(g).pow(2).sum().backward()
    missing = [n for n, p in enc.named_parameters() if p.grad is None or not torch.isfinite(p.grad).all()]
    # io identities of unused slots and edge types absent from the batch get no gradient; everything else must
    assert not [n for n in missing if not n.startswith(("in_ids", "out_ids", "edge_type", "node_type"))], missing


def test_reads_networks_of_any_kernel_size() -> None:
    """MacroCNN has 7x7 kernels, NB201 3x3: one encoder with kernel_size 5 crops one and pads the other."""
    enc = encoder(kernel_size=5)
    rng = np.random.default_rng(2)
    for name in ("macro", "nb201", "nb101"):
        space = get_space(name)
        net = generated(space.build(space.sample(rng), **space.proxy_size))
        with torch.no_grad():
            score = enc(param_graph(net, input_shape=(1, *space.input_shape)))
        assert score.shape == (1,) and torch.isfinite(score).all()


def test_bad_config() -> None:
    with pytest.raises(ValueError, match="odd kernel_size"):
        EncoderConfig(kernel_size=4)
    with pytest.raises(ValueError, match=r"aggregators must be a non-empty subset of \('sum', 'mean', 'std', 'max'\)"):
        EncoderConfig(aggregators=("median",))


@pytest.mark.parametrize("k", [1, 3, 5, 7, 9])
def test_edge_embedding_without_padding_equals_the_padded_one(k: int) -> None:
    """Smaller kernels skip the zero padding by reading only the centred weight columns: same result."""
    from wsnas.predictors._encoder import _embed_edges, _resize_kernels

    torch.manual_seed(0)
    lin = nn.Linear(7 * 7 + 1, 16)
    feat = torch.randn(50, k * k + 1)
    torch.testing.assert_close(_embed_edges(lin, feat, 7), lin(_resize_kernels(feat, 7)), rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize(
    "aggregators", [("sum", "mean"), ("mean", "sum"), ("sum",), ("mean",), ("sum", "mean", "std", "max")]
)
def test_scoring_with_sparse_sums_equals_the_training_path(aggregators: tuple[str, ...]) -> None:
    """Without autograd on the CPU the messages are summed by a sparse product, and with sum and mean only the
    update reads the sums through its weight's blocks (no concatenation, the mean from the sum): same scores
    (1e-5)."""
    from wsnas.predictors._encoder import _Flow

    rng = np.random.default_rng(2)
    g = batch_graphs([param_graph(generated(SPACE.build(SPACE.sample(rng), C=4, N=1), k)) for k in range(6)])
    enc = encoder(aggregators=aggregators)
    with torch.inference_mode():
        fast = enc(g)
        assert _Flow.of(g).into_dst is not None  # the sparse path did run
    with torch.enable_grad():
        slow = enc(g)
        assert _Flow.of(g).into_dst is None
    torch.testing.assert_close(fast, slow.detach(), rtol=1e-5, atol=1e-5)
    assert len(set(fast.tolist())) == 6
