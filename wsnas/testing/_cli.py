"""Running the ``wsnas`` command in-process, for tests of the CLI and of plug-ins used through it."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from click.testing import Result

__all__ = ["run_cli", "assert_one_line_error"]


def run_cli(*args: str) -> Result:
    """``wsnas ARGS...`` run in this process (click's ``CliRunner``): its exit code and output, no exception
    escapes (an unexpected one is ``result.exception``)."""
    from click.testing import CliRunner

    from wsnas.cli import main

    return CliRunner().invoke(main, list(args))


def assert_one_line_error(result: Result, fragment: str) -> None:
    """Assert that ``result`` is the CLI's answer to bad input: exit status 2 and one non-blank line of
    output, starting ``error: `` and containing ``fragment`` (no traceback, nothing else)."""
    assert result.exit_code == 2, result.output
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: ") and fragment in lines[0], result.output
