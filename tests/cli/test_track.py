"""``wsnas track sync`` and ``wsnas ui``: their one-line errors, and the UI of a remote tracking server.
(``track sync`` filling what a dead server missed is in tests/search/test_tracking.py.)"""

from __future__ import annotations

from click.testing import CliRunner

from wsnas.cli import main


def test_track_sync_and_ui_errors(tmp_path) -> None:
    out = CliRunner().invoke(main, ["track", "sync", "--study", "x", "--output-dir", str(tmp_path)])
    assert out.exit_code == 2 and "error: no search storage in" in out.output
    out = CliRunner().invoke(main, ["ui", "--output-dir", str(tmp_path)])
    assert out.exit_code == 2 and "error: no tracking store at" in out.output
    out = CliRunner().invoke(main, ["ui", "--tracking-uri", "http://127.0.0.1:5999"])
    assert out.exit_code == 0 and "MLflow UI: http://127.0.0.1:5999" in out.output
