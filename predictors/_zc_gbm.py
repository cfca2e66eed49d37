"""The strongest classic baseline: gradient boosting over every zero-cost proxy and the architecture's tokens.

NASLib's zero-cost study (White et al., 2021, "How powerful are performance predictors in neural architecture
search?") found that a boosted-tree model fed every zero-cost proxy plus the architecture encoding beats
each proxy and most trained predictors at small label budgets. Here the proxies are those of
:data:`~wsnas.predictors.ZERO_COST_PROXIES`, computed once per architecture on the network built at ``size``
with generated weights (:class:`ZeroCostScores`), and the architecture encoding is space-generic: one
indicator per ``node:op`` and ``src->dst:op`` token seen at fit time (for a cell space such as NB201 that is
the usual one-hot of each edge's op).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from wsnas._arch import Arch
from wsnas.predictors._baselines import ZeroCostBaseline, _archs
from wsnas.predictors._training import as_targets
from wsnas.predictors._zero_cost import ZERO_COST_PROXIES

if TYPE_CHECKING:
    from wsnas.search_spaces import SearchSpace
    from wsnas.training import Task

__all__ = ["ZeroCostScores", "ZeroCostGBMBaseline", "arch_tokens"]


def arch_tokens(arch: Arch) -> set[str]:
    """The architecture as tokens: ``"node:op"`` for every node, ``"src->dst:op"`` for every edge."""
    g = arch.graph
    out = {f"{u}:{d.get('op')}" for u, d in g.nodes(data=True)}
    out.update(f"{u}->{v}:{d.get('op', '')}" for u, v, d in g.edges(data=True))
    return out


class ZeroCostScores:
    """Every zero-cost proxy of each architecture, computed once and memoised by architecture hash.

    One network per architecture is built at ``size`` for the task's classes and channels, given weights
    generated from ``seed``, and scored by each proxy on one fixed batch of ``batch_size`` training images
    drawn with ``seed`` (the setting of :class:`~wsnas.predictors.ZeroCostBaseline`, which gives the same
    value for one proxy). A non-finite proxy value becomes ``-inf`` (a broken network ranks last).
    """

    def __init__(
        self,
        space: SearchSpace,
        *,
        task: Task | None = None,
        batch_size: int = 64,
        size: dict[str, Any] | None = None,
        seed: int = 0,
        init: str = "kaiming_normal",
    ) -> None:
        # one proxy object holds the batch, the size and the build settings; it checks the arguments
        self._proxy = ZeroCostBaseline(space, "params", task=task, batch_size=batch_size, size=size, seed=seed,
                                       init=init)  # fmt: skip
        self.space, self.names = space, tuple(ZERO_COST_PROXIES)
        self._memo: dict[str, np.ndarray] = {}

    def matrix(self, archs: Sequence[Arch | str]) -> np.ndarray:
        """``[n, len(ZERO_COST_PROXIES)]`` float64, columns in the order of :data:`ZERO_COST_PROXIES`."""
        rows = []
        for arch in _archs(self.space, archs):
            hit = self._memo.get(arch.hash)
            if hit is None:
                net = self._proxy.network(arch)
                hit = np.asarray([self._proxy.value(net, name) for name in self.names], dtype=np.float64)
                self._memo[arch.hash] = hit
            rows.append(hit)
        return np.stack(rows) if rows else np.zeros((0, len(self.names)))

    def column(self, name: str, archs: Sequence[Arch | str]) -> np.ndarray:
        """``[n]`` the values of one proxy."""
        return self.matrix(archs)[:, self.names.index(name)]


class ZeroCostGBMBaseline:
    """``sklearn.ensemble.GradientBoostingRegressor`` over every zero-cost proxy and the architecture tokens.

    Args:
        space: the search space.
        scores: the proxies' memo (shared with other baselines of one evaluation); ``None``: a new one
            from ``zero_cost_options``.
        tokens: add the architecture's token indicators (:func:`arch_tokens`, vocabulary of the fit set).
        seed: the regressor's ``random_state`` (and the proxies' seed when ``scores`` is ``None``).
        gbm_options: more keywords for the regressor.
    """

    trainable = True

    def __init__(
        self,
        space: SearchSpace,
        *,
        scores: ZeroCostScores | None = None,
        tokens: bool = True,
        seed: int = 0,
        zero_cost_options: dict[str, Any] | None = None,
        **gbm_options: Any,
    ) -> None:
        self.space, self.seed, self.tokens = space, seed, tokens
        self.scores = scores if scores is not None else ZeroCostScores(space, seed=seed, **(zero_cost_options or {}))
        self.gbm_options = gbm_options
        self.vocab: dict[str, int] = {}
        self.model: Any = None

    def __repr__(self) -> str:
        return f"ZeroCostGBMBaseline({self.space.name!r}, tokens={self.tokens}, seed={self.seed})"

    def features(self, archs: Sequence[Arch | str]) -> np.ndarray:
        """``[n, P + V]``: the proxies (``-inf`` clipped to a large negative number), then token indicators."""
        return self._features(_archs(self.space, archs))

    def _features(self, arch_list: list[Arch]) -> np.ndarray:
        """:meth:`features` of architectures already validated (fit validates once, not twice)."""
        zc = np.nan_to_num(self.scores.matrix(arch_list), neginf=-1e30, posinf=1e30)
        if not self.tokens:
            return zc
        onehot = np.zeros((len(arch_list), len(self.vocab)))
        for r, a in enumerate(arch_list):
            for t in arch_tokens(a):
                j = self.vocab.get(t)
                if j is not None:
                    onehot[r, j] = 1.0
        return np.hstack([zc, onehot])

    def fit(self, archs: Sequence[Arch | str], targets: Sequence[float] | np.ndarray) -> ZeroCostGBMBaseline:
        """Fit on ``archs`` and ``targets [n]`` (the token vocabulary is that of ``archs``)."""
        from sklearn.ensemble import GradientBoostingRegressor

        arch_list = _archs(self.space, archs)
        y = as_targets(targets, len(arch_list))
        if len(arch_list) < 2:
            raise ValueError(f"ZeroCostGBMBaseline.fit needs at least 2 architectures, got {len(arch_list)}")
        self.vocab = {t: i for i, t in enumerate(sorted({t for a in arch_list for t in arch_tokens(a)}))}
        self.model = GradientBoostingRegressor(random_state=self.seed, **self.gbm_options)
        self.model.fit(self._features(arch_list), y)
        return self

    def predict(self, archs: Sequence[Arch | str]) -> np.ndarray:
        """``[n]`` predicted targets (float64)."""
        if self.model is None:
            raise RuntimeError("ZeroCostGBMBaseline.predict needs a fitted baseline: call fit() first")
        if len(archs) == 0:
            return np.zeros(0)
        return np.asarray(self.model.predict(self.features(archs)), dtype=np.float64)
