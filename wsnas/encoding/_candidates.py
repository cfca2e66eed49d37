"""Candidate architectures as one batched parameter graph: build, spec, template, generate, fill.

>>> cands = CandidateGraphs(get_space("nb201"))          # encoded at the space's proxy_size
>>> g = cands.graphs(archs, seeds=0)                     # ParamGraph of len(archs) graphs

Each architecture is built at the encoding width (``size``, default ``space.proxy_size``), and its
:class:`~wsnas.WeightSpec` and :class:`~wsnas.GraphTemplate` are kept in an LRU keyed by the canonical
hash, so an architecture seen before costs nothing. The weights of the whole batch come from ONE
:func:`~wsnas.generate` call and the graphs from ONE :func:`~wsnas.build_batch` call (one per kernel
size, when the batch mixes them).
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

from wsnas._arch import Arch

if TYPE_CHECKING:
    import torch

    from wsnas.encoding._paramgraph import GraphTemplate, ParamGraph
    from wsnas.encoding._weights import WeightSpec
    from wsnas.search_spaces import SearchSpace

__all__ = ["CandidateGraphs", "kernel_runs", "skip_reset_parameters"]


class CandidateGraphs:
    """Turns architectures of one search space into batched parameter graphs with generated weights.

    Args:
        space: the search space the architectures belong to.
        size: size keywords for ``space.build`` (the "encoding width"); ``None``: ``space.proxy_size``.
        input_shape: ``(1, C, H, W)`` given to the tracer; ``None``: ``(1, *space.input_shape)``.
        init: the weight init rule (one of :data:`wsnas.INIT_RULES`).
        cache_size: how many architectures' (spec, template) pairs the LRU keeps (>= 1).
    """

    def __init__(
        self,
        space: SearchSpace,
        *,
        size: Mapping[str, Any] | None = None,
        input_shape: Sequence[int] | None = None,
        init: str = "kaiming_normal",
        cache_size: int = 4096,
    ) -> None:
        from wsnas.encoding._weights import INIT_RULES

        if init not in INIT_RULES:
            raise ValueError(f"init must be one of {list(INIT_RULES)}, got {init!r}")
        if isinstance(cache_size, bool) or not isinstance(cache_size, int) or cache_size < 1:
            raise ValueError(f"cache_size must be an int >= 1, got {cache_size!r}")
        self.space = space
        self.size: dict[str, Any] = dict(space.proxy_size if size is None else size)
        self.input_shape: tuple[int, ...] = (
            (1, *space.input_shape) if input_shape is None else tuple(int(s) for s in input_shape)
        )
        self.init = init
        self.cache_size = cache_size
        self._cache: OrderedDict[str, tuple[WeightSpec, GraphTemplate]] = OrderedDict()

    def __repr__(self) -> str:
        return f"CandidateGraphs({self.space.name!r}, size={self.size}, init={self.init!r}, cached={len(self._cache)})"

    @property
    def cached(self) -> int:
        """Number of architectures whose spec and template are in the LRU."""
        return len(self._cache)

    def arch(self, arch: Arch | str) -> Arch:
        """``arch`` as a validated :class:`Arch` of the space (strings go through ``space.from_string``).

        Raises:
            wsnas.InvalidArchitecture: a malformed string or an architecture of another space.
        """
        if isinstance(arch, str):
            return self.space.from_string(arch)
        return self.space.validate(arch)

    def entry(self, arch: Arch | str) -> tuple[WeightSpec, GraphTemplate]:
        """The (spec, template) of ``arch`` at the encoding width, from the LRU or built now."""
        return self._entry(self.arch(arch))

    def _entry(self, arch: Arch) -> tuple[WeightSpec, GraphTemplate]:
        """:meth:`entry` of an architecture already validated by :meth:`arch`."""
        key = arch.hash
        hit = self._cache.get(key)
        if hit is not None:
            self._cache.move_to_end(key)
            return hit
        from wsnas.encoding._trace import graph_template
        from wsnas.encoding._weights import weight_spec

        # Built on the CPU, not under torch.device("meta"): the meta context intercepts every op and made
        # NB201 C=8 N=1 builds slower (9.2 vs 7.3-8.9 ms on a busy core; 10.3 vs 6.2 ms measured earlier).
        # PyTorch's own initialisation is skipped: the spec reads shapes only and the weights are generated.
        with skip_reset_parameters():
            net = self.space.build_for_encoding(arch, **self.size)  # read here, never kept
        value = (weight_spec(net, init=self.init), graph_template(net, input_shape=self.input_shape, memo=False))
        self._cache[key] = value
        if len(self._cache) > self.cache_size:
            self._cache.popitem(last=False)
        return value

    def graphs(
        self, archs: Sequence[Arch | str], seeds: int | Sequence[int], *, device: torch.device | str | None = "cpu"
    ) -> ParamGraph:
        """One batched parameter graph of ``archs`` with their generated weights.

        Args:
            archs: ``B >= 1`` architectures (or the space's strings).
            seeds: the generator seed of each candidate, or one seed for all.
            device: where the weights are generated (CUDA runs the Triton kernel); the graph is returned
                on the CPU, as :func:`~wsnas.build_batch` builds it.

        Returns:
            A :class:`~wsnas.ParamGraph` of ``B`` graphs, graph ``b`` for ``archs[b]``:
            ``node_feat [N, 11]``, ``edge_index [2, E]``, ``edge_feat [E, K*K + 1]`` with ``K`` the largest
            kernel size of the batch.

        Raises:
            ValueError: no architectures, or ``len(seeds) != len(archs)``.
            wsnas.InvalidArchitecture: an architecture is malformed or of another space.
        """
        if len(archs) == 0:
            raise ValueError("graphs needs at least one architecture, got none")
        seed_list = [seeds] * len(archs) if isinstance(seeds, int) else list(seeds)
        if len(seed_list) != len(archs):
            raise ValueError(
                f"graphs needs one seed per architecture, got {len(archs)} archs and {len(seed_list)} seeds"
            )
        return self._graphs([self.arch(a) for a in archs], seed_list, device)

    def _graphs(self, archs: Sequence[Arch], seed_list: list[int], device: torch.device | str | None) -> ParamGraph:
        """:meth:`graphs` of validated architectures, one seed each."""
        from wsnas.encoding._paramgraph import batch_graphs, build_batch
        from wsnas.encoding._weights import generate

        entries = [self._entry(a) for a in archs]
        weights = generate([spec for spec, _ in entries], seed_list, device=device)  # one launch for the batch
        templates = [t for _, t in entries]
        flat = weights.flat
        runs = kernel_runs(templates)
        if len(runs) == 1:
            return build_batch(templates, flat)
        starts = weights._starts  # a batch mixing kernel sizes: one build_batch per run, order kept
        parts = [build_batch(templates[a:b], flat[starts[a] : starts[b]]) for a, b in runs]
        return batch_graphs(parts)


#: the threads inside :func:`skip_reset_parameters` (a depth each) and the layers' own ``reset_parameters`` while
#: any thread is inside (the patch is shared by the process; whether it skips is each thread's own)
_SKIPPING = threading.local()
_PATCH_LOCK = threading.Lock()
_PATCH: dict[str, Any] = {"users": 0, "saved": {}}


@contextmanager
def skip_reset_parameters() -> Iterator[None]:
    """Within the block, ``reset_parameters`` of PyTorch's parametrised layers does nothing in this thread.

    A network built for encoding gets generated weights, so the random initialisation that every
    ``Conv2d``/``Linear``/``BatchNorm`` runs in its constructor is wasted work (about a quarter of an NB201
    C=8 N=1 build: 5.2-5.5 vs 6.7-7.2 ms per network, measured on one thread). Parameters are left
    uninitialised (``torch.empty``); use them only after loading weights.

    The classes are patched while any thread is inside a block (the first to enter patches, the last to leave
    restores the originals), and the patch skips only in threads inside one: a search and a ``join`` in two
    threads of one process (each counting parameters this way) once left the patch in place for good, so
    every network built after was uninitialised.
    """
    import torch.nn as nn

    with _PATCH_LOCK:
        if _PATCH["users"] == 0:
            classes = {
                base
                for cls in (nn.Linear, nn.Bilinear, nn.modules.conv._ConvNd, nn.modules.batchnorm._NormBase,
                            nn.LayerNorm, nn.GroupNorm, nn.Embedding)
                for base in cls.__mro__
                if "reset_parameters" in base.__dict__
            }  # fmt: skip
            _PATCH["saved"] = {cls: cls.__dict__["reset_parameters"] for cls in classes}
            for cls, original in _PATCH["saved"].items():
                cls.reset_parameters = _skippable(original)
        _PATCH["users"] += 1
    _SKIPPING.depth = getattr(_SKIPPING, "depth", 0) + 1
    try:
        yield
    finally:
        _SKIPPING.depth -= 1
        with _PATCH_LOCK:
            _PATCH["users"] -= 1
            if _PATCH["users"] == 0:
                for cls, original in _PATCH["saved"].items():
                    cls.reset_parameters = original
                _PATCH["saved"] = {}


def _skippable(original: Any) -> Any:
    """``original`` (a layer's ``reset_parameters``), skipped in a thread inside :func:`skip_reset_parameters`."""

    def reset_parameters(self: object, *args: Any, **kwargs: Any) -> Any:
        if getattr(_SKIPPING, "depth", 0):
            return None
        return original(self, *args, **kwargs)

    return reset_parameters


def kernel_runs(templates: Sequence[GraphTemplate]) -> list[tuple[int, int]]:
    """``[(start, stop)]`` maximal runs of consecutive templates with one kernel size."""
    runs, start = [], 0
    for i in range(1, len(templates) + 1):
        if i == len(templates) or templates[i].kernel_size != templates[start].kernel_size:
            runs.append((start, i))
            start = i
    return runs
