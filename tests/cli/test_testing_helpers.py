"""wsnas.testing's CLI helpers: run_cli runs the command in-process, assert_one_line_error tells a clean
one-line error from anything else."""

from __future__ import annotations

import pytest

from wsnas.testing import assert_one_line_error, run_cli


def test_run_cli_and_the_one_line_error_check() -> None:
    ok = run_cli("--help")
    assert ok.exit_code == 0 and "search" in ok.output
    bad = run_cli("search", "--space", "nb999", "--predictor", "none", "--quiet")
    assert_one_line_error(bad, "unknown search space 'nb999'")
    with pytest.raises(AssertionError):  # the right status, another message
        assert_one_line_error(bad, "some other fragment")
    with pytest.raises(AssertionError):  # not an error at all
        assert_one_line_error(ok, "search")
