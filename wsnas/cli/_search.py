"""The ``wsnas search`` and ``wsnas worker`` commands.

Attached to the main command with ``main.add_command(search_cmd)`` and ``main.add_command(worker_cmd)``.
torch, optuna and mlflow load inside the commands only; bad input prints one ``error: ...`` line on
stderr and exits with status 2. Ctrl-C stops cleanly (the evaluation in flight is given back) and the
same command resumes.
"""

from __future__ import annotations

import json
import shlex
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import click

from wsnas.cli._common import (
    CliError,
    no_tracking_option,
    one_line_errors,
    positive_top,
    quiet_option,
    recipe_given,
    recipe_options,
    size_option,
    stops_cleanly,
    task_from_options,
    tracking_choice,
    tracking_uri_option,
)

__all__ = ["search_cmd", "worker_cmd"]

_DEFAULT_BUDGET = 20


@click.command("search")
@click.option("--space", "space_name", default="nb201", show_default=True,
              help="Search space (see `wsnas spaces`), or a plug-in package.module:attr of your own.")  # fmt: skip
@click.option(
    "--evaluator",
    default="train:digits",
    show_default=True,
    help="train:TASK (cifar10 with --data-dir, digits, synthetic), table:PATH:ARCH_COL:METRIC_COL (a CSV of "
    "measured results), or a plug-in package.module:attr (a callable Arch -> accuracy or dict).",
)
@click.option("--data-dir", type=click.Path(file_okay=False),
              help="Dataset folder of train:TASK (cifar10: the folder holding cifar-10-batches-py).")  # fmt: skip
@size_option("Size of the trained networks (repeatable), e.g. -s C=8 -s N=1; default: the space's proxy size.")
@recipe_options({"batch_size": "--train-batch-size"})
@click.option("--train-seed", type=int, default=None, help="Seeds every training run (weights, data order; default 0).")
@click.option("--pruner", type=click.Choice(["none", "median", "halving", "hyperband"]), default="none",
              show_default=True, help="Stop unpromising trainings early on their per-epoch validation accuracy "
              "(Optuna's Median, SuccessiveHalving, Hyperband pruners).")  # fmt: skip
@click.option("--eval-budget", type=int, default=_DEFAULT_BUDGET, show_default=True,
              help="Real evaluations in all (0: training-free, predictor only).")  # fmt: skip
@click.option("--objectives", default="accuracy", show_default=True,
              help="Comma-separated: accuracy plus any of params, flops, latency.")  # fmt: skip
@click.option("--sampler", default="auto", show_default=True, help="auto, tpe, nsga2, random.")
@click.option("--predictor", "predictor_spec", default="default", show_default=True,
              help="'default' (shipped for the space), a predictor file, or 'none'.")  # fmt: skip
@click.option("--n-candidates", type=int, default=None, help="Architectures screened in all (default 8 x budget).")
@click.option("--batch-size", type=int, default=None, help="Candidates screened per predictor call (default 32).")
@click.option("--max-params", type=int, default=None, help="Drop candidates with more parameters before scoring.")
@click.option("--storage", default=None, help="Optuna storage URL or journal:PATH (default: OUTPUT_DIR/search.db).")
@click.option("--study-name", default=None, help="Study name (default: SPACE-DIGEST of the configuration).")
@click.option("--seed", type=int, default=0, show_default=True, help="Seeds the sampler.")
@click.option("--output-dir", default="wsnas-runs", show_default=True, type=click.Path(file_okay=False),
              help="Where the default storage, STUDY.json and STUDY-screening.csv go.")  # fmt: skip
@tracking_uri_option
@no_tracking_option
@click.option("--top", type=int, default=None, callback=positive_top,
              help="How many architectures to list [default: 5; with several objectives, the whole Pareto "
                   "front].")  # fmt: skip
