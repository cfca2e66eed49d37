"""The ``wsnas predictor eval`` command: the weight encoder against its baselines on a held-out split.

A standalone click command (``eval_cmd``) that the ``predictor`` group attaches with
``predictor_group.add_command(eval_cmd)``. torch and sklearn load inside the command only; bad input
prints one ``error: ...`` line on stderr and exits with status 2.
"""

from __future__ import annotations

import os
from typing import Any

import click

from wsnas._cli_common import CliError, one_line_errors, parse_size

__all__ = ["eval_cmd", "encoder_config", "encoder_options", "parse_budgets", "parse_methods"]


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
    from wsnas.predictors._encoder import EncoderConfig

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
        click.option("-s", "--size", "size_items", multiple=True, metavar="KEY=VALUE",
                     help="Encoding width, e.g. -s C=2."),  # fmt: skip
    ]
    for option in reversed(options):
        command = option(command)
    return command


def parse_methods(text: str | None) -> list[str]:
    """``"encoder,synflow"`` -> the method names (``None``, ``all``: every method); unknown names are an error."""
    from wsnas.predictors._evaluate import METHODS, ZERO_COST_METHODS

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


@click.command("eval")
@click.option("--zoo", "zoos", multiple=True, required=True, metavar="FILE", help="Zoo file (repeatable).")
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
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of the markdown table.")
@click.option("--quiet", is_flag=True, help="No progress bar.")
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
    as_json: bool,
    quiet: bool,
) -> None:
    """Rank the zoo FILEs' held-out architectures with the weight encoder, its shuffled-weights ablation,
    an architecture-only GNN, weight statistics + GBM and every zero-cost proxy; print the table.

    With --predictor, the encoder's configuration (encoder, ensemble, encoding width, init) comes from
    that predictor's card and is retrained at each budget.
    """
    with one_line_errors():
        for z in zoos:
            if not os.path.isfile(z):
                raise CliError(f"zoo file {z!r} does not exist")
        budget_list = parse_budgets(budgets)
        method_list = parse_methods(methods)
        if ensemble < 1 or epochs < 1:
            raise CliError(f"--ensemble and --epochs must be >= 1, got {ensemble} and {epochs}")
        from wsnas.predictors._encoder import EncoderConfig
        from wsnas.predictors._evaluate import evaluate
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
                ensemble=ensemble,
                size=size,
                baseline_size=baseline_size,
                init=init,
                fit_options={"epochs": epochs},
                data_dir=data_dir,
                save_predictor=save_predictor,
                progress=not quiet,
            )
        except (TypeError, ValueError, KeyError) as exc:
            raise CliError(f"evaluation failed: {exc}") from None
    click.echo(table.to_json() if as_json else table.to_markdown().rstrip("\n"))
