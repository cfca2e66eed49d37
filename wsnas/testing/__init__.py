"""Test suites that ship with wsnas, for its own spaces and for yours.

Subclass :class:`SearchSpaceTestCase` in a pytest file and set ``space`` to run every rule of the
:class:`~wsnas.search_spaces.SearchSpace` contract against a space::

    class TestMySpace(SearchSpaceTestCase):
        space = MySpace()
        build_kwargs = {"width": 8}

:func:`run_cli` runs the ``wsnas`` command in-process and :func:`assert_one_line_error` checks its answer to
bad input (exit status 2, one ``error:`` line)::

    assert_one_line_error(run_cli("search", "--space", "mylab:MySpace", "--eval-budget", "0"), "--eval-budget")
"""

from wsnas.testing._cli import assert_one_line_error, run_cli
from wsnas.testing._search_space import SearchSpaceTestCase

__all__ = ["SearchSpaceTestCase", "run_cli", "assert_one_line_error"]
