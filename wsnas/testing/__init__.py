"""Test suites that ship with wsnas, for its own spaces and for yours.

Subclass :class:`SearchSpaceTestCase` in a pytest file and set ``space`` to run every rule of the
:class:`~wsnas.search_spaces.SearchSpace` contract against a space::

    class TestMySpace(SearchSpaceTestCase):
        space = MySpace()
        build_kwargs = {"width": 8}
"""

from wsnas.testing._search_space import SearchSpaceTestCase

__all__ = ["SearchSpaceTestCase"]
