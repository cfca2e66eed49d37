"""The ``wsnas predictor`` commands: ``pretrain`` a predictor without labels, ``train`` one on model zoos (from
scratch or pretrained), ``eval`` the weight encoder against its baselines on a held-out split, ``finetune`` a
predictor on a few labelled architectures (transferring it to the zoo's space first when that differs; a
layer type it never saw is a ``warning: ...`` line). Every long step shows a tqdm bar on stderr.

Attached to the main command with ``main.add_command(predictor_group)``. torch and sklearn load inside the
commands only; bad input prints one ``error: ...`` line on stderr and exits with status 2.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

import click

from wsnas.cli._common import (
    CliError,
    ErrorLineGroup,
    check_zoo_files,
    one_line_errors,
    parse_size,
    quiet_option,
    size_option,
    stops_cleanly,
    zoo_files_option,
)

__all__ = [
    "predictor_group", "encoder_config", "encoder_options", "parse_budgets", "parse_methods", "given_options",
    "load_pretrained",
]  # fmt: skip


@click.group("predictor", cls=ErrorLineGroup)
def predictor_group() -> None:
    """Trainable predictors: train one on model zoos, save it as one safetensors file."""


def parse_budgets(text: str) -> list[int | None]:
    """``"50,100,all"`` -> ``[50, 100, None]``; each an int >= 5 or ``all``, no repeats."""
    out: list[int | None] = []
    for item in (t.strip() for t in text.split(",")):
        if item.lower() == "all":
            out.append(None)
            continue
        try:
            value = int(item)
        except ValueError:
            raise CliError(f"--budgets expects comma-separated ints >= 5 or 'all', got {item!r} in {text!r}") from None
        if value < 5:
            raise CliError(f"--budgets: every budget must be >= 5 labelled architectures, got {value}")
        out.append(value)
    if len(set(out)) != len(out):
        raise CliError(f"--budgets has a repeated budget: {text!r}")
    return out


def encoder_config(hidden: int, layers: int, aggregators: str | None) -> Any:
    """The :class:`~wsnas.predictors.EncoderConfig` of the CLI options (``aggregators``: ``"sum,mean"``)."""
    from wsnas.predictors import EncoderConfig

    options: dict[str, Any] = {"hidden": hidden, "layers": layers}
    if aggregators is not None:
        options["aggregators"] = tuple(a.strip() for a in aggregators.split(",") if a.strip())
    try:
        return EncoderConfig(**options)
    except ValueError as exc:
        raise CliError(str(exc)) from None


def encoder_options(command: Any) -> Any:
    """The encoder's CLI options (``--hidden``, ``--layers``, ``--aggregators``, ``-s/--size``), shared by
    ``predictor train`` and ``predictor eval``; pass them to :func:`encoder_config` and ``parse_size``."""
    options = [
        click.option("--hidden", type=int, default=32, show_default=True, help="Encoder hidden width."),
        click.option("--layers", type=int, default=3, show_default=True, help="Encoder message-passing layers."),
        click.option("--aggregators", default=None, help="Encoder aggregators, comma-separated (default: sum,mean)."),
        size_option("Encoding width, e.g. -s C=2."),
    ]
    for option in reversed(options):
        command = option(command)
    return command


def given_options(*names: str) -> list[str]:
    """Which of the current command's parameters ``names`` the user set (on the command line or by environment)."""
    from click.core import ParameterSource

    ctx = click.get_current_context()
    return [n for n in names if ctx.get_parameter_source(n) not in (None, ParameterSource.DEFAULT)]


def load_pretrained(path: str) -> Any:
    """The pretrained predictor of file (or shipped name) ``path``; one that was never pretrained is a CliError."""
    from wsnas.predictors import load

    pred = load(path)
    if pred.pretraining is None:
        raise CliError(f"{path!r} is not a pretrained predictor (write one with 'wsnas predictor pretrain')")
    return pred


def _checkpoint_file(checkpoint: str | None, out: str) -> Path:
    """The progress file (``--checkpoint``, default ``OUT.ckpt``); says so on stderr when it resumes one."""
    ckpt = Path(checkpoint if checkpoint is not None else f"{out}.ckpt")
    if ckpt.exists():
        click.echo(f"resuming from the checkpoint {str(ckpt)!r}", err=True)
    return ckpt


