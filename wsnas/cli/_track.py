"""The ``wsnas ui`` and ``wsnas track sync`` commands: look at searches in MLflow, and fill gaps in it.

Attached to the main command with ``main.add_command(ui_cmd)`` and ``main.add_command(track_group)``.
MLflow and Optuna load inside the commands only; bad input prints one ``error: ...`` line on stderr and
exits with status 2.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
from pathlib import Path

import click

from wsnas._lifeline import die_with_parent, guarded
from wsnas.cli._common import CliError, ErrorLineGroup, one_line_errors, tracking_uri_option

__all__ = ["ui_cmd", "track_group", "ui_command_line"]


def _tracking_uri(tracking_uri: str | None, output_dir: str) -> str:
    if tracking_uri:
        return tracking_uri
    from wsnas._search import default_tracking_uri

    return default_tracking_uri(output_dir)


def ui_command_line(store_uri: str, port: int) -> list[str]:
    """The ``mlflow ui`` command that serves ``store_uri`` on ``127.0.0.1:port``."""
    return [sys.executable, "-m", "mlflow", "ui", "--backend-store-uri", store_uri, "--host", "127.0.0.1",
            "--port", str(port)]  # fmt: skip


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
            click.echo(f"MLflow UI: {uri}")
            return
        if uri.startswith("sqlite:///"):
            db = Path(uri[len("sqlite:///") :])
            if not db.is_file():
                raise CliError(f"no tracking store at {str(db)!r}: run `wsnas search` first, or pass --tracking-uri")
        if not 0 < port < 65536:
            raise CliError(f"--port must be in 1..65535, got {port}")
        if not _free(port):
            raise CliError(f"port {port} on 127.0.0.1 is in use; pick another with --port")
        click.echo(f"MLflow UI for {uri}: http://127.0.0.1:{port}  (Ctrl-C stops it)")
        proc = subprocess.Popen(
            guarded(ui_command_line(uri, port)),
            env={**os.environ, "MLFLOW_TRACKING_URI": uri},
            preexec_fn=lambda: die_with_parent(signal.SIGTERM),  # kill -9 of wsnas ui stops the server too
        )
    previous = signal.signal(signal.SIGTERM, _raise_interrupt)
    try:
        proc.wait()
    except KeyboardInterrupt as exc:
        proc.terminate()  # the guard ends the server and every process it started
        proc.wait()
        click.echo("MLflow UI stopped", err=True)
        sys.exit(143 if isinstance(exc, _Terminated) else 130)
    finally:
        signal.signal(signal.SIGTERM, previous)


class _Terminated(KeyboardInterrupt):
    """SIGTERM, raised where Ctrl-C would be, so that both stop the same way."""


def _raise_interrupt(signum: int, frame: object) -> None:
    raise _Terminated()


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
