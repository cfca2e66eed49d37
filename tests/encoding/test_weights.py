"""WeightSpec from built networks, generate() and GeneratedWeights, load_into, and training from generated
weights for every registered search space."""

from __future__ import annotations

import copy
import math

import numpy as np
import pytest
import torch
import torch.nn as nn

from wsnas._errors import UnsupportedLayer
from wsnas.encoding import INIT_RULES, GeneratedWeights, WeightSpec, generate, load_into, weight_spec
from wsnas.search_spaces import NB201, get_space, space_names

_ALL_3X3 = "|nor_conv_3x3~0|+|nor_conv_3x3~0|nor_conv_3x3~1|+|nor_conv_3x3~0|nor_conv_3x3~1|nor_conv_3x3~2|"
_MIXED = "|nor_conv_1x1~0|+|skip_connect~0|avg_pool_3x3~1|+|none~0|nor_conv_3x3~1|nor_conv_1x1~2|"


def _nb201(text: str = _MIXED, **size) -> nn.Module:
    space = NB201()
    return space.build(space.from_string(text), **({"C": 8, "N": 1} | size))


# -- WeightSpec ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("text", [_ALL_3X3, _MIXED])
def test_spec_of_nb201_lists_every_parameter_in_order(text: str) -> None:
    net = _nb201(text)
    spec = weight_spec(net)
    params = list(net.named_parameters())
    assert spec.names == tuple(name for name, _ in params)
    assert [t.shape for t in spec.tensors] == [tuple(p.shape) for _, p in params]
    assert spec.numel == sum(p.numel() for _, p in params) == spec.offsets[-1]
    assert len(spec.offsets) == len(spec) + 1
    assert all(b - a == t.numel for a, b, t in zip(spec.offsets, spec.offsets[1:], spec.tensors))


def test_spec_of_nb201_fans_and_roles() -> None:
    t = {s.name: s for s in weight_spec(_nb201()).tensors}
    stem = t["stem.0.weight"]  # Conv2d(3, 8, 3)
    assert (stem.role, stem.layer, stem.fan_in, stem.fan_out) == ("conv_weight", "Conv2d", 27, 72)
    assert stem.dist == "normal" and math.isclose(stem.scale, math.sqrt(2 / 27))
    assert (t["stem.1.weight"].role, t["stem.1.weight"].dist, t["stem.1.weight"].scale) == ("bn_weight", "constant", 1)
    assert (t["stem.1.bias"].role, t["stem.1.bias"].scale) == ("bn_bias", 0)
    conv1x1 = t["cells.0.edges.1<-0.1.weight"]  # first cell, nor_conv_1x1 at C=8
    assert (conv1x1.fan_in, conv1x1.fan_out) == (8, 8)
    conv3x3 = t["cells.2.edges.3<-1.1.weight"]  # second stage cell, nor_conv_3x3 at 2C=16
    assert (conv3x3.fan_in, conv3x3.fan_out) == (16 * 9, 16 * 9)
    down = t["cells.1.downsample.1.weight"]  # 1x1 shortcut 8 -> 16
    assert (down.shape, down.fan_in, down.fan_out) == ((16, 8, 1, 1), 8, 16)
    cls_w, cls_b = t["classifier.weight"], t["classifier.bias"]
    assert (cls_w.role, cls_w.layer, cls_w.fan_in, cls_w.fan_out) == ("linear_weight", "Linear", 32, 10)
    assert (cls_b.role, cls_b.dist, cls_b.scale, cls_b.fan_in) == ("bias", "constant", 0.0, 32)
    assert not any(s.role == "bias" for n, s in t.items() if n != "classifier.bias"), "NB201 convs have no bias"