def _saved_note(ckpt: Path, work: str) -> Callable[[], str]:
    """What an interrupted command says about its progress file."""

    def saved() -> str:
        if ckpt.exists():
            return f"progress is saved in {str(ckpt)!r}; run the same command again to resume"
        return f"nothing was saved yet (the first checkpoint comes a few seconds into {work})"

    return saved


@predictor_group.command("train")
@zoo_files_option
@click.option("--out", required=True, type=click.Path(dir_okay=False), help="Predictor file to write.")
@click.option("--space", "space_name", default=None, help="Search space (default: the zoo records' space).")
@click.option("--target", default="val_acc", show_default=True, help="Zoo record field to predict.")
@click.option("--ensemble", type=int, default=5, show_default=True, help="Number of encoders in the ensemble.")
@click.option("--epochs", type=int, default=100, show_default=True, help="Most training epochs per encoder.")
@click.option("--seed", type=int, default=0, show_default=True, help="Seeds the encoders, split and weights.")
@click.option("--pretrained", "pretrained_path", default=None, metavar="FILE",
              help="Start from this pretrained predictor (its encoder, ensemble, width and seed).")  # fmt: skip
@click.option("--checkpoint", default=None, metavar="FILE", type=click.Path(dir_okay=False),
              help="Progress file: Ctrl-C keeps it, the same command resumes from it  [default: OUT.ckpt]")  # fmt: skip
@click.option("--size-prior/--no-size-prior", default=True, show_default=True,
              help="Blend scores with the parameter count, weighted per space from its labels.")  # fmt: skip
@encoder_options
@quiet_option
def train_cmd(
    zoos: tuple[str, ...],
    out: str,
    space_name: str | None,
    target: str,
    ensemble: int,
    epochs: int,
    seed: int,
    pretrained_path: str | None,
    checkpoint: str | None,
    size_prior: bool,
    hidden: int,
    layers: int,
    aggregators: str | None,
    size_items: tuple[str, ...],
    quiet: bool,
) -> None:
    """Fit a weight predictor on the (non-diverged) records of the zoo FILEs and save it to OUT.

    Zoos of several spaces train one predictor on all of them (bound to the first file's space, or the
    --pretrained one's; see WeightPredictor.fit's other_spaces) unless --space picks one.

    Prints the validation Spearman correlation of the ensemble. Networks are encoded at the width of the
    shipped predictors (NB201: C=2, N=1; see wsnas.predictors.default_transfer_size) unless --size says
    otherwise. With --pretrained, every encoder starts from that pretrained predictor's encoder.

    The progress is saved to the --checkpoint file every few seconds and after each encoder: after Ctrl-C
    (or a crash) the same command resumes from it and writes the predictor an unstopped run writes. The
    file is removed once OUT is written.

    Scores blend the ensemble with each network's parameter count (combined with its depth where a space's
    labels choose it) by a weight per space chosen from its labels (the ensemble's validation Spearman, the
    count's on every label; 0: the ensemble alone); --no-size-prior leaves the prior out.
    """

    with one_line_errors():
        check_zoo_files(zoos)
        from wsnas.predictors import WeightPredictor, default_transfer_size, zoo_spaces, zoo_training_set
        from wsnas.search_spaces import get_space

        space = get_space(space_name) if space_name is not None else None
        pred = None
        if pretrained_path is not None:
            fixed = given_options("hidden", "layers", "aggregators", "size_items", "ensemble", "seed")
            if fixed:
                names = ", ".join("--size" if n == "size_items" else f"--{n}" for n in fixed)
                raise CliError(f"--pretrained fixes the encoder, ensemble, width and seed; drop {names}")
            pred = load_pretrained(pretrained_path)
            if space is not None and space.name != pred.space.name:
                raise CliError(f"{pretrained_path!r} was pretrained on {pred.space.name!r}, not {space.name!r}")
            space = pred.space
        try:
            names = [] if space_name is not None else zoo_spaces(list(zoos))
            primary = space or (names[0] if names else None)
            space, archs, y, description = zoo_training_set(list(zoos), primary, target)
            others = {n: zoo_training_set(list(zoos), n, target)[1:3] for n in names if n != space.name}
            if pred is None:
                size = parse_size(size_items) or default_transfer_size(space)
                config = encoder_config(hidden, layers, aggregators)
                pred = WeightPredictor(space, encoder=config, ensemble=ensemble, seed=seed, size=size)
            ckpt = _checkpoint_file(checkpoint, out)
            with stops_cleanly(_saved_note(ckpt, "training")):
                pred.fit(archs, y, epochs=epochs, target_name=target, progress=not quiet, checkpoint=ckpt,
                         other_spaces=others or None, size_prior=size_prior)  # fmt: skip
        except (TypeError, ValueError) as exc:
            raise CliError(f"predictor training failed: {exc}") from None
        assert pred.training_data is not None
        pred.training_data.update(description)
        try:
            pred.save(out)
        except OSError as exc:
            raise CliError(f"cannot write predictor file {out!r}: {exc.strerror or exc}") from None
    fit = pred.history[-1]
    rho, spaces = fit.get("val_spearman"), fit.get("spaces") or {}
    shown = "n/a" if rho is None else f"{rho:.4f}"
    if spaces:
        rhos = [e["val_spearman"] for e in spaces.values() if e.get("val_spearman") is not None]
        shown = f"{sum(rhos) / len(rhos):.4f} (mean over {len(rhos)} spaces)" if rhos else "n/a"
    click.echo(f"validation Spearman {shown} ({fit['n'] - fit['n_val']} train, {fit['n_val']} validation)")
    for name, entry in spaces.items():
        rho = entry.get("val_spearman")
        click.echo(f"  {name}: validation Spearman {'n/a' if rho is None else f'{rho:.4f}'} "
                   f"({entry['n'] - entry['n_val']} train, {entry['n_val']} validation, "
                   f"width {entry['size']})")  # fmt: skip
    if pred.prior is not None:
        weights = ", ".join(f"{name} {e['weight']:g}" + (" (log params and depth)" if "coef" in e else "")
                            for name, e in pred.prior["spaces"].items())  # fmt: skip
        click.echo(f"size prior weight: {weights}")
    how = ", from the pretrained encoder" if pretrained_path is not None else ""
    click.echo(f"saved {pred.space.name} predictor ({pred.ensemble} encoders{how}) to {out}")


