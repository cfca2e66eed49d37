"""``wsnas predictor finetune``: continue training a predictor on a few labelled architectures of a zoo,
transferring it first when the zoo's space is another (registered in :mod:`wsnas.cli._predictor`'s group)."""

from __future__ import annotations

import warnings

import click

from wsnas.cli._common import (
    CliError,
    check_zoo_files,
    one_line_errors,
    parse_size,
    quiet_option,
    size_option,
    zoo_files_option,
)

__all__ = ["finetune_cmd", "event_from"]


@click.command("finetune")
@click.option("--predictor", "predictor_path", required=True, help="Predictor file, or a shipped name (nb201).")
@zoo_files_option
@click.option("--n", "n", type=int, required=True, help="Number of zoo architectures to fine-tune on (K).")
@click.option("--out", required=True, type=click.Path(dir_okay=False), help="Predictor file to write.")
@click.option("--space", "space_name", default=None, help="Target space (default: the zoo records' space).")
@click.option("--target", default=None, help="Zoo record field (default: the predictor's target, else val_acc).")
@click.option("--seed", type=int, default=0, show_default=True, help="Seeds the draw of the K architectures.")
@click.option("--epochs", type=int, default=None, help="Fine-tuning epochs (default: 10, or 100 after a transfer).")
@click.option("--lr", type=float, default=3e-4, show_default=True, help="Fine-tuning learning rate.")
@size_option("Encoding width on a new space.")
@quiet_option
def finetune_cmd(
    predictor_path: str,
    zoos: tuple[str, ...],
    n: int,
    out: str,
    space_name: str | None,
    target: str | None,
    seed: int,
    epochs: int | None,
    lr: float,
    size_items: tuple[str, ...],
    quiet: bool,
) -> None:
    """Fine-tune predictor P on N architectures drawn (with SEED) from the zoo FILEs and save it to OUT.

    The target is the predictor's own when it is a zoo field (else val_acc). When the zoo's space differs from the
    predictor's, the predictor is transferred to it first, at the --size encoding width or the space's
    default transfer width. Prints the training loss before and after.
    """
    with one_line_errors():
        check_zoo_files(zoos)
        if n < 2:
            raise CliError(f"--n must be >= 2 (fine-tuning ranks pairs), got {n}")
        if epochs is not None and epochs < 1:
            raise CliError(f"--epochs must be >= 1, got {epochs}")
        if not lr > 0:
            raise CliError(f"--lr must be > 0, got {lr}")
        if not 0 <= seed < 2**32:
            raise CliError(f"--seed must be in [0, 2**32), got {seed}")
        size = parse_size(size_items) or None
        import numpy as np

        from wsnas.predictors import ZOO_TARGETS, load, zoo_training_set
        from wsnas.search_spaces import get_space

        pred = load(predictor_path)
        if target is None:
            own = str(pred.target.get("name"))
            target = own if own in ZOO_TARGETS else "val_acc"
        space = get_space(space_name) if space_name is not None else None
        try:
            space, archs, y, _ = zoo_training_set(list(zoos), space, target)
        except ValueError as exc:
            raise CliError(str(exc)) from None
        if n > len(archs):
            raise CliError(f"--n {n} is more than the {len(archs)} usable architectures of {space.name!r} in the zoo")
        transferred = space.name != pred.space.name
        if size is not None and not transferred:
            raise CliError(f"--size applies to a transfer only; the predictor is already on {space.name!r}")
        if transferred:
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always")
                try:
                    pred = pred.transfer(space, size=size)
                except (TypeError, ValueError) as exc:
                    raise CliError(f"cannot transfer the predictor to {space.name!r}: {exc}") from None
            for w in caught:
                click.echo(f"warning: {w.message}", err=True)
        idx = np.sort(np.random.default_rng(seed).permutation(len(archs))[:n])
        # after a transfer the members must learn a new space: 100 epochs at 3e-4 had the best median Spearman
        # over NB101 and MacroCNN at K=25 (benchmarks/transfer.py --select finetune, on the zoos' pools)
        options = {"epochs": epochs or (100 if transferred else 10), "lr": lr}
        pred.fine_tune([archs[i] for i in idx], y[idx], **options, progress=not quiet)
        event = pred.history[-1]
        event.update(zoos=[str(z) for z in zoos], seed=seed, arch_hashes=[archs[i].hash for i in idx])
        try:
            pred.save(out)
        except OSError as exc:
            raise CliError(f"cannot write predictor file {out!r}: {exc.strerror or exc}") from None
    how = f"transferred from {event_from(pred)} and " if transferred else ""
    click.echo(
        f"{how}fine-tuned on {n} {space.name} architectures ({options['epochs']} epochs): training loss "
        f"{event['train_loss_before']:.4f} -> {event['train_loss']:.4f}"
    )
    click.echo(f"saved {space.name} predictor ({pred.ensemble} encoders) to {out}")


def event_from(pred: object) -> str:
    """The source space of the last transfer in ``pred``'s history."""
    for e in reversed(getattr(pred, "history", [])):
        if e.get("event") == "transfer":
            return str(e.get("from_space"))
    return "?"
