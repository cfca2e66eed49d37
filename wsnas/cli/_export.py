"""``wsnas export``: the chosen architecture written as a network to ship (see :func:`wsnas.export`).

Attached to the main command with ``main.add_command(export_cmd)``. The architecture is ``--arch STRING``
of ``--space NAME``, or the best one of a search's ``OUTPUT_DIR/STUDY.json`` (``--from-results``). torch
loads inside the command only; bad input prints one ``error: ...`` line on stderr and exits with status 2.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import click

from wsnas.cli._common import CliError, parse_size, size_option

__all__ = ["export_cmd", "best_of_results"]


def best_of_results(path: str, space_name: str | None) -> tuple[str, str]:
    """``(space name, best architecture string)`` of the JSON summary ``wsnas search`` writes (``STUDY.json``).

    The summary names no space: ``space_name`` (``--space``) when given, else its ``space`` field if a later
    format has one, else the one registered space that parses the string.

    Raises:
        CliError: the file is missing or not a search summary, it has no best architecture, or the space
            cannot be told.
    """
    from wsnas._errors import InvalidArchitecture
    from wsnas.search_spaces import get_space, space_names

    file = Path(path)
    if not file.is_file():
        raise CliError(f"results file {path!r} does not exist (wsnas search writes OUTPUT_DIR/STUDY.json)")
    try:
        doc = json.loads(file.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise CliError(f"results file {path!r} is not JSON: {exc}") from None
    if not isinstance(doc, dict) or "best" not in doc:
        raise CliError(f"results file {path!r} is not the summary wsnas search writes (it has no 'best')")
    best = doc["best"]
    if not isinstance(best, dict) or not isinstance(best.get("arch"), str):
        raise CliError(f"results file {path!r} has no best architecture (no evaluation finished)")
    text = best["arch"]
    name = space_name or doc.get("space")
    if name:
        return str(name), text
    fits = []
    for candidate in space_names():
        try:
            get_space(candidate).from_string(text)
        except InvalidArchitecture:
            continue
        fits.append(candidate)
    if len(fits) != 1:
        found = f"it fits {', '.join(fits)}" if fits else "no registered space parses it"
        raise CliError(f"cannot tell the space of {text!r} in {path!r} ({found}); pass --space")
    return fits[0], text


def _shape(text: str | None) -> tuple[int, ...] | None:
    if text is None:
        return None
    try:
        return tuple(int(p) for p in text.replace("x", ",").split(","))
    except ValueError:
        raise CliError(f"--input-shape expects C,H,W (e.g. 3,32,32), got {text!r}") from None


@click.command("export")
@click.option("--space", "space_name", default=None, help="Search space of --arch (e.g. nb201).")
@click.option("--arch", "text", default=None, metavar="STRING", help="The architecture, in the space's string form.")
@click.option("--from-results", "results", default=None, metavar="STUDY.json",
              help="Export the best architecture of this search summary (OUTPUT_DIR/STUDY.json).")  # fmt: skip
@click.option("--out", "out_dir", required=True, metavar="DIR", help="Folder to write (must be empty, or --force).")
@size_option("Network size keyword for the space's build (repeatable), e.g. -s C=16 -s N=5; default the space's.")
@click.option("--weights", default="generated", show_default=True, metavar="generated|trained|FILE",
              help="Generated from --seed, trained on --task from them, or a .safetensors state dict.")  # fmt: skip
@click.option("--task", "task_name", default=None, help="Task to train on (digits, cifar10, synthetic); sets classes.")
@click.option("--data-dir", default=None, help="Folder holding cifar-10-batches-py (for --task cifar10).")
@click.option("--epochs", type=click.IntRange(min=1), default=None, help="Training epochs (default the task's).")
@click.option("--seed", type=click.IntRange(min=0), default=0, show_default=True, help="Seeds the weights.")
@click.option("--input-shape", default=None, metavar="C,H,W", help="One input's shape (default the task's/space's).")
@click.option("--no-torchscript", is_flag=True, help="Do not write model.ts.")
@click.option("--no-torch-export", is_flag=True, help="Do not write model.pt2 (torch.export, dynamic batch).")
@click.option("--force", is_flag=True, help="Write into a non-empty --out folder.")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON document.")
def export_cmd(
    space_name: str | None,
    text: str | None,
    results: str | None,
    out_dir: str,
    size_items: tuple[str, ...],
    weights: str,
    task_name: str | None,
    data_dir: str | None,
    epochs: int | None,
    seed: int,
    input_shape: str | None,
    no_torchscript: bool,
    no_torch_export: bool,
    force: bool,
    as_json: bool,
) -> None:
    """Write an architecture as a built network: model.safetensors (its state dict), arch.json, rebuild.py,
    model.ts (TorchScript) and model.pt2 (torch.export); the last two load in plain PyTorch, without wsnas.

    \b
    wsnas export --space nb201 --arch '|nor_conv_3x3~0|+|...|' --out winner -s C=16 -s N=5
    wsnas export --from-results wsnas-runs/STUDY.json --out winner --weights trained --task digits --epochs 5
    """
    if (text is None) == (results is None):
        raise CliError("give the architecture as --arch STRING (with --space) or --from-results STUDY.json")
    if text is not None and space_name is None:
        raise CliError("--arch needs --space (e.g. --space nb201)")
    if results is not None:
        space_name, text = best_of_results(results, space_name)
    if weights == "trained" and task_name is None:
        raise CliError("--weights trained needs --task (digits, cifar10 with --data-dir, synthetic)")
    if task_name is None and (data_dir is not None or epochs is not None):
        raise CliError("--data-dir and --epochs need --task")
    if data_dir is not None and task_name.lower() != "cifar10":
        raise CliError(f"--data-dir is for --task cifar10, not {task_name!r}")
    size, shape = parse_size(size_items), _shape(input_shape)

    from wsnas.training import export, get_task

    task = None
    if task_name is not None:
        options: dict[str, Any] = {"data_dir": data_dir} if data_dir is not None else {}
        if epochs is not None:
            options["epochs"] = epochs
        task = get_task(task_name, **options)
    result = export(
        space_name, text, out_dir, size=size, weights=weights, task=task, seed=seed, torchscript=not no_torchscript,
        torch_export=not no_torch_export, input_shape=shape, overwrite=force,
    )  # fmt: skip
    doc = {
        "space": result.space,
        "arch": result.arch,
        "out_dir": str(result.out_dir),
        "files": {role: str(path) for role, path in result.files.items()},
        "build_kwargs": result.build_kwargs,
        "params": result.params,
        "input_shape": list(result.input_shape),
        "num_classes": result.num_classes,
        "weights": result.weights,
        "seed": result.seed,
        "val_acc": (result.training or {}).get("val_acc"),
        "load": result.load_hint,
    }
    if as_json:
        click.echo(json.dumps(doc, indent=2, default=str))
        return
    trained = f", val_acc {doc['val_acc']:.4f}" if doc["val_acc"] is not None else ""
    click.echo(f"exported {result.space} {result.arch}")
    click.echo(f"network  {result.params:,} params, [B, {', '.join(map(str, result.input_shape))}] -> "
               f"[B, {result.num_classes}], {result.weights} weights (seed {result.seed}{trained})")  # fmt: skip
    for role, path in result.files.items():
        click.echo(f"wrote    {path}  ({role})")
    plain = "   # plain PyTorch, no wsnas" if {"torchscript", "torch_export"} & set(result.files) else ""
    click.echo(f"load it  {result.load_hint}{plain}")
    if "torchscript" in result.files and "torch_export" in result.files:
        click.echo(f"   or    torch.export.load({str(result.files['torch_export'])!r}).module()")
