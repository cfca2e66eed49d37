"""Parameter graphs: construction, permutation invariance, counts, errors, batching, and the cached tracer."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn as nn

from wsnas import UnsupportedLayer
from wsnas.encoding import (
    EDGE_TYPES,
    NODE_TYPES,
    GraphTemplate,
    ParamGraph,
    batch_graphs,
    build_batch,
    clear_template_cache,
    graph_template,
    param_graph,
    trace_template,
)
from wsnas.encoding._trace_cache import one_level
from wsnas.search_spaces import NB201, get_space, space_names

SPACE = NB201()
CONV = ("nor_conv_1x1", "nor_conv_3x3")
IN_EDGES = {1: (0,), 2: (1, 2), 3: (3, 4, 5)}  # node -> indices of its in-edges in string order
OUT_EDGES = {0: (0, 1, 3), 1: (2, 4), 2: (5,)}


def _cell_counts(ops: tuple[str, ...], c: int, x_pending: bool) -> tuple[int, int]:
    """Nodes and edges one NB201 cell adds. A conv adds ``c`` nodes and ``c^2`` edges (BN folds onto them).
    Node ``j`` is materialised when an op other than ``none`` reads it (node 3 always: the next layer reads
    it); it then needs ``c`` new nodes unless its only non-none input is one conv, with ``c`` edges per
    non-none input. A stage-2/3 cell input is the residual block's pending sum of 2 branches."""
    nodes = sum(c for op in ops if op in CONV)
    edges = sum(c * c for op in ops if op in CONV)
    if x_pending and any(ops[k] != "none" for k in OUT_EDGES[0]):
        nodes, edges = nodes + c, edges + 2 * c
    for j in (1, 2, 3):
        read = j == 3 or any(ops[k] != "none" for k in OUT_EDGES[j])
        live = [ops[k] for k in IN_EDGES[j] if ops[k] != "none"]
        if read and not (len(live) == 1 and live[0] in CONV):
            nodes, edges = nodes + c, edges + c * len(live)
    return nodes, edges


def nb201_counts(ops: tuple[str, ...], C: int = 8, classes: int = 10) -> tuple[int, int]:
    """Nodes and edges of NB201 at N=1: inputs, stem, cells, residual blocks, last BN, classifier."""
    nodes, edges = 3 + C, 3 * C  # input channels, stem conv (BN folded)
    for stage, c in enumerate((C, 2 * C, 4 * C)):
        if stage:
            ci = c // 2  # conv_a, conv_b, pooled-input sum nodes, 1x1 conv of the shortcut
            nodes += 3 * c + ci
            edges += ci * c + c * c + ci + ci * c
        n, e = _cell_counts(ops, c, x_pending=stage > 0)
        nodes, edges = nodes + n, edges + e
    nodes, edges = nodes + 4 * C, edges + 4 * C  # last BN reads a sum: own nodes
    return nodes + classes, edges + 4 * C * classes


def _isomorphism_key(g: ParamGraph) -> tuple[list, list]:
    """Sorted node rows and sorted (src row, edge row, dst row) triples: equal for isomorphic graphs."""
    nf = torch.cat([g.node_feat, g.node_type[:, None].float()], 1)
    ef = torch.cat([nf[g.edge_index[0]], g.edge_feat, g.edge_type[:, None].float(), nf[g.edge_index[1]]], 1)
    r = lambda t: sorted(map(tuple, t.round(decimals=5).tolist()))  # noqa: E731
    return r(nf), r(ef)


def _flat(net: nn.Module) -> torch.Tensor:
    return torch.cat([p.detach().reshape(-1) for p in net.parameters()])


@pytest.mark.parametrize("seed", range(4))
def test_nb201_counts_match_formula(seed: int) -> None:
    rng = np.random.default_rng(seed)
    for _ in range(25):  # 100 random archs over the 4 seeds
        ops = SPACE.ops(SPACE.sample(rng))
        net = SPACE.build(SPACE.from_ops(ops), C=8, N=1)
        g = param_graph(net)
        assert (g.num_nodes, g.num_edges) == nb201_counts(ops), ops
        assert int((g.node_type == NODE_TYPES.index("input")).sum()) == 3
        assert int((g.node_type == NODE_TYPES.index("output")).sum()) == 10
        assert g.node_feat.shape == (g.num_nodes, 11) and g.edge_feat.shape == (g.num_edges, 10)


