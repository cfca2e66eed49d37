"""What every ``wsnas`` command module shares: the one-line error and the ``--size KEY=VALUE`` parser.

Kept apart from :mod:`wsnas._cli` so that the command modules it attaches can import it without a cycle.
Only click and the standard library load here: ``wsnas --help`` must not import torch.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

import click

__all__ = ["CliError", "ErrorLineGroup", "one_line_errors", "parse_size"]


class CliError(click.ClickException):
    """A bad-input error: printed as one ``error: ...`` line on stderr, exit status 2."""

    exit_code = 2

    def show(self, file: Any = None) -> None:
        click.echo(f"error: {self.format_message()}", err=True)


@contextlib.contextmanager
def one_line_errors() -> Iterator[None]:
    """Turn wsnas's own errors (:class:`wsnas.WsnasError`) raised inside into a :class:`CliError`."""
    from wsnas._errors import WsnasError

    try:
        yield
    except WsnasError as exc:
        raise CliError(str(exc)) from None


class ErrorLineGroup(click.Group):
    """A click group whose commands report wsnas's own errors as one line and exit status 2."""

    def invoke(self, ctx: click.Context) -> Any:
        with one_line_errors():
            return super().invoke(ctx)


def parse_size(items: tuple[str, ...]) -> dict[str, Any]:
    """``("C=16", "N=5")`` -> ``{"C": 16, "N": 5}``: ints, then floats, else the string."""
    size: dict[str, Any] = {}
    for item in items:
        key, sep, raw = item.partition("=")
        if not sep or not key.isidentifier():
            raise CliError(f"--size expects KEY=VALUE (e.g. C=16), got {item!r}")
        for cast in (int, float):
            try:
                size[key] = cast(raw)
                break
            except ValueError:
                continue
        else:
            size[key] = raw
    return size