#: the most architectures ``predictor pretrain --all`` enumerates (NB201's 15,625 take ~26 CPU-min of proxies)
ALL_LIMIT = 100_000


@predictor_group.command("pretrain")
@click.option("--space", "space_name", required=True, help="Search space to pretrain on.")
@click.option("--out", required=True, type=click.Path(dir_okay=False), help="Pretrained predictor file to write.")
@click.option("--n", "n", type=int, default=None, help="Distinct architectures to sample (default: 1000).")
@click.option("--all", "every", is_flag=True, help="Every architecture of the (finite) space instead.")
@click.option("--seed", type=int, default=0, show_default=True, help="Seeds the sample, encoders and weights.")
@click.option("--task", "task_name", default="synthetic", show_default=True, help="Proxies' data: synthetic, cifar10.")
@click.option("--data-dir", type=click.Path(file_okay=False), help="Dataset folder (cifar10: cifar-10-batches-py).")
@click.option("--epochs", type=int, default=4, show_default=True, help="Pretraining epochs.")
@click.option("--ensemble", type=int, default=5, show_default=True, help="Number of encoders in the ensemble.")
@click.option("--checkpoint", default=None, metavar="FILE", type=click.Path(dir_okay=False),
              help="Proxies so far: Ctrl-C keeps them, the same command resumes  [default: OUT.ckpt]")  # fmt: skip