@pytest.mark.parametrize("init", INIT_RULES)
def test_init_rules(init: str) -> None:
    net = nn.Sequential(nn.Conv2d(6, 10, 3, groups=2), nn.BatchNorm2d(10), nn.Linear(10, 5))
    w, bias, bn_w, bn_b, lin_w, lin_b = weight_spec(net, init=init).tensors
    assert (w.fan_in, w.fan_out, lin_w.fan_in, lin_w.fan_out) == (27, 90, 10, 5)
    want = {
        "kaiming_normal": ("normal", math.sqrt(2 / 27)),
        "kaiming_uniform": ("uniform", math.sqrt(6 / 27)),
        "xavier_normal": ("normal", math.sqrt(2 / (27 + 90))),
        "xavier_uniform": ("uniform", math.sqrt(6 / (27 + 90))),
        "torch_default": ("uniform", 1 / math.sqrt(27)),
    }[init]
    assert (w.dist, w.init) == (want[0], init) and math.isclose(w.scale, want[1])
    assert (bn_w.dist, bn_w.scale, bn_b.dist, bn_b.scale) == ("constant", 1.0, "constant", 0.0)
    if init == "torch_default":
        assert (bias.dist, lin_b.dist) == ("uniform", "uniform")
        assert math.isclose(bias.scale, 1 / math.sqrt(27)) and math.isclose(lin_b.scale, 1 / math.sqrt(10))
    else:
        assert (bias.dist, bias.scale, lin_b.dist, lin_b.scale) == ("constant", 0.0, "constant", 0.0)
    gen = generate(weight_spec(net, init=init), [3]).tensors(0)
    assert torch.all(gen["1.weight"] == 1) and torch.all(gen["1.bias"] == 0)
    if want[0] == "uniform":
        assert float(gen["0.weight"].abs().max()) <= want[1]


def test_torch_default_matches_pytorch_bounds() -> None:
    net = nn.Linear(400, 300)
    spec = weight_spec(net, init="torch_default")
    gen = generate(spec, [1]).tensors(0)
    bound = 1 / math.sqrt(400)
    for name, p in net.named_parameters():  # PyTorch's own init lies in the same range
        assert float(p.detach().abs().max()) <= bound and float(gen[name].abs().max()) <= bound
        assert float(gen[name].abs().max()) > 0.95 * bound
    assert abs(float(gen["weight"].std()) - float(net.weight.detach().std())) < 0.02 * bound


def test_spec_of_a_meta_module_equals_the_real_one() -> None:
    with torch.device("meta"):
        meta = _nb201(_ALL_3X3)
    assert next(meta.parameters()).is_meta
    assert weight_spec(meta) == weight_spec(_nb201(_ALL_3X3))
    assert weight_spec(meta, init="xavier_uniform") == weight_spec(_nb201(_ALL_3X3), init="xavier_uniform")