@click.option("--json", "as_json", is_flag=True, help="Print one JSON document on stdout (best, pareto, history).")
@quiet_option
def search_cmd(
    space_name: str,
    evaluator: str,
    eval_budget: int,
    objectives: str,
    sampler: str,
    predictor_spec: str,
    n_candidates: int | None,
    batch_size: int | None,
    max_params: int | None,
    storage: str | None,
    study_name: str | None,
    seed: int,
    output_dir: str,
    tracking_uri: str | None,
    no_tracking: bool,
    top: int | None,
    as_json: bool,
    quiet: bool,
    data_dir: str | None,
    size_items: tuple[str, ...],
    train_seed: int | None,
    pruner: str,
    **recipe: Any,
) -> None:
    """Search SPACE: Optuna proposes, the predictor screens, the evaluator measures the most promising.

    With no options: NB201, the shipped predictor, 20 real trainings on the embedded digits task.
    Your own data and network size: --evaluator train:cifar10 --data-dir DIR -s C=8 --epochs 4 (the
    study stores the task, so workers rebuild it); --pruner stops poor trainings early.
    Rerunning the same command resumes the search where it stopped (or just prints its result).
    It starts by printing (on stderr, unless --quiet) the study, its storage and the `wsnas worker`
    command that adds a worker to it from another terminal.
    """
    with one_line_errors():
        _torch_one_thread()
        from wsnas._search import search

        names = tuple(o.strip() for o in objectives.split(",") if o.strip())
        predictor: Any = None if predictor_spec.lower() == "none" else predictor_spec
        flags = _tracking_flags(tracking_uri, no_tracking)
        ev = _evaluator(evaluator, data_dir, size_items, train_seed, recipe) if eval_budget > 0 else None
        result = _interruptible(
            lambda: search(
                space_name,
                evaluator=ev,
                eval_budget=eval_budget,
                predictor=predictor,
                objectives=names,
                sampler=sampler,
                n_candidates=n_candidates,
                batch_size=batch_size,
                storage=storage,
                study_name=study_name,
                seed=seed,
                output_dir=output_dir,
                max_params=max_params,
                pruner=pruner,
                tracking=tracking_choice(tracking_uri, no_tracking),
                progress=not quiet,
                on_start=None if quiet else _announce(output_dir, flags),
            )
        )
        _report(result, top, as_json, flags)


@click.command("worker")
@click.option("--study", "study_name", required=True, help="The study name of the running search.")
@click.option("--storage", required=True, help="Its Optuna storage URL (or journal:PATH).")
@click.option("--output-dir", default="wsnas-runs", show_default=True, type=click.Path(file_okay=False),
              help="Where this worker writes STUDY.json and its screening rows.")  # fmt: skip
@click.option("--data-dir", type=click.Path(file_okay=False),
              help="Where the search's dataset is on this machine (default: the folder the search read).")  # fmt: skip
@click.option("--wait", type=click.FloatRange(min=0), default=0, show_default=True, metavar="SECONDS",
              help="Wait this long for the study to appear (a worker started beside its search).")  # fmt: skip
@tracking_uri_option
@no_tracking_option
@click.option("--json", "as_json", is_flag=True, help="Print one JSON document on stdout when the search is done.")
@quiet_option
def worker_cmd(
    study_name: str, storage: str, output_dir: str, data_dir: str | None, wait: float, tracking_uri: str | None,
    no_tracking: bool, as_json: bool, quiet: bool,
) -> None:  # fmt: skip
    """Join a running search as one more worker (another process or machine sharing its storage).

    The search's configuration (space, evaluator and its training task, budget, predictor, pruner, ...)
    is read from the study; a plug-in space or evaluator must be importable here too (PYTHONPATH).
    Workers never evaluate an architecture twice and stop when the shared budget is spent.
    """
    with one_line_errors():
        _torch_one_thread()
        from wsnas._search import join

        tracking = tracking_choice(tracking_uri, no_tracking)
        flags = _tracking_flags(tracking_uri, no_tracking)
        announce = None if quiet else _announce(output_dir, flags)
        result = _interruptible(
            lambda: join(
                study_name, storage, output_dir=output_dir, data_dir=data_dir, tracking=tracking, progress=not quiet,
                on_start=announce, wait=wait,
            )  # fmt: skip
        )
        _report(result, 5, as_json, flags)