@encoder_options
@quiet_option
def pretrain_cmd(
    space_name: str,
    out: str,
    n: int | None,
    every: bool,
    seed: int,
    task_name: str,
    data_dir: str | None,
    epochs: int,
    ensemble: int,
    checkpoint: str | None,
    hidden: int,
    layers: int,
    aggregators: str | None,
    size_items: tuple[str, ...],
    quiet: bool,
) -> None:
    """Pretrain a predictor without labels on N architectures (or --all) of SPACE and save it to OUT.

    The encoder learns to predict every zero-cost proxy of each architecture (about 0.1 CPU-s an NB201 cell).
    Networks are encoded at the space's default width (NB201: C=2, N=1) unless --size says otherwise. Prints
    the held-out Spearman of each proxy; 'wsnas predictor train --pretrained OUT' then fits it on a zoo.

    The proxies computed so far are saved to the --checkpoint file every few seconds: after Ctrl-C the same
    command resumes from them. The file is removed once pretraining completes.
    """
    with one_line_errors():
        if every and n is not None:
            raise CliError("--n and --all exclude each other")
        if n is not None and n < 15:
            raise CliError(f"--n must be >= 15 (a fifth, at least 3, is held out to report the Spearman), got {n}")
        if epochs < 1 or ensemble < 1:
            raise CliError(f"--epochs and --ensemble must be >= 1, got {epochs} and {ensemble}")
        if not 0 <= seed < 2**32:
            raise CliError(f"--seed must be in [0, 2**32), got {seed}")
        from wsnas.predictors import WeightPredictor, default_transfer_size
        from wsnas.search_spaces import get_space
        from wsnas.training import get_task, sample_distinct

        space = get_space(space_name)
        if every and (space.size is None or space.size > ALL_LIMIT):
            count = "too many" if space.size is None else f"{space.size:,}"
            raise CliError(f"--all enumerates at most {ALL_LIMIT:,} architectures; {space.name!r} has {count}: use --n")
        if task_name.lower() == "cifar10" and data_dir is None:
            raise CliError("task 'cifar10' needs --data-dir DIR: the folder holding 'cifar-10-batches-py'")
        task = get_task(task_name, **({} if data_dir is None else {"data_dir": data_dir}))
        size = parse_size(size_items) or default_transfer_size(space)
        try:
            archs = list(space.enumerate()) if every else sample_distinct(space, 1000 if n is None else n, seed)
            config = encoder_config(hidden, layers, aggregators)
            pred = WeightPredictor(space, encoder=config, ensemble=ensemble, seed=seed, size=size)
            space.build_for_encoding(archs[0], **size)  # a bad --size fails here, before the proxies
            ckpt = _checkpoint_file(checkpoint, out)
            with stops_cleanly(_saved_note(ckpt, "the proxies")):
                pred.pretrain(archs, task=task, epochs=epochs, progress=not quiet, checkpoint=ckpt)
        except (TypeError, ValueError) as exc:
            raise CliError(f"pretraining failed: {exc}") from None
        info = pred.pretraining
        # a held-out Spearman is NaN where a side is constant (a tiny held-out set); cards are strict JSON
        info["held_out_spearman"] = [r if math.isfinite(r) else None for r in info["held_out_spearman"]]
        try:
            pred.save(out)
        except OSError as exc:
            raise CliError(f"cannot write predictor file {out!r}: {exc.strerror or exc}") from None
    rhos = ", ".join(
        f"{name} {'n/a' if r is None else f'{r:.3f}'}"
        for name, r in zip(info["targets"], info["held_out_spearman"] or [None] * len(info["targets"]))
    )
    click.echo(
        f"pretrained on {len(archs)} {space.name} architectures ({epochs} epochs, {info['n_held_out']} held out), "
        f"held-out Spearman: {rhos}; saved to {out}"
    )


def parse_methods(text: str | None) -> list[str]:
    """``"encoder,synflow"`` -> the method names (``None``, ``all``: every method); unknown names are an error."""
    from wsnas.predictors import METHODS, ZERO_COST_METHODS

    if text is None or text.strip().lower() == "all":
        return list(METHODS)
    out: list[str] = []
    for item in (t.strip() for t in text.split(",") if t.strip()):
        if item == "zero_cost":
            out.extend(ZERO_COST_METHODS)
        elif item in METHODS:
            out.append(item)
        else:
            raise CliError(f"--methods: unknown method {item!r}; known: {', '.join(METHODS)}, zero_cost, all")
    if not out:
        raise CliError("--methods names no method")
    return list(dict.fromkeys(out))


@predictor_group.command("eval")
@zoo_files_option
@click.option("--predictor", "predictor_path", default=None, help="Evaluate this saved predictor's configuration.")
@click.option("--budgets", default="50,100,200,all", show_default=True, help="Label budgets, comma-separated.")
@click.option("--seed", type=int, default=0, show_default=True, help="Seeds the split, models and weights.")
@click.option("--methods", default=None, help="Comma-separated methods (default: all; 'zero_cost': every proxy).")
@click.option("--space", "space_name", default=None, help="Search space (default: the zoo records' space).")
@click.option("--target", default="val_acc", show_default=True, help="Zoo record field to rank by.")
@click.option("--test-fraction", type=float, default=0.3, show_default=True, help="Share of archs held out.")
@click.option("--ensemble", type=int, default=5, show_default=True, help="Encoders per ensemble.")
@click.option("--epochs", type=int, default=100, show_default=True, help="Most epochs per encoder.")
@encoder_options
@click.option(
    "--baseline-size", "baseline_items", multiple=True, metavar="KEY=VALUE",
    help="Width at which zero-cost proxies and weight statistics see the networks (default: the proxy size).",
)  # fmt: skip
@click.option("--save-predictor", default=None, type=click.Path(dir_okay=False),
              help="Write the encoder fitted at the largest budget, with this table in its card.")  # fmt: skip