class _Scaled(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.alpha = nn.Parameter(torch.ones(3))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.alpha


@pytest.mark.parametrize(
    "net,where,kind",
    [
        (nn.Sequential(nn.Conv2d(3, 4, 3), nn.LayerNorm(4)), "'1'", "LayerNorm"),
        (nn.Sequential(nn.Linear(3, 3), nn.Sequential(_Scaled())), "'1.0'", "_Scaled"),
        (nn.Sequential(nn.ConvTranspose2d(3, 4, 3)), "'0'", "ConvTranspose2d"),
        (nn.PReLU(), "'<root>'", "PReLU"),
    ],
)
def test_unsupported_layers_are_named(net: nn.Module, where: str, kind: str) -> None:
    with pytest.raises(UnsupportedLayer) as info:
        weight_spec(net)
    assert where in str(info.value) and kind in str(info.value)


def test_bad_arguments_are_rejected() -> None:
    spec = weight_spec(nn.Linear(3, 2))
    with pytest.raises(ValueError, match="init must be one of"):
        weight_spec(nn.Linear(3, 2), init="he")
    with pytest.raises(ValueError, match="one seed per spec"):
        generate([spec, spec], [1])
    with pytest.raises(ValueError, match=r"\[0, 2\*\*63\)"):
        generate(spec, [-1])
    with pytest.raises(ValueError, match=r"\[0, 2\*\*63\)"):
        generate(spec, [2**63])
    with pytest.raises(ValueError, match="integer tensor"):
        generate(spec, torch.tensor([1.0]))


# -- GeneratedWeights ---------------------------------------------------------------------------------------
def test_generated_weights_layout() -> None:
    specs = [weight_spec(_nb201(_ALL_3X3)), weight_spec(nn.Linear(3, 2)), weight_spec(_nb201(_MIXED))]
    gw = generate(specs, torch.tensor([5, 6, 7]))
    assert isinstance(gw, GeneratedWeights) and len(gw) == 3 and gw.seeds == (5, 6, 7)
    assert gw.flat.dtype == torch.float32 and gw.offsets.dtype == torch.int64
    assert gw.offsets.tolist() == [0, specs[0].numel, specs[0].numel + 8, sum(s.numel for s in specs)]
    assert gw.tensor_ptr.tolist() == [0, len(specs[0]), len(specs[0]) + 2, sum(len(s) for s in specs)]
    assert len(gw.tensor_offsets) == gw.tensor_ptr[-1] + 1 and gw.tensor_offsets[-1] == gw.flat.numel()
    for i, spec in enumerate(specs):
        rel = gw.tensor_offsets[gw.tensor_ptr[i] : gw.tensor_ptr[i + 1] + 1] - gw.offsets[i]
        assert rel.tolist() == list(spec.offsets)
        tensors = gw.tensors(i)
        assert list(tensors) == list(spec.names)
        assert all(tensors[t.name].shape == t.shape for t in spec.tensors)
        assert torch.equal(torch.cat([v.flatten() for v in tensors.values()]), gw.candidate(i))
    assert torch.equal(gw.candidate(-1), gw.candidate(2))
    with pytest.raises(IndexError, match=r"\[-3, 3\)"):
        gw.candidate(3)
    assert generate([], []).flat.numel() == 0


# -- load_into ----------------------------------------------------------------------------------------------
def test_load_into_makes_the_network_use_the_weights() -> None:
    torch.manual_seed(0)
    net = _nb201(_ALL_3X3)
    x = torch.randn(4, 3, 16, 16)
    before = net(x)
    net.stem[1].running_mean.fill_(3.0)
    gw = generate(weight_spec(net), [123])
    manual = copy.deepcopy(net)
    assert load_into(net, gw.candidate(0)) is net
    with torch.no_grad():
        for name, p in manual.named_parameters():
            p.copy_(gw.tensors(0)[name])
    for m in manual.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.reset_running_stats()
    assert torch.all(net.stem[1].running_mean == 0) and int(net.stem[1].num_batches_tracked) == 0
    for name, p in net.named_parameters():
        assert torch.equal(p.detach(), gw.tensors(0)[name])
    after = net(x)
    assert not torch.allclose(after, before)
    assert torch.equal(after, manual(x))
    net.eval(), manual.eval()
    assert torch.equal(net(x), manual(x))


def test_load_into_checks_the_size() -> None:
    net = nn.Linear(3, 2)
    with pytest.raises(ValueError, match="8 parameters"):
        load_into(net, torch.zeros(9))
    with pytest.raises(ValueError, match="8 parameters"):
        load_into(net, torch.zeros(2, 4))


# -- a generated network trains -----------------------------------------------------------------------------
@pytest.mark.parametrize("name", space_names())
def test_a_generated_network_trains(name: str) -> None:
    space = get_space(name)
    rng = np.random.default_rng(0)
    nets = [space.build(space.sample(rng), **dict(space.proxy_size)) for _ in range(10)]
    gw = generate([weight_spec(net) for net in nets], list(range(100, 110)))
    gen = torch.Generator().manual_seed(0)
    c, h, w = space.input_shape
    x = torch.randn(8, c, min(h, 16), min(w, 16), generator=gen)  # 16x16 as the shared space suite: 4x faster
    for i, net in enumerate(nets):
        load_into(net, gw.candidate(i)).train()
        n_classes = net(x).shape[1]
        y = torch.randint(0, n_classes, (8,), generator=gen)
        opt = torch.optim.SGD(net.parameters(), lr=0.05, momentum=0.9)
        losses = []
        for _ in range(21):
            loss = nn.functional.cross_entropy(net(x), y)
            losses.append(float(loss.detach()))
            opt.zero_grad()
            loss.backward()
            opt.step()
        assert all(math.isfinite(v) for v in losses)
        assert losses[-1] < 0.99 * losses[0], f"{name} candidate {i}: loss {losses[0]:.4f} -> {losses[-1]:.4f}"


def test_spec_is_a_value() -> None:
    a, b = weight_spec(_nb201()), weight_spec(_nb201())
    assert a == b and hash(a) == hash(b) and isinstance(a, WeightSpec)
    assert a != weight_spec(_nb201(), init="xavier_normal")
