"""Search spaces of wsnas, all behind the :class:`SearchSpace` base, and the registry of their names.

>>> from wsnas.search_spaces import NB201, get_space
>>> space = get_space("nb201")
>>> arch = space.from_string("|nor_conv_3x3~0|+|none~0|avg_pool_3x3~1|+|skip_connect~0|none~1|none~2|")
"""

from __future__ import annotations

from collections.abc import Callable

from wsnas._errors import UnknownSearchSpace

from ._base import SearchSpace
from ._graph import GRAPH_OPS, GraphSpace, example_graph_space
from ._macro import MACRO_WIDTHS, MacroCNN
from ._nb101 import NB101, NB101_OPS
from ._nb201 import NB201, NB201_OPS

__all__ = [
    "SearchSpace",
    "NB201",
    "NB201_OPS",
    "NB101",
    "NB101_OPS",
    "MacroCNN",
    "MACRO_WIDTHS",
    "GraphSpace",
    "GRAPH_OPS",
    "example_graph_space", "get_space", "register_space", "space_names"]

_REGISTRY: dict[str, Callable[[], SearchSpace]] = {
    NB201.name: NB201,
    NB101.name: NB101,
    MacroCNN.name: MacroCNN,
    "graph": example_graph_space,
}


def register_space(name: str, factory: Callable[[], SearchSpace]) -> None:
    """Make ``get_space(name)`` return ``factory()`` (a class with a no-argument constructor will do)."""
    if not name or not name.replace("_", "").replace("-", "").isalnum():
        raise ValueError(f"a space name must be letters, digits, '-' or '_', got {name!r}")
    _REGISTRY[name] = factory


def space_names() -> list[str]:
    """Names of the registered spaces, in registration order."""
    return list(_REGISTRY)


def get_space(name: str) -> SearchSpace:
    """The registered search space called ``name`` (case-insensitive).

    Raises:
        UnknownSearchSpace: no space has that name; the message lists the known ones.
    """
    key = str(name).lower()
    if key not in _REGISTRY:
        raise UnknownSearchSpace(f"unknown search space {name!r}; known spaces: {', '.join(_REGISTRY)}")
    return _REGISTRY[key]()