@click.option("--data-dir", default=None, help="Dataset folder of the zoo's task (cifar10) for zero-cost proxies.")
@click.option("--pretrained", "pretrained_path", default=None, metavar="FILE",
              help="The encoder rows fit copies of this pretrained predictor (wsnas predictor pretrain).")  # fmt: skip
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of the markdown table.")
@quiet_option
def eval_cmd(
    zoos: tuple[str, ...],
    predictor_path: str | None,
    budgets: str,
    seed: int,
    methods: str | None,
    space_name: str | None,
    target: str,
    test_fraction: float,
    ensemble: int,
    epochs: int,
    hidden: int,
    layers: int,
    aggregators: str | None,
    size_items: tuple[str, ...],
    baseline_items: tuple[str, ...],
    save_predictor: str | None,
    data_dir: str | None,
    pretrained_path: str | None,
    as_json: bool,
    quiet: bool,
) -> None:
    """Rank the zoo FILEs' held-out architectures with the weight encoder, its shuffled-weights ablation,
    an architecture-only GNN, weight statistics + GBM and every zero-cost proxy; print the table.

    With --predictor, the encoder's configuration (encoder, ensemble, encoding width, init) comes from
    that predictor's card and is retrained at each budget. With --pretrained, the encoder rows start
    from that pretrained predictor's encoder (its encoder, ensemble, width and seed). Budgets that come
    to the same number of labels (200 and all on a pool of 180) are fitted once.
    """
    with one_line_errors():
        check_zoo_files(zoos)
        budget_list = parse_budgets(budgets)
        method_list = parse_methods(methods)
        if ensemble < 1 or epochs < 1:
            raise CliError(f"--ensemble and --epochs must be >= 1, got {ensemble} and {epochs}")
        from wsnas.predictors import EncoderConfig, evaluate
        from wsnas.search_spaces import get_space

        space = get_space(space_name) if space_name is not None else None
        size = parse_size(size_items) or None
        baseline_size = parse_size(baseline_items) or None
        init = "kaiming_normal"
        encoder = encoder_config(hidden, layers, aggregators)
        if predictor_path is not None:
            from wsnas.predictors import load

            card = load(predictor_path, device="cpu").card
            enc = dict(card["encoder"])
            encoder = EncoderConfig(**{**enc, "aggregators": tuple(enc["aggregators"])})
            ensemble, size, init = card["ensemble"], dict(card["encoding"]["size"]), card["encoding"]["init"]
            if space is None:
                space = get_space(card["space"])
            elif space.name != card["space"]:
                raise CliError(f"predictor {predictor_path!r} is of space {card['space']!r}, not {space.name!r}")
        pretrained = load_pretrained(pretrained_path) if pretrained_path is not None else None
        try:
            table = evaluate(
                list(zoos),
                space=space,
                target=target,
                label_budgets=budget_list,
                test_fraction=test_fraction,
                seed=seed,
                methods=method_list,
                encoder=encoder,
                ensemble=None if pretrained is not None and not given_options("ensemble") else ensemble,
                size=size,
                baseline_size=baseline_size,
                init=init,
                fit_options={"epochs": epochs},
                data_dir=data_dir,
                save_predictor=save_predictor,
                pretrained=pretrained,
                progress=not quiet,
            )
        except (TypeError, ValueError, KeyError) as exc:
            raise CliError(f"evaluation failed: {exc}") from None
    click.echo(table.to_json() if as_json else table.to_markdown().rstrip("\n"))


# the finetune command lives in its own module; registered here so that the group is complete on import
from wsnas.cli._finetune import finetune_cmd  # noqa: E402

predictor_group.add_command(finetune_cmd)
