"""What every ``wsnas`` command module shares: the one-line error, the ``--size KEY=VALUE`` parser, the
options that several commands take (each declared once here) and the task they describe together
(``--task``/``--evaluator train:TASK``, ``--data-dir``, ``-s``, the recipe options: :func:`task_from_options`).

Only click and the standard library load here: ``wsnas --help`` must not import torch.
"""

from __future__ import annotations

import contextlib
import os
import signal
import sys
from collections.abc import Callable, Iterator, Mapping
from typing import TYPE_CHECKING, Any, TypeVar

import click

if TYPE_CHECKING:
    from wsnas.training import Task

__all__ = [
    "CliError",
    "ErrorLineGroup",
    "one_line_errors",
    "os_error_line",
    "usage_line",
    "positive_top",
    "parse_size",
    "size_option",
    "recipe_options",
    "recipe_given",
    "task_from_options",
    "quiet_option",
    "zoo_files_option",
    "check_zoo_files",
    "tracking_uri_option",
    "no_tracking_option",
    "tracking_choice",
    "Terminated",
    "stops_cleanly",
    "raise_terminated",
]

F = TypeVar("F", bound=Callable[..., Any])


class CliError(click.ClickException):
    """A bad-input error: printed as one ``error: ...`` line on stderr, exit status 2."""

    exit_code = 2

    def show(self, file: Any = None) -> None:
        click.echo(f"error: {self.format_message()}", err=True)


class Terminated(KeyboardInterrupt):
    """SIGTERM, raised where Ctrl-C would be (see :func:`stops_cleanly`), so that both stop the same way."""


def raise_terminated(signum: int, frame: object) -> None:
    """A SIGTERM handler that raises :class:`Terminated`."""
    raise Terminated()


@contextlib.contextmanager
def stops_cleanly(message: Callable[[], str] | str) -> Iterator[None]:
    """Ctrl-C (exit 130) and SIGTERM (exit 143) inside end the command with one line on stderr:
    ``interrupted: MESSAGE`` (or ``terminated (SIGTERM): ...``); ``message`` may be a function called then."""
    previous = signal.signal(signal.SIGTERM, raise_terminated)
    try:
        yield
    except KeyboardInterrupt as exc:
        signal.signal(signal.SIGTERM, signal.SIG_IGN)  # a second SIGTERM does not cut the message short
        how = "terminated (SIGTERM)" if isinstance(exc, Terminated) else "interrupted"
        click.echo(f"\n{how}: {message() if callable(message) else message}", err=True)
        sys.exit(143 if isinstance(exc, Terminated) else 130)
    finally:
        signal.signal(signal.SIGTERM, previous)


def os_error_line(exc: OSError) -> str:
    """``'PATH': Permission denied`` (the file and the cause) of an ``OSError`` that names a file."""
    where = repr(str(exc.filename))
    if exc.filename2 is not None:
        where += f" -> {str(exc.filename2)!r}"
    return f"{where}: {exc.strerror or exc}"


@contextlib.contextmanager
def one_line_errors() -> Iterator[None]:
    """Turn wsnas's own errors (:class:`wsnas.WsnasError`) raised inside into a :class:`CliError`, and so
    an ``OSError`` about a file (unreadable, a read-only folder, a folder where a file should be): one line
    naming the file and the cause."""
    from wsnas._errors import WsnasError

    try:
        yield
    except WsnasError as exc:
        raise CliError(str(exc)) from None
    except OSError as exc:
        if exc.filename is None and not isinstance(exc, PermissionError):
            raise
        raise CliError(os_error_line(exc) if exc.filename is not None else str(exc)) from None


def usage_line(exc: click.UsageError, ctx: click.Context) -> CliError:
    """click's usage error (``Usage:`` / ``Try`` / ``Error:``) as one line with the help hint; ``ctx`` is
    the group's context it came through (the command's own when click did not attach it)."""
    msg = exc.format_message().strip()
    msg = msg[:1].lower() + msg[1:]
    msg = msg[:-1] if msg.endswith(".") else msg
    if exc.ctx is not None:
        path = exc.ctx.command_path
    elif ctx.invoked_subcommand:
        path = f"{ctx.command_path} {ctx.invoked_subcommand}"
    else:
        path = ctx.command_path
    return CliError(f"{msg} (try '{path} --help')")


class ErrorLineGroup(click.Group):
    """A click group whose commands report wsnas's own errors, and click's usage errors, as one line and
    exit status 2 (a bare group still prints its help)."""

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        try:
            return super().parse_args(ctx, args)
        except click.exceptions.NoArgsIsHelpError:
            raise
        except click.UsageError as exc:
            raise usage_line(exc, ctx) from None

    def invoke(self, ctx: click.Context) -> Any:
        try:
            with one_line_errors():
                return super().invoke(ctx)
        except click.exceptions.NoArgsIsHelpError:
            raise
        except click.UsageError as exc:
            raise usage_line(exc, ctx) from None


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


