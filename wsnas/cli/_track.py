"""The ``wsnas ui`` and ``wsnas track sync`` commands: look at searches in MLflow, and fill gaps in it.

Attached to the main command with ``main.add_command(ui_cmd)`` and ``main.add_command(track_group)``.
MLflow and Optuna load inside the commands only; bad input prints one ``error: ...`` line on stderr and
exits with status 2.

``wsnas ui`` prints its link once the server answers: the latest search's runs table in MLflow 3's
model-training mode, opening the saved view of its evaluations (accuracy, predicted, params and FLOPs as
columns), and the link of the search's parent run (its description, charts and artifacts); see
:func:`wsnas._search._tracking.search_links` (MLflow's REST API, no MLflow import).
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any

import click

from wsnas._lifeline import die_with_parent, guarded
from wsnas.cli._common import (
    CliError,
    ErrorLineGroup,
    Terminated,
    one_line_errors,
    raise_terminated,
    tracking_uri_option,
)

__all__ = ["ui_cmd", "track_group", "ui_command_line", "UI_ENV"]

#: the environment of the ``mlflow ui`` server unless the user's says otherwise: no job runner (MLflow 3's
#: GenAI jobs: five more processes that a search's UI does not use, and CPU while it starts) and no usage
#: reports over the network
UI_ENV = {"MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false", "MLFLOW_DISABLE_TELEMETRY": "true"}


def _tracking_uri(tracking_uri: str | None, output_dir: str) -> str:
    if tracking_uri:
        return tracking_uri
    from wsnas._search import default_tracking_uri

    return default_tracking_uri(output_dir)


def ui_command_line(store_uri: str, port: int) -> list[str]:
    """The ``mlflow ui`` command that serves ``store_uri`` on ``127.0.0.1:port`` (run it with :data:`UI_ENV`):
    one worker process, not MLflow's default four, for one person's browser."""
    return [sys.executable, "-m", "mlflow", "ui", "--backend-store-uri", store_uri, "--host", "127.0.0.1",
            "--port", str(port), "--workers", "1"]  # fmt: skip


def _has_fd(stream: Any) -> bool:
    try:
        stream.fileno()
    except (AttributeError, OSError, ValueError):  # a test runner's captured stream
        return False
    return True


def _answering(base: str, proc: subprocess.Popen[bytes]) -> bool:
    """Wait until the server at ``base`` answers ``/health`` (``True``) or ``proc`` ends (``False``)."""
    while proc.poll() is None:
        try:
            with urllib.request.urlopen(f"{base}/health", timeout=5) as r:
                if r.status == 200:
                    return True
        except (OSError, ValueError):
            pass
        time.sleep(0.25)
    return False


def _print_links(base: str, uri: str) -> None:
    from wsnas._search import search_links

    try:
        runs, parent = search_links(base)
    except (OSError, ValueError, KeyError) as exc:  # an old or odd server: its plain address still helps
        click.echo(f"(could not find the latest search: {type(exc).__name__}: {exc})", err=True)
        runs, parent = base, None
    click.echo(f"MLflow UI for {uri}: {runs}")
    if parent is not None:
        click.echo(f"  the search's run (description, charts, artifacts): {parent}")


def _free(port: int) -> bool:
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


@click.command("ui")
@click.option("--output-dir", default="wsnas-runs", show_default=True, help="The searches' run directory.")
@click.option("--tracking-uri", default=None, help="An MLflow store instead (default: $MLFLOW_TRACKING_URI or "
              "the SQLite store in --output-dir).")  # fmt: skip
@click.option("--port", type=int, default=5000, show_default=True, help="Port on 127.0.0.1.")
def ui_cmd(output_dir: str, tracking_uri: str | None, port: int) -> None:
    """Start the MLflow UI for the searches' tracking store, bound to 127.0.0.1; prints the URL.

    Runs until interrupted (Ctrl-C). A remote tracking server (http://...) already has its own UI: the
    command then only prints its URL.
    """
    with one_line_errors():
        uri = _tracking_uri(tracking_uri, output_dir)
        if uri.startswith(("http://", "https://")):
            from wsnas._search import search_links

            try:
                runs = search_links(uri.rstrip("/"), fix=False, timeout=5)[0]
            except (OSError, ValueError, KeyError):  # not answering now: its address is still the UI's
                runs = uri
            click.echo(f"MLflow UI: {runs}")
            return
        if uri.startswith("sqlite:///"):
            db = Path(uri[len("sqlite:///") :])
            if not db.is_file():
                raise CliError(f"no tracking store at {str(db)!r}: run `wsnas search` first, or pass --tracking-uri")
        if not 0 < port < 65536:
            raise CliError(f"--port must be in 1..65535, got {port}")
        if not _free(port):
            raise CliError(f"port {port} on 127.0.0.1 is in use; pick another with --port")
        click.echo(f"starting the MLflow UI on 127.0.0.1:{port}; its link follows once it answers", err=True)
        proc = subprocess.Popen(
            guarded(ui_command_line(uri, port)),
            env={**UI_ENV, **os.environ, "MLFLOW_TRACKING_URI": uri},
            stdout=sys.stderr.fileno() if _has_fd(sys.stderr) else None,  # stdout: the links only
            preexec_fn=lambda: die_with_parent(signal.SIGTERM),  # kill -9 of wsnas ui stops the server too
        )
    previous = signal.signal(signal.SIGTERM, raise_terminated)
    try:
        base = f"http://127.0.0.1:{port}"
        if _answering(base, proc):
            _print_links(base, uri)
            click.echo("Ctrl-C stops it", err=True)
        if proc.wait() != 0:
            click.echo(f"error: the MLflow UI server exited with status {proc.returncode}", err=True)
            sys.exit(2)
    except KeyboardInterrupt as exc:
        proc.terminate()  # the guard ends the server and every process it started
        proc.wait()
        click.echo("MLflow UI stopped", err=True)
        sys.exit(143 if isinstance(exc, Terminated) else 130)
    finally:
        signal.signal(signal.SIGTERM, previous)


@click.group("track", cls=ErrorLineGroup)
def track_group() -> None:
    """MLflow tracking of searches."""


@track_group.command("sync")
@click.option("--study", "study_name", required=True, help="The search's study name.")
@click.option("--storage", default=None, help="Its Optuna storage URL (default: OUTPUT_DIR/search.db).")
@click.option("--output-dir", default="wsnas-runs", show_default=True, help="The search's run directory.")
@tracking_uri_option
def sync_cmd(study_name: str, storage: str | None, output_dir: str, tracking_uri: str | None) -> None:
    """Log to MLflow every finished evaluation of a search that MLflow does not hold yet.

    Idempotent: evaluations already logged (child runs keyed STUDY/TRIAL) are skipped, so running it
    twice creates no duplicates. Use it after a search ran while the tracking server was down.
    """
    with one_line_errors():
        from wsnas._search import SearchTracker, open_storage, open_study, quiet_optuna, sync

        if storage is None and not (Path(output_dir) / "search.db").is_file():
            raise CliError(f"no search storage in {output_dir!r}: pass --storage or --output-dir")
        storage_obj, url = open_storage(storage, Path(output_dir), must_exist=study_name)
        with quiet_optuna():
            study, _ = open_study(storage_obj, study_name, [], None)
        tracker = SearchTracker(_tracking_uri(tracking_uri, output_dir), study_name)
        try:
            logged, total = sync(study, tracker, url)
        except RuntimeError as exc:
            raise CliError(str(exc)) from None
    click.echo(f"{study_name}: logged {logged} evaluation(s); MLflow now holds all {total} ({tracker.tracking_uri})")