def _evaluator(
    spec: str, data_dir: str | None, size_items: tuple[str, ...], train_seed: int | None, recipe: dict[str, Any]
) -> Any:
    """``--evaluator`` with the task options: a TrainEvaluator of ``train:TASK`` set up by ``--data-dir``,
    ``-s`` and the recipe options (the study stores it as data), else the spec string itself."""
    kind, _, task_name = spec.partition(":")
    if kind == "train" and task_name:
        from wsnas._search import TrainEvaluator

        return TrainEvaluator(task_from_options(task_name, data_dir, size_items, recipe), seed=train_seed or 0)
    given = ["--data-dir"] * (data_dir is not None) + ["-s/--size"] * bool(size_items)
    given += ["--train-seed"] * (train_seed is not None) + recipe_given(recipe)
    if given:
        raise CliError(f"{', '.join(given)} set up a train:TASK evaluator; --evaluator {spec!r} trains nothing")
    return spec


def _tracking_flags(tracking_uri: str | None, no_tracking: bool) -> list[str]:
    """The tracking options a worker needs to log where this command logs."""
    return ["--no-tracking"] if no_tracking else ["--tracking-uri", tracking_uri] if tracking_uri else []


def _worker_command(study_name: str, storage: str, output_dir: str | Path, flags: list[str]) -> str:
    """The shell line that adds a worker to the search ``study_name`` in ``storage``: its files go to the
    same (absolute) ``output_dir`` and it logs where the search logs (the ``flags`` of its tracking)."""
    argv = ["wsnas", "worker", "--study", study_name, "--storage", storage]
    return shlex.join([*argv, "--output-dir", str(Path(output_dir).resolve()), *flags])


def _announce(output_dir: str, flags: list[str]) -> Any:
    """The search's ``on_start``: the study, its storage and how to join it, on stderr."""

    def announce(study_name: str, storage: str) -> None:
        click.echo(f"study {study_name} in {storage}; to add a worker, run in another terminal:", err=True)
        click.echo(f"  {_worker_command(study_name, storage, output_dir, flags)}", err=True)

    return announce


def _torch_one_thread() -> None:
    import torch

    torch.set_num_threads(1)


def _interruptible(run: Any) -> Any:
    """Run the search; Ctrl-C (exit 130) and SIGTERM (exit 143) stop it cleanly, with a message."""
    with stops_cleanly("finished evaluations are stored; run the same command again to resume"):
        return run()


def _fmt(value: Any, spec: str) -> str:
    """``value`` formatted by ``spec`` (``"9.4f"``), or ``-`` at the same width when there is none."""
    width = int("".join(c for c in spec.split(".")[0] if c.isdigit()) or 0)
    return "-".rjust(width) if value is None else format(value, spec)


_PREDICTED = "predicted (score)"


def _predicted_note(result: Any) -> str:
    """The footnote under the table: what the predicted column's numbers are."""
    target = getattr(result.predictor, "target", None)
    name = target.get("name") if isinstance(target, Mapping) else None
    note = f"{_PREDICTED}: the predictor's score, in the units of its training target" + (f" ({name})" if name else "")
    if result.training_free:
        return note + "; compare its order, not its values"
    return note + ", not the evaluator's: it ranks the candidates, it is no estimate of measured"


#: objective -> (column header, format of its value without the width): one column per objective in the Pareto table
_COLUMNS: dict[str, tuple[str, str]] = {
    "accuracy": ("accuracy", ".4f"),
    "params": ("params", ","),
    "flops": ("FLOPs", ","),
    "latency": ("latency (ms)", ".3f"),
}
_WIDTH = {"params": 10, "flops": 13}  # the widest values expected (wider ones push their row right)


def _objective_value(r: Any, name: str) -> Any:
    """``r``'s value of the objective ``name``; params and FLOPs as the record's integers."""
    if name in ("params", "flops"):
        value = getattr(r, name)
        return value if value is not None else r.values.get(name)
    return r.values.get(name)


