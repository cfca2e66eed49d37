"""MacroCNN: a macro space of three stages of inverted-bottleneck blocks (depth, width, kernel, expansion, skip)."""

from __future__ import annotations

import itertools
import math
import re
from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING, Any

import networkx as nx
import numpy as np

from wsnas._arch import INPUT, OUTPUT, Arch, Arity
from wsnas._errors import InvalidArchitecture

from ._base import SearchSpace

if TYPE_CHECKING:
    import optuna
    import torch.nn as nn

__all__ = ["MacroCNN", "MACRO_WIDTHS", "Block", "Stage"]

#: one block: ``(kernel, expansion, skip)``
Block = tuple[int, int, bool]
#: one stage: ``(width, blocks)``; the width is the nominal (full-size) channel count
Stage = tuple[int, tuple[Block, ...]]

#: the width choices of the three stages at full size (``width_mult=1``)
MACRO_WIDTHS: tuple[tuple[int, ...], ...] = ((16, 24, 32), (32, 48, 64), (64, 96, 128))
_N_STAGES = 3
_BLOCK_KEYS = frozenset({"op", "stage", "kernel", "expansion", "skip", "width"})
_STAGE_RE = re.compile(r"w([1-9][0-9]{0,8}):(.*)", re.ASCII | re.DOTALL)
_BLOCK_RE = re.compile(r"k([1-9][0-9]{0,8})e([1-9][0-9]{0,8})s([01])", re.ASCII)
#: spaces larger than this are not enumerated
_ENUMERATE_LIMIT = 1_000_000


def _int_tuple(value: Any, what: str) -> tuple[int, ...]:
    try:
        items = tuple(value)
    except TypeError:
        raise ValueError(f"MacroCNN: {what} must be a sequence of positive ints, got {value!r}") from None
    if not items or any(type(v) is not int or v < 1 for v in items) or len(set(items)) != len(items):
        raise ValueError(f"MacroCNN: {what} must be a non-empty sequence of distinct positive ints, got {value!r}")
    return items


