"""Search spaces of wsnas, all behind the :class:`SearchSpace` base, and the registry of their names.

>>> from wsnas.search_spaces import NB201, get_space
>>> space = get_space("nb201")
>>> arch = space.from_string("|nor_conv_3x3~0|+|none~0|avg_pool_3x3~1|+|skip_connect~0|none~1|none~2|")

A space of your own is found by name once registered (:func:`register_space`, in this process), or in any
process by a plug-in path ``package.module:attr`` (``get_space("mylab.spaces:Mine")``, ``wsnas search --space
mylab.spaces:Mine``): the module is imported (it must be importable: installed, or its folder on
``PYTHONPATH``) and ``attr`` is a :class:`SearchSpace` or a zero-argument factory of one (its class).
A search stores the path in its study, so every worker loads the same space.
"""

from __future__ import annotations

import importlib
import re
from collections.abc import Callable
from typing import Any

from wsnas._errors import UnknownSearchSpace, WsnasError

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
    "example_graph_space",
    "get_space",
    "register_space",
    "space_names",
    "load_plugin",
    "is_plugin_path",
]

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
    """The registered search space called ``name`` (case-insensitive), or the space of the plug-in path
    ``package.module:attr`` (a :class:`SearchSpace` instance, or a zero-argument factory or class of one).

    Raises:
        UnknownSearchSpace: no space has that name (the message lists the known ones), or the plug-in
            cannot be loaded: its module is not found or fails to import, it lacks the attribute, or the
            attribute is no space (each said on one line).
    """
    if ":" in str(name):
        return _space_plugin(str(name))
    key = str(name).lower()
    if key not in _REGISTRY:
        raise UnknownSearchSpace(f"unknown search space {name!r}; known spaces: {', '.join(_REGISTRY)}")
    return _REGISTRY[key]()


# -- plug-ins: ``package.module:attr`` ------------------------------------------------------------------
_PLUGIN = re.compile(r"[A-Za-z_]\w*(\.[A-Za-z_]\w*)*:[A-Za-z_]\w*(\.[A-Za-z_]\w*)*")


def is_plugin_path(text: str) -> bool:
    """Whether ``text`` has the form ``package.module:attr`` (dotted names on both sides of one colon)."""
    return bool(_PLUGIN.fullmatch(str(text)))


def load_plugin(path: str, what: str, error: type[WsnasError] = UnknownSearchSpace) -> Any:
    """The object that the plug-in path ``package.module:attr`` names: ``import package.module``, then
    its attribute ``attr`` (dots walk nested attributes). Only an import of the module the user names
    runs; nothing is unpickled.

    Args:
        path: ``package.module:attr``.
        what: what the plug-in should be, for the messages (``"search space"``, ``"evaluator"``).
        error: the exception type raised.

    Raises:
        error: ``path`` is malformed, the module is not found or raises while importing, or it lacks the
            attribute (one line each, naming the path).
    """
    if not is_plugin_path(path):
        raise error(f"a {what} plug-in is 'package.module:attr' (dotted Python names), got {path!r}")
    module_name, _, attr = str(path).partition(":")
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        if exc.name is not None and (module_name == exc.name or module_name.startswith(exc.name + ".")):
            raise error(
                f"{what} plug-in {path!r}: no module named {exc.name!r} (install it, or put its folder on PYTHONPATH)"
            ) from None
        raise error(f"{what} plug-in {path!r}: importing {module_name!r} failed: {_first_line(exc)}") from None
    except Exception as exc:  # noqa: BLE001 - the user's module failed: say so on one line
        raise error(f"{what} plug-in {path!r}: importing {module_name!r} failed: {_first_line(exc)}") from None
    obj: Any = module
    for part in attr.split("."):
        if not hasattr(obj, part):
            raise error(f"{what} plug-in {path!r}: module {module_name!r} has no attribute {attr!r}")
        obj = getattr(obj, part)
    return obj


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return f"{type(exc).__name__}: {text.splitlines()[0]}" if text else type(exc).__name__


def _space_plugin(path: str) -> SearchSpace:
    obj = load_plugin(path, "search space")
    if isinstance(obj, SearchSpace):
        return obj
    if not callable(obj):
        raise UnknownSearchSpace(
            f"search space plug-in {path!r} is a {type(obj).__name__}, not a SearchSpace or a zero-argument "
            "factory (or class) of one"
        )
    try:
        space = obj()
    except Exception as exc:  # noqa: BLE001 - the user's factory failed: say so on one line
        raise UnknownSearchSpace(f"search space plug-in {path!r}: calling it failed: {_first_line(exc)}") from None
    if not isinstance(space, SearchSpace):
        raise UnknownSearchSpace(f"search space plug-in {path!r} returned a {type(space).__name__}, not a SearchSpace")
    return space
