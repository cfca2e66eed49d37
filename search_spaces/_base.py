"""The abstract search space: every space of wsnas implements this contract."""

from __future__ import annotations

import abc
from collections.abc import Iterator, Mapping
from typing import TYPE_CHECKING, Any

import numpy as np

from wsnas._arch import Arch, Arity
from wsnas._errors import InvalidArchitecture

if TYPE_CHECKING:  # heavy imports stay out of module import time
    import optuna
    import torch.nn as nn

__all__ = ["SearchSpace"]


class SearchSpace(abc.ABC):
    """A set of architectures, how to sample and propose them, and how to build them into networks.

    Implementations set :attr:`name` and :attr:`description`, their vocabulary (:attr:`node_ops`,
    :attr:`edge_ops`) and implement the abstract methods. The rules every implementation keeps:

    * :meth:`sample` and :meth:`suggest` return only valid architectures, and :meth:`sample` depends on
      nothing but the generator it is given (the same seed gives the same architecture);
    * ``from_string(to_string(a)) == a`` and ``from_json(a.to_json()) == a`` for every architecture;
    * :meth:`from_string` and :meth:`from_json` raise :class:`InvalidArchitecture` and nothing else on
      bad input;
    * :meth:`build` returns a fresh ``nn.Module`` mapping a batch ``[B, in_channels, H, W]`` to logits
      ``[B, num_classes]``; size keywords (widths, depths) change the network, never the architecture;
    * :meth:`neighbours` returns valid architectures that differ from the argument by one choice.

    :class:`wsnas.testing.SearchSpaceTestCase` checks these rules; run it against every new space.
    """

    #: registry name (``wsnas spaces``, ``Arch.space``)
    name: str
    #: one line for ``wsnas spaces``
    description: str
    #: allowed node ops and their in-degrees (``input``/``output`` are implied); ``None``: unchecked
    node_ops: Mapping[str, Arity] | None = None
    #: allowed edge ops; ``None``: unchecked
    edge_ops: frozenset[str] | None = None
    #: the input a built network expects by default, without the batch dimension
    input_shape: tuple[int, int, int] = (3, 32, 32)
    #: size keywords of a small, cheap network of this space: used to encode candidates as parameter
    #: graphs (the "encoding width") and in tests
    proxy_size: Mapping[str, Any] = {}

    # -- required -----------------------------------------------------------------------------------
    @abc.abstractmethod
    def sample(self, rng: np.random.Generator) -> Arch:
        """Draw one architecture (uniformly over the space's choices) from ``rng``."""

    @abc.abstractmethod
    def suggest(self, trial: optuna.Trial) -> Arch:
        """Propose an architecture through Optuna's ``trial.suggest_*`` calls (stable param names)."""

    @abc.abstractmethod
    def build(self, arch: Arch, **size: Any) -> nn.Module:
        """Build ``arch`` into a fresh network; keywords set its size (documented per space)."""

    @abc.abstractmethod
    def to_string(self, arch: Arch) -> str:
        """The space's own string form of ``arch``."""

    @abc.abstractmethod
    def from_string(self, text: str) -> Arch:
        """Parse the space's string form; raises :class:`InvalidArchitecture` on anything malformed."""

    @abc.abstractmethod
    def neighbours(self, arch: Arch) -> list[Arch]:
        """Architectures one choice away from ``arch``, without duplicates and without ``arch``."""

    # -- optional -----------------------------------------------------------------------------------
    @property
    def size(self) -> int | None:
        """Number of distinct architectures, or ``None`` when the space is unbounded or not counted."""
        return None

    def enumerate(self) -> Iterator[Arch]:
        """Every architecture of a finite space, in a fixed order."""
        raise NotImplementedError(f"search space {self.name!r} cannot be enumerated")

    def make_arch(self, graph: Any, attrs: Mapping[str, Any] | None = None) -> Arch:
        """Wrap a graph as an architecture of this space, checking the space's vocabulary."""
        return Arch(graph, self.name, node_ops=self.node_ops, edge_ops=self.edge_ops, attrs=attrs)

    def validate(self, arch: Arch) -> Arch:
        """Check that ``arch`` belongs to this space; returns it unchanged.

        Raises:
            InvalidArchitecture: the architecture is of another space or breaks this space's rules.
        """
        if not isinstance(arch, Arch):
            raise InvalidArchitecture(f"expected an Arch of space {self.name!r}, got {type(arch).__name__}")
        if arch.space != self.name:
            raise InvalidArchitecture(f"expected an architecture of space {self.name!r}, got one of {arch.space!r}")
        return self.from_string(self.to_string(arch))

    def from_json(self, doc: str | Mapping[str, Any]) -> Arch:
        """Parse :meth:`Arch.to_json` output and check that it belongs to this space."""
        arch = Arch.from_json(doc, node_ops=self.node_ops, edge_ops=self.edge_ops)
        return self.validate(arch)

    def build_for_encoding(self, arch: Arch, **size: Any) -> nn.Module:
        """A network with the structure of ``build(arch, **size)``, for reading shapes and tracing only.

        The encoder reads a network's parameter shapes (:func:`wsnas.weight_spec`) and its dataflow
        (:func:`wsnas.graph_template`), never its values. A space may answer faster than :meth:`build`
        by reusing modules of earlier calls: the result is then valid only until the next call in the
        same thread, and its parameters hold nothing meaningful. The default is :meth:`build`.
        """
        return self.build(arch, **size)

    def build_default(self, arch: Arch) -> nn.Module:
        """``build`` at the space's documented default size."""
        return self.build(arch)

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"