class SmallNet(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.a = nn.Conv2d(3, 6, 3, padding=1)
        self.bn = nn.BatchNorm2d(6)
        self.b = nn.Conv2d(6, 5, 1)
        self.fc = nn.Linear(5, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.b(torch.relu(self.bn(self.a(x))))
        return self.fc(nn.functional.adaptive_avg_pool2d(x, 1).flatten(1))


def _randomise(net: nn.Module, seed: int = 0) -> None:
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in net.parameters():
            p.copy_(torch.randn(p.shape, generator=g))


def _permute(first: nn.Conv2d, bn: nn.BatchNorm2d, nxt: nn.Conv2d, perm: torch.Tensor, inputs: bool = True) -> None:
    with torch.no_grad():
        first.weight.copy_(first.weight[perm])
        if first.bias is not None:
            first.bias.copy_(first.bias[perm])
        bn.weight.copy_(bn.weight[perm])
        bn.bias.copy_(bn.bias[perm])
        if inputs:
            nxt.weight.copy_(nxt.weight[:, perm])


def test_permuting_hidden_channels_gives_isomorphic_graph_small_net() -> None:
    net = SmallNet()
    _randomise(net)
    before = _isomorphism_key(param_graph(net))
    x = torch.randn(2, 3, 8, 8)
    y = net.eval()(x)
    perm = torch.tensor([3, 0, 5, 1, 4, 2])
    _permute(net.a, net.bn, net.b, perm)
    assert torch.allclose(net(x), y, atol=1e-5)  # the same function
    assert _isomorphism_key(param_graph(net)) == before
    _permute(net.a, net.bn, net.b, perm, inputs=False)  # not a symmetry: must be told apart
    assert _isomorphism_key(param_graph(net)) != before


def test_permuting_hidden_channels_gives_isomorphic_graph_nb201() -> None:
    ops = ("nor_conv_3x3", "skip_connect", "nor_conv_1x1", "avg_pool_3x3", "none", "nor_conv_3x3")
    net = SPACE.build(SPACE.from_ops(ops), C=8, N=1)
    _randomise(net, 1)
    before = _isomorphism_key(param_graph(net))
    block = net.cells[1]  # residual block 8 -> 16: conv_a's channels only feed conv_b
    perm = torch.randperm(16, generator=torch.Generator().manual_seed(0))
    _permute(block.conv_a[1], block.conv_a[2], block.conv_b[1], perm)
    assert _isomorphism_key(param_graph(net)) == before
    _permute(block.conv_a[1], block.conv_a[2], block.conv_b[1], perm, inputs=False)
    assert _isomorphism_key(param_graph(net)) != before


def _reachable(g: ParamGraph, start: torch.Tensor) -> torch.Tensor:
    seen = torch.zeros(g.num_nodes, dtype=torch.bool)
    seen[start] = True
    while True:
        nxt = seen.clone()
        nxt[g.edge_index[1][seen[g.edge_index[0]]]] = True
        if torch.equal(nxt, seen):
            return seen
        seen = nxt


def test_zero_op_disconnects_without_error() -> None:
    net = SPACE.build(SPACE.from_ops(("none",) * 6), C=8, N=1)
    g = param_graph(net)
    assert (g.num_nodes, g.num_edges) == nb201_counts(("none",) * 6)
    assert int((g.node_type == NODE_TYPES.index("zero")).sum()) == 8 + 16 + 32
    reach = _reachable(g, g.node_type == NODE_TYPES.index("input"))
    assert not reach[g.node_type == NODE_TYPES.index("output")].any()
    ops = ("nor_conv_3x3",) * 6  # a connected one reaches its outputs
    g = param_graph(SPACE.build(SPACE.from_ops(ops), C=8, N=1))
    assert _reachable(g, g.node_type == NODE_TYPES.index("input"))[g.node_type == NODE_TYPES.index("output")].all()


class UserNet(nn.Module):
    """Grouped conv, max pool, slicing, cat, a residual add, GELU/SiLU, a spatial flatten and two Linears."""

    def __init__(self) -> None:
        super().__init__()
        self.c1 = nn.Conv2d(2, 4, 3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(4)
        self.g = nn.Conv2d(4, 4, 5, padding=2, groups=2)
        self.act = nn.GELU()
        self.pool = nn.MaxPool2d(2)
        self.fc1 = nn.Linear(6 * 4, 3)
        self.bn2 = nn.BatchNorm1d(3)
        self.fc2 = nn.Linear(3, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.bn1(self.c1(x))  # [B, 4, 4, 4]
        h = self.act(self.g(h)) + h  # residual
        h = torch.cat([h, h[:, :2]], dim=1)  # [B, 6, 4, 4]
        h = self.pool(h).flatten(1)  # [B, 24]
        return self.fc2(nn.functional.silu(self.bn2(self.fc1(h))))


def test_user_module_of_supported_layers() -> None:
    net = UserNet()
    assert net(torch.randn(2, 2, 4, 4)).shape == (2, 2)
    g = param_graph(net, input_shape=(1, 2, 4, 4))
    count = lambda types, name: int((types == name).sum())  # noqa: E731
    et, nt = g.edge_type, g.node_type
    assert count(et, EDGE_TYPES.index("conv")) == 2 * 4 + 2 * 2 * 2  # dense 2->4, grouped 4->4 in 2 groups
    assert count(et, EDGE_TYPES.index("linear")) == 24 * 3 + 3 * 2
    assert count(et, EDGE_TYPES.index("max_pool")) == 6 and count(et, EDGE_TYPES.index("flatten")) == 24
    assert count(et, EDGE_TYPES.index("sum")) == 8  # the residual sum: two terms of 4 channels
    assert count(nt, NODE_TYPES.index("output")) == 2 and count(nt, NODE_TYPES.index("input")) == 2
    assert g.kernel_size == 5
    # the 3x3 kernel of c1 sits centred in the 5x5 edge kernel
    kern = g.edge_feat[et == EDGE_TYPES.index("conv"), :25].view(-1, 5, 5)[:8]
    assert torch.equal(kern[:, 1:4, 1:4], net.c1.weight.detach().reshape(8, 3, 3))
    assert kern[:, 0].abs().sum() == 0 and kern[:, 4].abs().sum() == 0
    # BN1d after fc1 folds onto fc1's nodes; GELU is an activation feature, not a node
    fc1_nodes = nt == NODE_TYPES.index("linear")
    assert torch.equal(g.node_feat[fc1_nodes, 5], net.bn2.weight.detach())
    assert int(g.node_feat[:, 8].sum()) == 4  # GELU on the 4 grouped-conv channels


def test_weights_from_buffer_and_meta_module() -> None:
    net = SmallNet()
    _randomise(net)
    flat = _flat(net)
    with torch.device("meta"):
        meta = SmallNet()
    g_meta, g_own = param_graph(meta, flat), param_graph(net)
    assert torch.equal(g_meta.node_feat, g_own.node_feat) and torch.equal(g_meta.edge_feat, g_own.edge_feat)
    with pytest.raises(ValueError, match="need 239 weights in all .* got 238"):
        param_graph(meta, flat[:-1])


class WithLSTM(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(4, 4)
        self.rnn = nn.LSTM(4, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.rnn(self.fc(x))


class WithEmbedding(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.body = nn.Sequential(nn.Embedding(10, 4), nn.Linear(4, 2))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x)


class WithSigmoid(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(4, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(self.fc(x))


@pytest.mark.parametrize(
    ("net", "pattern"),
    [(WithLSTM(), r"'rnn' of type torch\.nn\.modules\.rnn\.LSTM"),
     (WithEmbedding(), r"'body\.0' of type torch\.nn\.modules\.sparse\.Embedding"),
     (WithSigmoid(), "function 'sigmoid'")],
)  # fmt: skip
def test_unsupported_layer_is_named(net: nn.Module, pattern: str) -> None:
    with pytest.raises(UnsupportedLayer, match=pattern):
        param_graph(net, input_shape=(1, 4))


def test_batching_offsets_ptr_csr_and_unbatch() -> None:
    rng = np.random.default_rng(5)
    nets = [SPACE.build(SPACE.sample(rng), C=8, N=1) for _ in range(3)] + [SmallNet()]
    graphs = [param_graph(n) for n in nets]
    batch = batch_graphs(graphs)
    sizes = [g.num_nodes for g in graphs]
    assert batch.ptr.tolist() == np.cumsum([0, *sizes]).tolist()
    assert torch.equal(batch.batch, torch.repeat_interleave(torch.arange(4), torch.tensor(sizes)))
    assert batch.kernel_size == 3  # SmallNet's K=3 as well
    dst = batch.edge_index[1]
    assert torch.all(dst[1:] >= dst[:-1]), "edges must be sorted by destination"
    assert torch.equal(
        batch.dst_ptr,
        torch.cat([torch.zeros(1, dtype=torch.long), torch.bincount(dst, minlength=batch.num_nodes).cumsum(0)]),
    )
    assert torch.equal(batch.batch[batch.edge_index[0]], batch.batch[dst]), "an edge crosses graphs"
    for got, want in zip(batch.unbatch(), graphs):
        for name in ("node_feat", "edge_index", "edge_feat", "edge_type", "node_type", "ptr", "dst_ptr", "edge_ptr"):
            assert torch.equal(getattr(got, name), getattr(want, name)), name
    # the fast path (templates + one buffer) gives the same batch
    fast = build_batch([graph_template(n) for n in nets[:3]], [_flat(n) for n in nets[:3]])
    slow = batch_graphs(graphs[:3])
    for name in ("node_feat", "edge_index", "edge_feat", "edge_type", "node_type", "ptr", "batch", "dst_ptr"):
        assert torch.equal(getattr(fast, name), getattr(slow, name)), name


def test_batching_repads_smaller_kernels() -> None:
    lin = nn.Sequential(nn.Linear(3, 2))
    g = batch_graphs([param_graph(lin), param_graph(SmallNet())])
    assert g.kernel_size == 3
    first = g.edge_feat[: g.edge_ptr[1]]
    assert (
        torch.equal(first[:, 4], lin[0].weight.detach().reshape(-1))
        and first[:, [0, 1, 2, 3, 5, 6, 7, 8]].abs().sum() == 0
    )


def _assert_same_template(a: GraphTemplate, b: GraphTemplate) -> None:
    for name in GraphTemplate.__dataclass_fields__:
        x, y = getattr(a, name), getattr(b, name)
        same = torch.equal(x, y) and x.dtype == y.dtype if isinstance(x, torch.Tensor) else x == y
        assert same, name


@pytest.mark.parametrize("name", space_names())
def test_cached_one_level_graphs_match_full_trace(name: str) -> None:
    """The hierarchical path (cached one-level graphs) gives exactly the full trace's template."""
    clear_template_cache()
    space = get_space(name)
    rng = np.random.default_rng(7)
    for _ in range(6):
        net = space.build(space.sample(rng), **space.proxy_size)
        _assert_same_template(graph_template(net), graph_template(net, cache=False))
        _assert_same_template(trace_template(net), trace_template(net, cache=False))


def test_nb201_cells_share_one_graph() -> None:
    clear_template_cache()
    rng = np.random.default_rng(3)
    cells = [SPACE.build(SPACE.sample(rng), C=8, N=1).cells[0] for _ in range(5)]
    assert len({id(one_level(c)) for c in cells}) == 1  # keyed by submodule names, not their types


class Containers(nn.Module):
    """ModuleList iteration, ModuleDict access, a nested Sequential, indexing a Sequential child, kwargs."""

    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.Sequential(nn.BatchNorm2d(4), nn.ReLU()))
        self.blocks = nn.ModuleList([nn.Conv2d(4, 4, 1), nn.Identity(), nn.Conv2d(4, 4, 3, padding=1)])
        self.heads = nn.ModuleDict({"a": nn.Conv2d(4, 4, 1, bias=False), "b": nn.BatchNorm2d(4)})
        self.seq = nn.Sequential(nn.Conv2d(4, 4, 1), nn.BatchNorm2d(4))
        self.res = Residual(4)
        self.fc = nn.Linear(4, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.stem(x)
        for block in self.blocks:
            x = x + block(x)
        x = self.heads["b"](self.heads["a"](x))
        x = self.seq[1](self.seq[0](x))  # reaches into a Sequential: traced afresh, not cached
        x = self.res(x, scale=0.5)
        return self.fc(torch.flatten(nn.functional.adaptive_avg_pool2d(x, 1), 1))


class Residual(nn.Module):
    def __init__(self, c: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(c, c, 3, padding=1, bias=False)
        self.bn = nn.BatchNorm2d(c)

    def forward(self, x: torch.Tensor, scale: float = 1.0) -> torch.Tensor:
        return self.bn(self.conv(x)) * scale + x


class ConvOut(nn.Module):
    """A submodule whose conv output the parent reads twice: BatchNorm must not fold across the boundary."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 1)
        self.inner = nn.Sequential(nn.Conv2d(4, 4, 1))
        self.bn = nn.BatchNorm2d(4)
        self.fc = nn.Linear(4, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.inner(self.conv(x))
        y = self.bn(y) + y
        return self.fc(torch.flatten(nn.functional.adaptive_avg_pool2d(y, 1), 1))


@pytest.mark.parametrize("net", [Containers(), ConvOut(), UserNet(), SmallNet()])
def test_containers_and_user_modules_match_full_trace(net: nn.Module) -> None:
    clear_template_cache()
    shape = (1, 2, 4, 4) if isinstance(net, UserNet) else None
    for _ in range(2):  # a cold and a warm level cache
        fast = trace_template(net, input_shape=shape)
        _assert_same_template(fast, trace_template(net, input_shape=shape, cache=False))
    assert (fast.node_type == NODE_TYPES.index("norm")).any() == isinstance(net, ConvOut)


def test_skip_reset_parameters_changes_nothing_but_the_init() -> None:
    """Networks built without PyTorch's init give the same spec and graph; the layers are restored after."""
    from wsnas import generate, weight_spec
    from wsnas.encoding import skip_reset_parameters

    space = get_space("nb201")
    arch = space.from_string("|nor_conv_3x3~0|+|skip_connect~0|nor_conv_1x1~1|+|avg_pool_3x3~0|none~1|nor_conv_3x3~2|")
    before = {cls: cls.__dict__["reset_parameters"] for cls in (nn.Linear, nn.LayerNorm)}
    with skip_reset_parameters():
        fast = space.build(arch, C=4, N=1)
        assert nn.Linear.reset_parameters is not before[nn.Linear]
    plain = space.build(arch, C=4, N=1)
    assert {cls: cls.__dict__["reset_parameters"] for cls in before} == before
    assert weight_spec(fast) == weight_spec(plain)
    g_fast = build_batch([graph_template(fast, input_shape=(1, 3, 32, 32))], generate(weight_spec(fast), [0]).flat)
    g_plain = build_batch([graph_template(plain, input_shape=(1, 3, 32, 32))], generate(weight_spec(plain), [0]).flat)
    for name in ("node_feat", "edge_index", "edge_feat", "edge_type", "node_type"):
        assert torch.equal(getattr(g_fast, name), getattr(g_plain, name)), name
    torch.manual_seed(0)
    layer = nn.Linear(4, 4)  # initialised again as PyTorch does it
    assert float(layer.weight.detach().abs().sum()) > 0


def test_skip_reset_parameters_is_per_thread_and_restored_whatever_the_order() -> None:
    """Two threads inside the block at once, leaving in the order they did not enter: another thread's layers
    are initialised meanwhile, and PyTorch's init is back once both have left (a search and a ``join`` in two
    threads once left it patched for good)."""
    import threading

    from wsnas.encoding import skip_reset_parameters

    before = {cls: cls.__dict__["reset_parameters"] for cls in (nn.Linear, nn.Conv2d.__mro__[1])}
    first_in, second_in, first_may_leave, first_left = (threading.Event() for _ in range(4))

    def first() -> None:
        with skip_reset_parameters():
            first_in.set()
            first_may_leave.wait(10)
        first_left.set()

    t = threading.Thread(target=first)
    t.start()
    first_in.wait(10)
    with skip_reset_parameters():  # the main thread enters second and leaves last
        second_in.set()
        skipped = nn.Linear(64, 64)
        other: list[nn.Linear] = []
        worker = threading.Thread(target=lambda: other.append(nn.Linear(64, 64)))
        worker.start()
        worker.join()
        first_may_leave.set()
        first_left.wait(10)
    t.join()
    torch.manual_seed(0)
    expected = nn.Linear(64, 64)
    torch.manual_seed(0)
    assert torch.equal(nn.Linear(64, 64).weight, expected.weight)  # the init runs again after the blocks
    assert {cls: cls.__dict__["reset_parameters"] for cls in before} == before
    assert float(other[0].weight.detach().abs().sum()) > 0 and torch.isfinite(other[0].weight).all()
    assert other[0].weight.detach().abs().max() <= 1 / 8  # a thread outside the block got PyTorch's init
    assert skipped.weight.shape == (64, 64)