class MacroCNN(SearchSpace):
    """A macro search space: three stages of inverted-bottleneck blocks after a stem.

    The network is a 3x3 stem conv-BN-ReLU (``stem_width`` channels), three stages, global average
    pooling and a linear classifier. Each stage chooses its depth (1 to ``max_depth`` blocks) and its
    width (from ``widths[stage]``); the first block of stages 2 and 3 has stride 2. Each block chooses
    its kernel (depthwise ``k x k``), its expansion (an inverted bottleneck: 1x1 expand conv-BN-ReLU
    when the expansion is above 1, depthwise conv-BN-ReLU, 1x1 project conv-BN) and a residual skip.

    **The skip rule.** A residual add needs stride 1 and equal input and output channels. The first
    block of every stage is the stage's transition: it moves to the stage's width (from the stem in
    stage 1, whose width is not a choice) and, in stages 2 and 3, halves the resolution. Its skip is
    therefore fixed to off, whatever the widths happen to be; every later block keeps stride 1 and the
    stage's width, so its skip is a free choice. A string or graph with a skip on a first block is
    rejected with :class:`InvalidArchitecture`.

    The architecture graph is a chain ``input -> block ... -> output``; every block node has
    ``op="block"`` and the attributes ``stage`` (1-3), ``kernel``, ``expansion``, ``skip`` (bool) and
    ``width`` (the nominal channel count). The string form names each stage's width, then its blocks;
    stages are separated by ``/`` and blocks by ``-``::

        w16:k3e1s0-k5e3s1/w48:k5e6s0/w96:k7e3s0-k3e1s1-k3e6s1

    With the default choices the space holds ``(3 * 9 * (1 + 18 + 18**2 + 18**3))**3``, about 4.6e15,
    architectures, so it is not enumerated; smaller configurations (``max_depth``, ``kernels``, ...)
    are enumerated when they hold at most a million.

    Args:
        widths: the width choices of each of the three stages (nominal channel counts).
        max_depth: the largest number of blocks in a stage (depths run from 1).
        kernels: depthwise kernel sizes (odd, so that padding keeps the resolution).
        expansions: expansion ratios of the inverted bottleneck.
        stem_width: nominal channel count of the stem.
    """

    name = "macro"
    description = "MacroCNN: 3 stages of inverted-bottleneck blocks (depth, width, kernel, expansion, skip)"
    node_ops = {"block": Arity(1, 1)}
    proxy_size = {"width_mult": 0.25}

    def __init__(
        self,
        *,
        widths: Sequence[Sequence[int]] = MACRO_WIDTHS,
        max_depth: int = 4,
        kernels: Sequence[int] = (3, 5, 7),
        expansions: Sequence[int] = (1, 3, 6),
        stem_width: int = 16,
    ) -> None:
        widths = tuple(widths)
        if len(widths) != _N_STAGES:
            raise ValueError(f"MacroCNN: widths must hold the choices of {_N_STAGES} stages, got {len(widths)}")
        self.widths = tuple(_int_tuple(w, f"widths[{i}]") for i, w in enumerate(widths))
        self.kernels = _int_tuple(kernels, "kernels")
        if any(k % 2 == 0 for k in self.kernels):
            raise ValueError(f"MacroCNN: kernels must be odd (padding k // 2 keeps the resolution), got {kernels!r}")
        self.expansions = _int_tuple(expansions, "expansions")
        if type(max_depth) is not int or max_depth < 1:
            raise ValueError(f"MacroCNN: max_depth must be an int >= 1, got {max_depth!r}")
        if type(stem_width) is not int or stem_width < 1:
            raise ValueError(f"MacroCNN: stem_width must be an int >= 1, got {stem_width!r}")
        self.max_depth = max_depth
        self.stem_width = stem_width

    def __repr__(self) -> str:
        return (
            f"MacroCNN(widths={self.widths}, max_depth={self.max_depth}, kernels={self.kernels}, "
            f"expansions={self.expansions}, stem_width={self.stem_width})"
        )

    # -- counting -----------------------------------------------------------------------------------
    def _stage_count(self, stage: int) -> int:
        per_block = len(self.kernels) * len(self.expansions)
        # the first block has no skip choice, every later one has two
        blocks = sum(per_block * (2 * per_block) ** (d - 1) for d in range(1, self.max_depth + 1))
        return len(self.widths[stage]) * blocks

    @property
    def size(self) -> int:
        """Exact number of architectures: the product over stages of ``widths * sum_d K E (2 K E)^(d-1)``."""
        return math.prod(self._stage_count(s) for s in range(_N_STAGES))

    def enumerate(self) -> Iterator[Arch]:
        """Every architecture (stage by stage: width, then depth, then blocks), if there are at most a million.

        Raises:
            NotImplementedError: the space is larger than that.
        """
        if self.size > _ENUMERATE_LIMIT:
            raise NotImplementedError(
                f"search space 'macro' holds {self.size} architectures; enumerate() needs at most {_ENUMERATE_LIMIT}"
            )
        return (self.from_stages(stages) for stages in itertools.product(*map(self._stage_options, range(_N_STAGES))))

    def _stage_options(self, stage: int) -> Iterator[Stage]:
        for width in self.widths[stage]:
            for depth in range(1, self.max_depth + 1):
                later = list(itertools.product(self.kernels, self.expansions, (False, True)))
                first = [(k, e, False) for k, e in itertools.product(self.kernels, self.expansions)]
                per_block = [first] + [later] * (depth - 1)
                for blocks in itertools.product(*per_block):
                    yield width, blocks

    # -- construction -------------------------------------------------------------------------------
    def from_stages(self, stages: Sequence[tuple[int, Sequence[Block]]]) -> Arch:
        """The architecture with ``stages[i] = (width, [(kernel, expansion, skip), ...])`` for stage ``i + 1``.

        Raises:
            InvalidArchitecture: a value is not among the space's choices or a skip breaks the skip rule.
        """
        if len(stages) != _N_STAGES:
            raise InvalidArchitecture(f"a MacroCNN architecture has {_N_STAGES} stages, got {len(stages)}")
        g = nx.DiGraph()
        g.add_node(0, op=INPUT)
        prev = 0
        for s, (width, blocks) in enumerate(stages, start=1):
            where = f"MacroCNN stage {s}"
            if type(width) is not int or width not in self.widths[s - 1]:
                raise InvalidArchitecture(f"{where}: width must be one of {list(self.widths[s - 1])}, got {width!r}")
            if not 1 <= len(blocks) <= self.max_depth:
                raise InvalidArchitecture(f"{where}: depth must be between 1 and {self.max_depth}, got {len(blocks)}")
            for b, block in enumerate(blocks, start=1):
                if len(block) != 3:
                    raise InvalidArchitecture(f"{where} block {b}: expected (kernel, expansion, skip), got {block!r}")
                kernel, expansion, skip = block
                if type(kernel) is not int or kernel not in self.kernels:
                    raise InvalidArchitecture(
                        f"{where} block {b}: kernel must be one of {list(self.kernels)}, got {kernel!r}"
                    )
                if type(expansion) is not int or expansion not in self.expansions:
                    raise InvalidArchitecture(
                        f"{where} block {b}: expansion must be one of {list(self.expansions)}, got {expansion!r}"
                    )
                if type(skip) is not bool:
                    raise InvalidArchitecture(f"{where} block {b}: skip must be a bool, got {skip!r}")
                if b == 1 and skip:
                    raise InvalidArchitecture(
                        f"{where} block 1: the first block of a stage changes the width or the resolution, "
                        "so its skip must be off (s0), got on (s1)"
                    )
                node = prev + 1
                g.add_node(node, op="block", stage=s, kernel=kernel, expansion=expansion, skip=skip, width=width)
                g.add_edge(prev, node)
                prev = node
        g.add_node(prev + 1, op=OUTPUT)
        g.add_edge(prev, prev + 1)
        return self.make_arch(g)

    def stages(self, arch: Arch) -> tuple[Stage, ...]:
        """The stages of ``arch`` as ``((width, ((kernel, expansion, skip), ...)), ...)``.

        Raises:
            InvalidArchitecture: ``arch`` is of another space or its graph is not a MacroCNN chain.
        """
        if not isinstance(arch, Arch):
            raise InvalidArchitecture(f"expected an Arch of space 'macro', got {type(arch).__name__}")
        if arch.space != self.name:
            raise InvalidArchitecture(f"expected an architecture of space 'macro', got one of {arch.space!r}")
        g, where = arch.graph, "a MacroCNN graph"
        if g.graph:
            raise InvalidArchitecture(f"{where} has no graph attributes, got {sorted(g.graph)}")
        if any(d for _, _, d in g.edges(data=True)):
            raise InvalidArchitecture(f"{where} has plain edges without attributes")
        node, chain = arch.input_node, []
        while True:
            succ = list(g.successors(node))
            if len(succ) != 1 or g.in_degree(succ[0]) != 1:
                raise InvalidArchitecture(f"{where} must be a chain input -> blocks -> output; node {node!r} breaks it")
            node = succ[0]
            if g.nodes[node]["op"] == OUTPUT:
                break
            chain.append(g.nodes[node])
        if len(chain) + 2 != g.number_of_nodes():
            off = g.number_of_nodes() - len(chain) - 2
            raise InvalidArchitecture(f"{where} must be a chain; {off} node(s) lie off it")
        if set(g.nodes[arch.input_node]) != {"op"} or set(g.nodes[node]) != {"op"}:
            raise InvalidArchitecture(f"{where}: the input and output nodes carry only 'op'")
        grouped: list[list[dict[str, Any]]] = []
        for data in chain:
            if data["op"] != "block" or set(data) != _BLOCK_KEYS:
                raise InvalidArchitecture(f"{where}: block nodes carry exactly {sorted(_BLOCK_KEYS)}, got {dict(data)}")
            if type(data["stage"]) is not int:
                raise InvalidArchitecture(f"{where}: a block's stage must be an int, got {data['stage']!r}")
            if not grouped or grouped[-1][0]["stage"] != data["stage"]:
                grouped.append([])
            grouped[-1].append(data)
        order = [group[0]["stage"] for group in grouped]
        if order != list(range(1, _N_STAGES + 1)):
            raise InvalidArchitecture(f"{where}: blocks must run through stages 1, 2, 3 in order, got stages {order}")
        result = []
        for s, group in enumerate(grouped, start=1):
            widths = {repr(d["width"]) for d in group}
            if len(widths) != 1:
                raise InvalidArchitecture(f"{where}: all blocks of stage {s} share one width, got {sorted(widths)}")
            result.append((group[0]["width"], tuple((d["kernel"], d["expansion"], d["skip"]) for d in group)))
        stages = tuple(result)
        self.from_stages(stages)  # checks every value against the choices
        return stages

    def validate(self, arch: Arch) -> Arch:
        return self.from_stages(self.stages(arch))

    # -- sampling -----------------------------------------------------------------------------------
    def sample(self, rng: np.random.Generator) -> Arch:
        stages = []
        for s in range(_N_STAGES):
            width = self.widths[s][int(rng.integers(len(self.widths[s])))]
            depth = int(rng.integers(1, self.max_depth + 1))
            blocks = []
            for b in range(depth):
                kernel = self.kernels[int(rng.integers(len(self.kernels)))]
                expansion = self.expansions[int(rng.integers(len(self.expansions)))]
                blocks.append((kernel, expansion, b > 0 and bool(rng.integers(2))))
            stages.append((width, tuple(blocks)))
        return self.from_stages(stages)

    def suggest(self, trial: optuna.Trial) -> Arch:
        """Params ``stage{s}_width``, ``stage{s}_depth`` and, for each block ``b <= depth``,
        ``stage{s}_block{b}_kernel``, ``stage{s}_block{b}_expansion`` and (``b >= 2``) ``stage{s}_block{b}_skip``."""
        stages = []
        for s in range(1, _N_STAGES + 1):
            width = trial.suggest_categorical(f"stage{s}_width", list(self.widths[s - 1]))
            depth = trial.suggest_int(f"stage{s}_depth", 1, self.max_depth)
            blocks = []
            for b in range(1, depth + 1):
                key = f"stage{s}_block{b}"
                kernel = trial.suggest_categorical(f"{key}_kernel", list(self.kernels))
                expansion = trial.suggest_categorical(f"{key}_expansion", list(self.expansions))
                skip = b > 1 and trial.suggest_categorical(f"{key}_skip", [False, True])
                blocks.append((kernel, expansion, skip))
            stages.append((width, tuple(blocks)))
        return self.from_stages(stages)

    def neighbours(self, arch: Arch) -> list[Arch]:
        """One choice changed: a stage's width or depth, or a block's kernel, expansion or skip.

        A shallower depth drops the stage's last blocks; a deeper one appends copies of the stage's
        last block with the skip on.
        """
        stages = self.stages(arch)
        out: list[Arch] = []

        def with_stage(s: int, stage: Stage) -> None:
            out.append(self.from_stages(stages[:s] + (stage,) + stages[s + 1 :]))

        for s, (width, blocks) in enumerate(stages):
            for w in self.widths[s]:
                if w != width:
                    with_stage(s, (w, blocks))
            for depth in range(1, self.max_depth + 1):
                if depth < len(blocks):
                    with_stage(s, (width, blocks[:depth]))
                elif depth > len(blocks):
                    k, e, _ = blocks[-1]
                    with_stage(s, (width, blocks + ((k, e, True),) * (depth - len(blocks))))
            for b, (k, e, skip) in enumerate(blocks):
                changed = [(k2, e, skip) for k2 in self.kernels if k2 != k]
                changed += [(k, e2, skip) for e2 in self.expansions if e2 != e]
                if b > 0:
                    changed.append((k, e, not skip))
                for block in changed:
                    with_stage(s, (width, blocks[:b] + (block,) + blocks[b + 1 :]))
        return out

    # -- strings ------------------------------------------------------------------------------------
    def to_string(self, arch: Arch) -> str:
        return "/".join(
            f"w{width}:" + "-".join(f"k{k}e{e}s{int(skip)}" for k, e, skip in blocks)
            for width, blocks in self.stages(arch)
        )

    def from_string(self, text: str) -> Arch:
        if not isinstance(text, str):
            raise InvalidArchitecture(f"a MacroCNN string must be a str, got {type(text).__name__}")
        parts = text.split("/")
        if len(parts) != _N_STAGES:
            raise InvalidArchitecture(
                f"a MacroCNN string has {_N_STAGES} '/'-separated stages, got {len(parts)} in {text!r}"
            )
        stages = []
        for s, part in enumerate(parts, start=1):
            match = _STAGE_RE.fullmatch(part)
            if match is None:
                raise InvalidArchitecture(f"MacroCNN stage {s} must read 'wWIDTH:BLOCK-BLOCK...', got {part!r}")
            blocks = []
            for b, token in enumerate(match.group(2).split("-"), start=1):
                m = _BLOCK_RE.fullmatch(token)
                if m is None:
                    raise InvalidArchitecture(
                        f"MacroCNN stage {s} block {b} must read 'k<kernel>e<expansion>s<0|1>', got {token!r}"
                    )
                blocks.append((int(m.group(1)), int(m.group(2)), m.group(3) == "1"))
            stages.append((int(match.group(1)), tuple(blocks)))
        return self.from_stages(stages)

    # -- networks -----------------------------------------------------------------------------------
    def build(self, arch: Arch, *, width_mult: float = 1.0, num_classes: int = 10, in_channels: int = 3) -> nn.Module:
        """The network of ``arch``; every nominal width ``w`` (stem included) becomes
        ``max(1, round(w * width_mult))`` channels (equal widths stay equal, so skips stay possible).

        Shapes: ``[B, in_channels, H, W] -> [B, num_classes]``.
        """
        from ._macro_net import MacroNetwork

        if isinstance(width_mult, bool) or not isinstance(width_mult, (int, float)) or not width_mult > 0:
            raise ValueError(f"MacroCNN.build: width_mult must be a number > 0, got {width_mult!r}")
        for key, value in (("num_classes", num_classes), ("in_channels", in_channels)):
            if type(value) is not int or value < 1:
                raise ValueError(f"MacroCNN.build: {key} must be an int >= 1, got {value!r}")

        def scale(w: int) -> int:
            return max(1, int(round(w * width_mult)))

        specs = []
        c_in = scale(self.stem_width)
        for s, (width, blocks) in enumerate(self.stages(arch)):
            c_out = scale(width)
            for b, (kernel, expansion, skip) in enumerate(blocks):
                stride = 2 if s > 0 and b == 0 else 1
                specs.append((c_in, c_out, kernel, expansion, stride, skip))
                c_in = c_out
        return MacroNetwork(specs, stem=scale(self.stem_width), num_classes=num_classes, in_channels=in_channels)