def _front_table(result: Any, top: int | None = None) -> None:
    """The Pareto table of a multi-objective search: every non-dominated architecture (no other one is at
    least as good on every objective and better on one; the first ``top`` of them when given), one column per
    objective, best first objective first; params and FLOPs as well when they are no objectives, and the
    predictor's score when there is one."""
    from wsnas._search import OBJECTIVES

    front, objectives = result.pareto, list(result.objectives)
    directions = ", ".join(f"{o} {OBJECTIVES[o]}d" for o in objectives)
    pool = "screened" if result.training_free else "evaluated"
    shown = f"; the first {top} listed (--top)" if top is not None and top < len(front) else ""
    click.echo(f"Pareto front: {len(front)} of {len(result.evaluated())} {pool} architectures are non-dominated "
               f"({directions}); sorted by {objectives[0]}{shown}")  # fmt: skip
    front = front if top is None else front[:top]
    columns: list[tuple[str, str, Any]] = []  # (header, format with its width, value of a record)
    if any(r.predicted is not None for r in front) and not result.training_free:
        columns.append((_PREDICTED, f"{len(_PREDICTED)}.4f", lambda r: r.predicted))
    for name in [*objectives, *(o for o in ("params", "flops") if o not in objectives)]:
        header, spec = _COLUMNS[name]
        if name == "accuracy" and result.training_free:
            header = _PREDICTED  # a training-free search's accuracy is the predictor's score
        spec = f"{max(len(header), _WIDTH.get(name, 0))}{spec}"
        columns.append((header, spec, lambda r, name=name: _objective_value(r, name)))
    width = max(len(r.arch) for r in front)
    head = [header.rjust(len(format(0, spec))) for header, spec, _ in columns]
    click.echo("  ".join([f"{'rank':>4}", f"{'architecture':<{width}}", *head]))
    for i, r in enumerate(front, start=1):
        click.echo("  ".join([f"{i:>4}", f"{r.arch:<{width}}", *(_fmt(get(r), spec) for _, spec, get in columns)]))
    if any(header == _PREDICTED for header, _, _ in columns):
        click.echo(_predicted_note(result))


def _report(result: Any, top: int | None, as_json: bool, flags: list[str]) -> None:
    if as_json:
        doc = result.to_dict()
        doc["top"] = [r.to_dict() for r in result.top(5 if top is None else top)]
        click.echo(json.dumps(doc, indent=2, default=str))
        return
    rows = result.top(5 if top is None else top) if len(result.objectives) == 1 else result.pareto
    n = len(result.history)
    pruned = sum(r.state == "PRUNED" for r in result.history)
    kind = "predicted (training-free)" if result.training_free else f"{n} real evaluations"
    if pruned:
        kind += f" ({pruned} stopped early)"
    click.echo(f"study {result.study_name}: {kind}; objectives {', '.join(result.objectives)}")
    if not rows:
        click.echo("no architecture was evaluated successfully")
    elif len(result.objectives) > 1:
        _front_table(result, top)
    else:
        width = max(len(r.arch) for r in rows)
        head = f"{'rank':>4}  {'architecture':<{width}}  {_PREDICTED:>17}  {'measured':>8}  {'params':>10}  FLOPs"
        click.echo(head)
        for i, r in enumerate(rows, start=1):
            measured = None if result.training_free else r.values.get("accuracy")
            click.echo(
                f"{i:>4}  {r.arch:<{width}}  {_fmt(r.predicted, '17.4f')}  {_fmt(measured, '8.4f')}  "
                f"{_fmt(r.params, '10,')}  {_fmt(r.flops, '13,')}"
            )
        if any(r.predicted is not None for r in rows):
            click.echo(_predicted_note(result))
    failed = sum(r.state == "FAIL" for r in result.history)
    if failed:
        click.echo(f"{failed} evaluation(s) failed; their reasons are in the study (trial user attr 'fail_reason')")
    click.echo(f"results  {result.output_dir / (result.study_name + '.json')}")
    click.echo(f"study    {result.storage} (study {result.study_name}; rerun the command to resume)")
    click.echo(f"workers  {_worker_command(result.study_name, result.storage, result.output_dir, flags)}")
    uri = result.tracking_uri
    if uri:
        ui = uri if uri.startswith(("http://", "https://")) else f"wsnas ui --tracking-uri '{uri}'"
        click.echo(f"mlflow   {ui}  (experiment {result.study_name})")
