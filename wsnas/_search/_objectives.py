"""Search objectives: accuracy (predicted, then measured) and the cost of the built network.

``accuracy`` comes from the evaluator (and the predictor while screening); ``params``, ``flops`` and
``latency`` are measured by wsnas on the network that ``space.build`` makes at the search's network
size: exact, cheap, and known before any training, so they also serve as constraints (``max_params``).
"""

from __future__ import annotations

import math
import statistics
import time
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from wsnas._errors import SearchConfigError

if TYPE_CHECKING:
    from wsnas._arch import Arch
    from wsnas.search_spaces import SearchSpace

__all__ = ["OBJECTIVES", "NetMeasures", "check_objectives", "pareto_indices"]

#: objective name -> Optuna direction
OBJECTIVES: dict[str, str] = {
    "accuracy": "maximize",
    "params": "minimize",
    "flops": "minimize",
    "latency": "minimize",
}
#: what each objective means, for help texts and the README
OBJECTIVE_HELP: dict[str, str] = {
    "accuracy": "the evaluator's metric (predicted while screening), higher is better",
    "params": "parameter count of the built network",
    "flops": "FLOPs of one forward pass of one input (torch's flop formulas)",
    "latency": "median CPU milliseconds of one forward pass of one input, one thread",
}


def check_objectives(objectives: str | Sequence[str]) -> tuple[str, ...]:
    """``objectives`` as a tuple of known, distinct names.

    Raises:
        SearchConfigError: empty, unknown or repeated names; the message lists the known ones.
    """
    names = (objectives,) if isinstance(objectives, str) else tuple(objectives)
    if not names:
        raise SearchConfigError(f"objectives must name at least one of {list(OBJECTIVES)}, got none")
    for name in names:
        if name not in OBJECTIVES:
            raise SearchConfigError(f"unknown objective {name!r}; known objectives: {', '.join(OBJECTIVES)}")
    if len(set(names)) != len(names):
        raise SearchConfigError(f"objectives must be distinct, got {list(names)}")
    return names


class NetMeasures:
    """Params, FLOPs and CPU latency of ``space.build(arch, **size)``, cached per architecture hash.

    Args:
        space: the search space.
        size: keywords for ``space.build`` (``{}``: the space's default network).
        input_shape: one input without the batch dimension (default: the space's).
    """

    def __init__(
        self, space: SearchSpace, size: Mapping[str, Any] | None = None, input_shape: tuple[int, ...] | None = None
    ) -> None:
        self.space = space
        self.size = dict(size or {})
        self.input_shape = tuple(input_shape or space.input_shape)
        self._cache: dict[tuple[str, str], float] = {}
        self._last: tuple[str, Any] | None = None  # the last network built by _bare: (hash, network)

    def _bare(self, arch: Arch) -> Any:
        """The network of ``arch`` for counting (params, FLOPs): built without PyTorch's weight
        initialisation, whose values they do not read. The last one is kept, so that its params and FLOPs
        cost one build. NB201 at its default size: 15 ms against 17 ms with the initialisation and 25-34
        ms on the meta device (whose every op goes through a dispatcher in Python)."""
        if self._last is not None and self._last[0] == arch.hash:
            return self._last[1]
        from wsnas.encoding import skip_reset_parameters

        try:
            with skip_reset_parameters():
                net = self.space.build(arch, **self.size)
        except Exception:  # a space whose build needs the initialised weights: build as usual
            net = self.space.build(arch, **self.size)
        self._last = (arch.hash, net)
        return net

    def params(self, arch: Arch) -> int:
        """Parameter count."""
        key = (arch.hash, "params")
        if key not in self._cache:
            from wsnas._netstats import count_params

            self._cache[key] = count_params(self._bare(arch))
        return int(self._cache[key])

    def cached(self, arch_hash: str, name: str) -> float | None:
        """The ``name`` (``params``, ``flops``, ``latency``) of the architecture ``arch_hash`` if this object
        has measured it already, else ``None`` (nothing is built)."""
        return self._cache.get((arch_hash, name))

    def flops(self, arch: Arch) -> int:
        """FLOPs of one forward pass on one input."""
        key = (arch.hash, "flops")
        if key not in self._cache:
            from wsnas._netstats import count_flops

            self._cache[key] = count_flops(self._bare(arch), self.input_shape)
        return int(self._cache[key])

    def latency(self, arch: Arch, repeats: int = 7) -> float:
        """Median wall milliseconds of ``repeats`` forward passes of one input (after one warm-up), one thread."""
        key = (arch.hash, "latency")
        if key not in self._cache:
            import torch

            net = self.space.build(arch, **self.size).eval()
            x = torch.zeros(1, *self.input_shape)
            threads = torch.get_num_threads()
            torch.set_num_threads(1)
            try:
                with torch.inference_mode():
                    net(x)
                    times = []
                    for _ in range(repeats):
                        start = time.perf_counter()
                        net(x)
                        times.append((time.perf_counter() - start) * 1000.0)
            finally:
                torch.set_num_threads(threads)
            self._cache[key] = statistics.median(times)
        return float(self._cache[key])

    def measure(self, arch: Arch, names: Sequence[str]) -> dict[str, float]:
        """The network-side objectives among ``names`` (``accuracy`` is skipped)."""
        out: dict[str, float] = {}
        for name in names:
            if name == "params":
                out[name] = float(self.params(arch))
            elif name == "flops":
                out[name] = float(self.flops(arch))
            elif name == "latency":
                out[name] = self.latency(arch)
        return out


def pareto_indices(points: Sequence[Sequence[float]], directions: Sequence[str]) -> list[int]:
    """Indices of the non-dominated points (``directions``: ``maximize``/``minimize`` per column)."""
    signs = [1.0 if d == "minimize" else -1.0 for d in directions]
    pts = [[s * float(v) for s, v in zip(signs, p)] for p in points]  # all minimised
    front = []
    for i, p in enumerate(pts):
        if any(not math.isfinite(v) for v in p):
            continue
        dominated = any(
            all(a <= b for a, b in zip(q, p)) and any(a < b for a, b in zip(q, p)) for j, q in enumerate(pts) if j != i
        )
        if not dominated:
            front.append(i)
    return front


def front_ranks(points: Sequence[Sequence[float]], directions: Sequence[str]) -> list[int]:
    """Non-dominated sorting: the front index (0 = Pareto front) of every point."""
    remaining = list(range(len(points)))
    ranks = [0] * len(points)
    level = 0
    while remaining:
        front = pareto_indices([points[i] for i in remaining], directions)
        if not front:  # non-finite leftovers
            for i in remaining:
                ranks[i] = level
            break
        chosen = {remaining[i] for i in front}
        for i in chosen:
            ranks[i] = level
        remaining = [i for i in remaining if i not in chosen]
        level += 1
    return ranks
