"""The shared test suite every search space must pass."""

from __future__ import annotations

import random
import string
from typing import Any, ClassVar

import networkx as nx
import numpy as np

from wsnas._arch import Arch
from wsnas._errors import InvalidArchitecture
from wsnas.search_spaces import SearchSpace

__all__ = ["SearchSpaceTestCase"]


class SearchSpaceTestCase:
    """Pytest test class for one search space. Subclasses set :attr:`space`, optionally the rest."""

    #: the space under test
    space: ClassVar[SearchSpace]
    #: size keywords for :meth:`SearchSpace.build` (small, so the suite stays fast); ``None``: the
    #: space's ``proxy_size``
    build_kwargs: ClassVar[dict[str, Any] | None] = None
    #: input resolution for forward passes
    forward_shape: ClassVar[tuple[int, int, int]] = (3, 16, 16)
    n_roundtrip: ClassVar[int] = 1000
    n_build: ClassVar[int] = 30

    # -- helpers ------------------------------------------------------------------------------------
    def _samples(self, n: int, seed: int = 0) -> list[Arch]:
        rng = np.random.default_rng(seed)
        return [self.space.sample(rng) for _ in range(n)]

    # -- sampling -----------------------------------------------------------------------------------
    def test_samples_are_valid_and_seeded(self) -> None:
        archs = self._samples(200)
        for arch in archs:
            assert arch.space == self.space.name
            assert self.space.validate(arch) == arch
        assert [a.hash for a in self._samples(50)] == [a.hash for a in archs[:50]]
        assert len({a.hash for a in archs}) > 1, "sampling must not return one architecture only"

    def test_hash_invariant_under_node_relabelling(self) -> None:
        rng = random.Random(0)
        for arch in self._samples(100, seed=1):
            nodes = list(arch.graph.nodes)
            names = [f"n{rng.random():.12f}" for _ in nodes]
            rng.shuffle(names)
            relabelled = nx.relabel_nodes(nx.DiGraph(arch.graph), dict(zip(nodes, names)))
            other = Arch(relabelled, arch.space, attrs=arch.attrs)
            assert other.hash == arch.hash
            assert other == arch

    def test_neighbours_differ_and_are_valid(self) -> None:
        for arch in self._samples(10, seed=2):
            neigh = self.space.neighbours(arch)
            assert neigh, "every architecture has at least one neighbour"
            hashes = [n.hash for n in neigh]
            assert arch.hash not in hashes
            assert len(set(hashes)) == len(hashes)
            for n in neigh[:20]:
                assert self.space.validate(n) == n

    # -- round trips --------------------------------------------------------------------------------
    def test_string_round_trip(self) -> None:
        for arch in self._samples(self.n_roundtrip, seed=3):
            text = self.space.to_string(arch)
            back = self.space.from_string(text)
            assert back == arch and back.hash == arch.hash
            assert self.space.to_string(back) == text

    def test_json_round_trip(self) -> None:
        for arch in self._samples(self.n_roundtrip, seed=4):
            back = self.space.from_json(arch.to_json())
            assert back == arch and back.hash == arch.hash
            assert Arch.from_json(arch.to_json()).hash == arch.hash

    def test_other_space_rejected(self) -> None:
        arch = self._samples(1)[0]
        foreign = Arch(nx.DiGraph(arch.graph), "some-other-space", attrs=arch.attrs)
        try:
            self.space.validate(foreign)
        except InvalidArchitecture as exc:
            assert "some-other-space" in str(exc)
        else:
            raise AssertionError("an architecture of another space must be rejected")

    # -- Optuna -------------------------------------------------------------------------------------
    def test_suggest_in_real_optuna_study(self, tmp_path: Any) -> None:
        import optuna

        optuna.logging.set_verbosity(optuna.logging.WARNING)
        storage = f"sqlite:///{tmp_path / 'study.db'}"
        study = optuna.create_study(storage=storage, sampler=optuna.samplers.TPESampler(seed=0))
        seen: list[Arch] = []

        def objective(trial: optuna.Trial) -> float:
            arch = self.space.suggest(trial)
            assert self.space.validate(arch) == arch
            seen.append(arch)
            return float(len(self.space.to_string(arch)))

        study.optimize(objective, n_trials=15)
        assert len(seen) == 15
        assert len(optuna.load_study(study_name=study.study_name, storage=storage).trials) == 15

    # -- networks -----------------------------------------------------------------------------------
    def test_build_and_forward(self) -> None:
        import torch

        from wsnas._netstats import count_flops, count_params

        torch.manual_seed(0)
        x = torch.randn(2, *self.forward_shape)
        for arch in self._samples(self.n_build, seed=5):
            net = self.space.build(
                arch, **(self.build_kwargs if self.build_kwargs is not None else self.space.proxy_size)
            )
            out = net(x)
            assert out.shape[0] == 2 and out.ndim == 2
            assert torch.isfinite(out).all()
            assert count_params(net) > 0
            assert count_flops(net, self.forward_shape) > 0

    def test_build_for_encoding_matches_build(self) -> None:
        """``build_for_encoding`` gives the weight spec and graph template of a fresh ``build``."""
        import torch

        from wsnas.encoding import graph_template, weight_spec

        size = dict(self.build_kwargs if self.build_kwargs is not None else self.space.proxy_size)
        shape = (1, *self.space.input_shape)
        for arch in self._samples(self.n_build, seed=6):
            want = self.space.build(arch, **size)
            got = self.space.build_for_encoding(arch, **size)
            assert weight_spec(got) == weight_spec(want)
            a, b = graph_template(got, input_shape=shape), graph_template(want, input_shape=shape)
            for name in a.__dataclass_fields__:
                x, y = getattr(a, name), getattr(b, name)
                assert (torch.equal(x, y) and x.dtype == y.dtype) if isinstance(x, torch.Tensor) else x == y, name

    # -- fuzzing ------------------------------------------------------------------------------------
    def test_fuzzed_strings_raise_only_invalid_architecture(self) -> None:
        from hypothesis import HealthCheck, given, settings
        from hypothesis import strategies as st

        valid = [self.space.to_string(a) for a in self._samples(20, seed=6)]
        alphabet = string.printable + "|~+[](){}:,;-_ \u00e9\u2603"

        def mutate(data: tuple[str, int, int, str]) -> str:
            text, i, j, insert = data
            i, j = sorted((i % (len(text) + 1), j % (len(text) + 1)))
            return text[:i] + insert + text[j:]

        mutations = st.tuples(
            st.sampled_from(valid), st.integers(0, 10_000), st.integers(0, 10_000), st.text(alphabet, max_size=8)
        ).map(mutate)

        @settings(max_examples=300, deadline=None, derandomize=True, suppress_health_check=list(HealthCheck))
        @given(st.one_of(st.text(alphabet, max_size=200), mutations))
        def check(text: str) -> None:
            try:
                arch = self.space.from_string(text)
            except InvalidArchitecture:
                return
            assert self.space.validate(arch) == arch

        check()