# -- options shared by several commands ----------------------------------------------------------------
def size_option(help: str) -> Callable[[F], F]:  # noqa: A002 - click's own keyword
    """``-s/--size KEY=VALUE`` (repeatable) into ``size_items``; read it with :func:`parse_size`."""
    return click.option("-s", "--size", "size_items", multiple=True, metavar="KEY=VALUE", help=help)


#: the recipe options of a task: keyword -> (flag, type, help); each lands in the keyword ``recipe_NAME``
_RECIPE: dict[str, tuple[str, Any, str]] = {
    "epochs": ("--epochs", int, "Recipe: training epochs."),
    "resolution": ("--resolution", int, "Recipe: input resolution (images resized once at load time)."),
    "subset": ("--subset", int, "Recipe: number of training images."),
    "val_size": ("--val-size", int, "Recipe: validation images held out of the training data."),
    "batch_size": ("--batch-size", int, "Recipe: batch size."),
    "optimizer": ("--optimizer", click.Choice(["sgd", "adamw"]), "Recipe: optimizer."),
    "lr": ("--lr", float, "Recipe: (peak) learning rate."),
    "weight_decay": ("--weight-decay", float, "Recipe: weight decay."),
    "schedule": ("--schedule", click.Choice(["onecycle", "cosine", "constant"]), "Recipe: lr schedule."),
    "seed": ("--task-seed", int, "Recipe: seed of the train/validation split."),
}


def recipe_options(flags: Mapping[str, str] | None = None) -> Callable[[F], F]:
    """Every recipe option (``--epochs``, ``--resolution``, ...), each into the keyword ``recipe_NAME``;
    ``flags`` renames some (``{"batch_size": "--train-batch-size"}`` where ``--batch-size`` means another
    thing). Turn them into a task with :func:`task_from_options`."""

    def decorate(fn: F) -> F:
        for name, (flag, kind, text) in reversed(_RECIPE.items()):
            fn = click.option((flags or {}).get(name, flag), f"recipe_{name}", type=kind, help=text)(fn)
        return fn

    return decorate


def recipe_given(options: Mapping[str, Any]) -> list[str]:
    """The flags of the recipe options that were given (a value other than ``None``) in ``options``."""
    return [_RECIPE[k[7:]][0] for k, v in options.items() if k.startswith("recipe_") and v is not None]


def task_from_options(
    task_name: str, data_dir: str | None, size_items: tuple[str, ...], options: Mapping[str, Any]
) -> Task:
    """The built-in task ``task_name`` with ``--data-dir``, the network size ``-s KEY=VALUE`` and the recipe
    options in ``options`` (the ``recipe_*`` keywords of :func:`recipe_options`; others are ignored).

    Raises:
        CliError: cifar10 without a data folder, or an invalid recipe. wsnas.UnknownTask,
            wsnas.DatasetError: no such task, or its data is missing.
    """
    from wsnas.training import get_task

    recipe = {k[7:]: v for k, v in options.items() if k.startswith("recipe_") and v is not None}
    size = parse_size(size_items)
    if size:
        recipe["size"] = size
    if data_dir is not None:
        recipe["data_dir"] = data_dir
    elif task_name.lower() == "cifar10":
        raise CliError("task 'cifar10' needs --data-dir DIR: the folder holding 'cifar-10-batches-py' (or that folder)")
    try:
        return get_task(task_name, **recipe)
    except (TypeError, ValueError) as exc:
        raise CliError(f"invalid recipe for task {task_name!r}: {exc}") from None


#: ``--quiet``: no progress bar
quiet_option = click.option("--quiet", is_flag=True, help="No progress bar.")
#: ``--zoo FILE`` (repeatable, required) into ``zoos``; check them with :func:`check_zoo_files`
zoo_files_option = click.option(
    "--zoo", "zoos", multiple=True, required=True, metavar="FILE", help="Zoo file (repeatable)."
)
#: ``--tracking-uri`` of the commands that log a search to MLflow
tracking_uri_option = click.option(
    "--tracking-uri", default=None,
    help="MLflow tracking URI (default: $MLFLOW_TRACKING_URI, else sqlite:///OUTPUT_DIR/mlflow.db).",
)  # fmt: skip
#: ``--no-tracking``; combine it with ``--tracking-uri`` by :func:`tracking_choice`
no_tracking_option = click.option("--no-tracking", is_flag=True, help="Do not log to MLflow.")


def positive_top(ctx: click.Context, param: click.Parameter, value: int) -> int:
    """``--top`` callback: a positive count."""
    if value is not None and value < 1:
        raise CliError(f"--top must be a positive count, got {value}")
    return value


def check_zoo_files(zoos: tuple[str, ...]) -> None:
    """Every ``--zoo`` file exists (else a :class:`CliError` naming the first missing one)."""
    for z in zoos:
        if not os.path.isfile(z):
            raise CliError(f"zoo file {z!r} does not exist")


def tracking_choice(uri: str | None, off: bool) -> bool | str | None:
    """``tracking=`` of :func:`wsnas.search` from ``--tracking-uri`` and ``--no-tracking``."""
    if off and uri:
        raise CliError("--tracking-uri and --no-tracking exclude each other")
    return False if off else uri

