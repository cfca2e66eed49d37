"""The shuffled-weights ablation: the weight encoder on weights permuted within each tensor.

Structure and per-tensor weight statistics stay; only the arrangement of the weights is destroyed. If the
encoder does as well on shuffled weights, it reads the architecture, not the weights.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from wsnas._arch import Arch
from wsnas.encoding import CandidateGraphs, kernel_runs
from wsnas.predictors._baselines import _check_seed
from wsnas.predictors._predictor import WeightPredictor

if TYPE_CHECKING:
    from wsnas.encoding import ParamGraph
    from wsnas.search_spaces import SearchSpace

__all__ = ["ShuffledCandidateGraphs", "ShuffledWeightPredictor"]


class ShuffledCandidateGraphs(CandidateGraphs):
    """:class:`~wsnas.CandidateGraphs` whose generated weights are permuted within each tensor before the
    graphs are built: candidate ``b`` uses the permutations drawn from ``[shuffle_seed, seeds[b], hash]``,
    so the same (arch, seed) always gets the same shuffle, and structure and weight statistics per tensor
    are kept while the arrangement of the weights is destroyed."""

    def __init__(self, space: SearchSpace, *, shuffle_seed: int = 0, **options: Any) -> None:
        super().__init__(space, **options)
        self.shuffle_seed = _check_seed(shuffle_seed)

    def _graphs(self, archs: Sequence[Arch], seed_list: list[int], device: torch.device | str | None) -> ParamGraph:
        """As :meth:`CandidateGraphs.graphs` (which checks the arguments and calls this), with each
        tensor's weights shuffled."""
        from wsnas.encoding import batch_graphs, build_batch, generate

        arch_list = list(archs)
        entries = [self._entry(a) for a in arch_list]
        weights = generate([spec for spec, _ in entries], seed_list, device=device)
        flat = weights.flat.detach().clone().cpu()
        for b, ((spec, _), arch) in enumerate(zip(entries, arch_list)):
            base = weights._starts[b]
            rng = np.random.default_rng([self.shuffle_seed, int(seed_list[b]), int(arch.hash[:15], 16)])
            for lo, hi in zip(spec.offsets[:-1], spec.offsets[1:]):
                if hi - lo > 1:
                    flat[base + lo : base + hi] = flat[base + lo : base + hi][torch.as_tensor(rng.permutation(hi - lo))]
        templates = [t for _, t in entries]
        runs = kernel_runs(templates)
        if len(runs) == 1:
            return build_batch(templates, flat)
        starts = weights._starts
        return batch_graphs([build_batch(templates[a:b], flat[starts[a] : starts[b]]) for a, b in runs])


class ShuffledWeightPredictor(WeightPredictor):
    """The :class:`WeightPredictor` on shuffled weights (:class:`ShuffledCandidateGraphs`), trained and
    scored exactly like the real one: the shuffled-weights ablation. Same arguments."""

    def __init__(self, space: SearchSpace, *, size: dict[str, Any] | None = None, init: str = "kaiming_normal",
                 **options: Any) -> None:  # fmt: skip
        super().__init__(space, size=size, init=init, **options)
        self.candidates = ShuffledCandidateGraphs(space, size=size, init=init, shuffle_seed=self.seed)

    def __repr__(self) -> str:
        return "Shuffled" + super().__repr__()
