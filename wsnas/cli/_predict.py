"""The ``wsnas predict`` command: score architecture strings with a predictor, write a CSV.

Attached to the main command with ``main.add_command(predict_cmd)``. torch loads inside the command only;
bad input (an unknown space, an unreadable file, a malformed architecture line, a bad predictor file)
prints one ``error: ...`` line on stderr and exits with status 2 (see :mod:`wsnas.cli`).
"""

from __future__ import annotations

import csv
import io
import os
import sys
import warnings
from pathlib import Path

import click

from wsnas._atomic import atomic_write_text
from wsnas.cli._common import CliError, one_line_errors, quiet_option

__all__ = ["predict_cmd"]


#: inputs this long are scored by one process per core by default: a worker takes 3-4 s to start (import
#: torch, load the predictor), about what one process needs for 500 NB201 architectures
_PARALLEL_FROM = 2000


def _cpu_cores() -> int:
    """CPU cores this process may run on."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not on Linux
        return max(1, os.cpu_count() or 1)


def _read_lines(source: str) -> list[tuple[int, str]]:
    """``(line number, text)`` of every non-blank, non-``#`` line of ``source`` (``-``: stdin)."""
    if source == "-":
        text = sys.stdin.read()
    else:
        try:
            text = Path(source).read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
            raise CliError(f"cannot read input file {source!r}: {reason}") from None
    rows = [(n, line.strip()) for n, line in enumerate(text.splitlines(), start=1)]
    return [(n, line) for n, line in rows if line and not line.startswith("#")]


def _write(target: str, text: str) -> None:
    """Write ``text`` to stdout (``-``) or atomically to the file ``target``."""
    if target == "-":
        click.echo(text, nl=False)
        return
    try:
        atomic_write_text(target, text)
    except OSError as exc:
        raise CliError(f"cannot write output file {target!r}: {exc.strerror or exc}") from None


@click.command("predict")
@click.option("--space", "space_name", required=True,
              help="Search space of the architectures (a name, or a plug-in package.module:attr).")  # fmt: skip
@click.option(
    "--predictor",
    "predictor_path",
    default=None,
    help="Predictor file (default: the shipped predictor of SPACE, else the multi-space one transferred to it).",
)
@click.option("--input", "source", required=True, metavar="FILE", help="One architecture string per line; - = stdin.")
@click.option("--output", "target", required=True, metavar="CSV", help="Output CSV; - = stdout.")
@click.option("--batch-size", type=int, default=64, show_default=True, help="Architectures scored per batch.")
@click.option(
    "--workers", type=int, default=None, help="Worker processes (default: one per CPU core for large inputs)."
)
@quiet_option
def predict_cmd(
    space_name: str,
    predictor_path: str | None,
    source: str,
    target: str,
    batch_size: int,
    workers: int | None,
    quiet: bool,
) -> None:
    """Score architectures: writes "arch,score,uncertainty" rows (with a header) in input order.

    Blank lines and lines starting with "#" are skipped. Inputs of 2,000 architectures or more are scored
    by one single-threaded process per CPU core unless --workers says otherwise; the scores are the same.
    """
    with one_line_errors():
        from wsnas.search_spaces import get_space

        space = get_space(space_name)
        if batch_size < 1:
            raise CliError(f"--batch-size must be >= 1, got {batch_size}")
        if workers is not None and workers < 1:
            raise CliError(f"--workers must be >= 1, got {workers}")
        lines = _read_lines(source)
        archs = []
        where = "stdin" if source == "-" else repr(source)
        from wsnas._errors import InvalidArchitecture

        for lineno, text in lines:
            try:
                archs.append(space.from_string(text))
            except InvalidArchitecture as exc:
                raise CliError(f"{where} line {lineno}: not an architecture of {space.name!r}: {exc}") from None
        from wsnas.predictors import default_predictor, load

        plugin = space if ":" in space_name else None  # a plug-in space: the predictor's card cannot name it
        if predictor_path is None:
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always")
                pred = default_predictor(space)
            for w in caught:
                click.echo(f"warning: {w.message}", err=True)
        else:
            pred = load(predictor_path, space=plugin)
        if pred.space.name != space.name:
            raise CliError(f"predictor {predictor_path!r} was trained on space {pred.space.name!r}, not {space.name!r}")
        buf = io.StringIO()
        writer = csv.writer(buf, lineterminator="\n")
        writer.writerow(["arch", "score", "uncertainty"])
        if archs:
            if workers is None:
                workers = _cpu_cores() if len(archs) >= _PARALLEL_FROM else 1
            out = pred.predict(archs, batch_size=batch_size, workers=workers, progress=not quiet)
            for (_, text), s, u in zip(lines, out.score, out.uncertainty):
                writer.writerow([text, f"{s:.8g}", f"{u:.8g}"])
        _write(target, buf.getvalue())
    if target != "-":
        click.echo(f"scored {len(archs)} architectures -> {target}", err=True)

