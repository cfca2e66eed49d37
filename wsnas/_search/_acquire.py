"""The predictor as a prior that real results overrule: a Gaussian process with the predictor's score as its mean.

The model of a measured accuracy (z-scored over the results so far) is ``y = a + b p(x) + f(x) + noise``:
``p`` is the predictor's score z-scored over the candidates, ``b ~ N(b0, s_b)`` its learned weight (``b0 = 1``:
before any result the prior's ranking is trusted), ``a ~ N(0, s_a)`` an offset, and ``f`` a residual with the
kernel ``s_f exp(-d(x, x') / (2 ell))`` over the edit distance ``d`` between architectures (:func:`arch_tokens`).
Each decision picks ``(s_f, s_n, ell)`` from a small grid by marginal likelihood and ranks the candidates by
UCB ``mu + beta sd``. Every real result moves ``b`` (down when the prior ranks the results badly) and teaches
``f`` along edit distance, so the search climbs towards the neighbours of good measured architectures even
where the prior disagrees. Pure numpy, deterministic.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from wsnas._arch import Arch

__all__ = ["arch_tokens", "TokenIndex", "gp_ucb", "K0", "BETA"]

K0 = 3  #: first picks: the prior's top ``K0``
BETA = 1.0  #: the UCB weight of the posterior sd
_GRID = tuple(itertools.product((0.25, 1.0), (0.05, 0.3), (0.5, 1.0, 2.0)))  # (s_f, s_n, ell)
_S_A, _S_B, _B0 = 1.0, 1.0, 1.0


def arch_tokens(arch: Arch) -> frozenset[str]:
    """The architecture as a set of tokens: ``node:attr=value`` for every node attribute, ``src->dst:attr=value``
    for every edge (a plain wire: ``src->dst``) and ``graph:attr=value``; half the size of the symmetric
    difference of two token sets is their edit distance (one changed op: 1)."""
    g = arch.graph
    out = {f"{n}:{k}={v!r}" for n, data in g.nodes(data=True) for k, v in data.items()}
    for u, v, data in g.edges(data=True):
        out.add(f"{u}->{v}")
        out.update(f"{u}->{v}:{k}={val!r}" for k, val in data.items())
    out.update(f"graph:{k}={v!r}" for k, v in g.graph.items())
    return frozenset(out)


class TokenIndex:
    """Token sets of architectures (cached by hash) as rows of a 0/1 matrix, for pairwise edit distances."""

    def __init__(self) -> None:
        self.vocab: dict[str, int] = {}
        self.rows: dict[str, np.ndarray] = {}

    def add(self, arch: Arch) -> None:
        if arch.hash not in self.rows:
            ids = [self.vocab.setdefault(t, len(self.vocab)) for t in sorted(arch_tokens(arch))]
            self.rows[arch.hash] = np.asarray(ids, dtype=np.int64)

    def matrix(self, hashes: Sequence[str]) -> np.ndarray:
        """``[len(hashes), vocab]`` float32 0/1 rows (every hash must have been added)."""
        out = np.zeros((len(hashes), len(self.vocab)), dtype=np.float32)
        for i, h in enumerate(hashes):
            out[i, self.rows[h]] = 1.0
        return out


def distances(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Edit distances ``[len(a), len(b)]`` between 0/1 token rows (half the symmetric difference)."""
    inter = a @ b.T
    return 0.5 * (a.sum(1)[:, None] + b.sum(1)[None, :] - 2.0 * inter)


def gp_ucb(
    prior_c: np.ndarray, tokens_c: np.ndarray, prior_o: np.ndarray, tokens_o: np.ndarray, y: np.ndarray,
    *, beta: float = BETA, use_prior: bool = True,
) -> np.ndarray:  # fmt: skip
    """UCB ``mu + beta sd`` of each candidate (``prior_c [m]``, ``tokens_c [m, V]``) given the results ``y [n]``
    of the observed architectures (``prior_o [n]``, ``tokens_o [n, V]``). ``use_prior=False``: no prior mean."""
    b0, s_b = (_B0, _S_B) if use_prior else (0.0, 0.0)
    if not use_prior:
        prior_c, prior_o = np.zeros_like(prior_c), np.zeros_like(prior_o)
    y = np.asarray(y, dtype=np.float64)
    sd = float(y.std())
    y = (y - y.mean()) / (sd if sd > 0 else 1.0)
    r = y - b0 * prior_o
    d_oo = distances(tokens_o, tokens_o).astype(np.float64)
    base = _S_A + s_b * np.outer(prior_o, prior_o)
    best: tuple[float, tuple[float, float, float], np.ndarray] | None = None
    for s_f, s_n, ell in _GRID:
        k = base + s_f * np.exp(-d_oo / (2 * ell)) + s_n * np.eye(len(y))
        try:
            chol = np.linalg.cholesky(k)
        except np.linalg.LinAlgError:
            continue
        alpha = np.linalg.solve(chol.T, np.linalg.solve(chol, r))
        ll = -0.5 * float(r @ alpha) - float(np.log(np.diag(chol)).sum())
        if best is None or ll > best[0]:
            best = (ll, (s_f, s_n, ell), chol)
    if best is None:  # every K singular: the prior alone
        return b0 * prior_c
    _, (s_f, _, ell), chol = best
    alpha = np.linalg.solve(chol.T, np.linalg.solve(chol, r))
    k_co = _S_A + s_b * np.outer(prior_c, prior_o) + s_f * np.exp(-distances(tokens_c, tokens_o) / (2 * ell))
    mu = b0 * prior_c + k_co @ alpha
    v = np.linalg.solve(chol, k_co.T)
    var = _S_A + s_b * prior_c**2 + s_f - (v * v).sum(0)
    return mu + beta * np.sqrt(np.maximum(var, 0.0))
