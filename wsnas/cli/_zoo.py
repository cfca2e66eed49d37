"""The ``wsnas zoo`` commands: build a model zoo by really training sampled architectures, and show one.

Attached to the main command with ``main.add_command(zoo_group)``. Heavy libraries load inside the
commands; bad input prints one ``error: ...`` line and exits with status 2 (see :mod:`wsnas.cli`).
"""

from __future__ import annotations

import math
import os
from typing import Any

import click

from wsnas.cli._common import (
    CliError,
    ErrorLineGroup,
    positive_top,
    quiet_option,
    recipe_options,
    size_option,
    task_from_options,
)

__all__ = ["zoo_group"]


@click.group("zoo", cls=ErrorLineGroup)
def zoo_group() -> None:
    """Model zoos: JSON-lines files of really-trained architectures."""


@zoo_group.command("build")
@click.option("--space", "space_name", required=True, help="Search space name (see `wsnas spaces`).")
@click.option("--task", "task_name", required=True, help="Task: cifar10, digits or synthetic.")
@click.option("--data-dir", type=click.Path(file_okay=False), help="Dataset folder (cifar10: cifar-10-batches-py).")
@click.option("--n", "n", type=int, required=True, help="Number of distinct architectures to train.")
@click.option("--seed", type=int, required=True, help="Seeds the architecture sample (and training, by default).")
@click.option("--train-seed", type=int, default=None,
              help="Seeds every training run instead of --seed: the same sample again (label noise).")  # fmt: skip
@click.option("--out", type=click.Path(dir_okay=False), required=True, help="Zoo file (JSON lines), appended to.")
@click.option("--workers", type=int, default=None, help="Training processes (default: one per core).")
@recipe_options()
@size_option("Network size, e.g. -s C=8.")
@quiet_option
def build_cmd(
    space_name: str,
    task_name: str,
    data_dir: str | None,
    n: int,
    seed: int,
    train_seed: int | None,
    out: str,
    workers: int | None,
    size_items: tuple[str, ...],
    quiet: bool,
    **recipe: Any,
) -> None:
    """Train N distinct architectures of SPACE sampled with SEED on TASK, appending each to OUT.

    Rerunning the same command resumes: architectures already in OUT (same space, hash, training seed and
    task fingerprint) are skipped. --train-seed retrains the same sample under another seed.
    """
    from wsnas.search_spaces import get_space
    from wsnas.training import build_zoo

    space = get_space(space_name)
    if workers is not None and workers < 1:
        raise CliError(f"--workers must be >= 1, got {workers}")
    task = task_from_options(task_name, data_dir, size_items, recipe)
    try:
        records = build_zoo(space, task, n, seed, out, train_seed=train_seed, workers=workers, progress=not quiet)
    except (TypeError, ValueError) as exc:
        raise CliError(f"zoo build failed: {exc}") from None
    accs = [r.val_acc for r in records]
    click.echo(f"{len(records)} architectures in {out}; val acc {min(accs):.4f} .. {max(accs):.4f}")


@zoo_group.command("show")
@click.argument("path", metavar="FILE")
@click.option("--top", type=int, default=5, show_default=True, callback=positive_top,
              help="How many of the best to list.")  # fmt: skip
def show_cmd(path: str, top: int) -> None:
    """Summarise the zoo FILE: record count, validation accuracy range, the best architectures."""
    from wsnas.training import Zoo

    if not os.path.isfile(path):
        raise CliError(f"zoo file {path!r} does not exist")
    records = Zoo.load(path)
    if not records:
        click.echo(f"{path}: 0 records")
        return
    bad = [i for i, r in enumerate(records, start=1) if not math.isfinite(r.val_acc)]
    if bad:
        first = ", ".join(str(i) for i in bad[:5])
        click.echo(f"warning: skipping {len(bad)} record(s) with a non-finite val_acc (records {first}"
                   f"{', ...' if len(bad) > 5 else ''})", err=True)  # fmt: skip
        records = [r for r in records if math.isfinite(r.val_acc)]
        if not records:
            raise CliError(f"zoo file {path!r} has no record with a finite val_acc")
    accs = [r.val_acc for r in records]
    diverged = sum(r.diverged for r in records)
    secs = [r.train_seconds for r in records if math.isfinite(r.train_seconds)]
    groups = sorted({(r.space, r.task, r.task_fingerprint) for r in records})
    skipped = f", {len(bad)} record(s) with a non-finite val_acc skipped" if bad else ""
    click.echo(f"{path}: {len(records)} records ({diverged} diverged{skipped})")
    for space, task, fp in groups:
        click.echo(f"  space {space}  task {task}  fingerprint {fp}")
    click.echo(f"val acc   {min(accs):.4f} .. {max(accs):.4f} (mean {sum(accs) / len(accs):.4f})")
    click.echo(f"train s   {sum(secs) / max(len(secs), 1):.2f} per architecture")
    click.echo(f"top {min(top, len(records))}")
    for r in sorted(records, key=lambda r: -r.val_acc)[:top]:
        click.echo(f"  {r.val_acc:.4f}  {r.params:>9,} params  {r.arch}")
