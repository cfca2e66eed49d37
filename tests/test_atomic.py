"""The one atomic writer (wsnas._atomic) and the files written through it: new files get a new file's
mode (0o666 less the umask), whatever the file they replace had, and a failed write leaves nothing."""

from __future__ import annotations

import os
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest

from wsnas._atomic import atomic_path, atomic_write_bytes, atomic_write_text


@pytest.fixture
def umask_022() -> Iterator[None]:
    old = os.umask(0o022)
    try:
        yield
    finally:
        os.umask(old)


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_new_and_overwritten_files_are_0644_under_umask_022(tmp_path: Path, umask_022: None) -> None:
    new = atomic_write_text(tmp_path / "new.txt", "héllo\n")
    assert new.read_bytes() == "héllo\n".encode() and _mode(new) == 0o644
    old = tmp_path / "old.txt"
    old.write_text("old")
    old.chmod(0o644)
    atomic_write_bytes(old, b"new")
    assert old.read_bytes() == b"new" and _mode(old) == 0o644
    private = tmp_path / "private.txt"  # nothing of the replaced file is kept, its mode included
    private.write_text("old")
    private.chmod(0o600)
    atomic_write_text(private, "new")
    assert _mode(private) == 0o644
    assert sorted(p.name for p in tmp_path.iterdir()) == ["new.txt", "old.txt", "private.txt"]  # no temporaries


def test_the_mode_follows_the_umask(tmp_path: Path) -> None:
    old = os.umask(0o077)
    try:
        path = atomic_write_text(tmp_path / "a.txt", "x")
    finally:
        os.umask(old)
    assert _mode(path) == 0o600


def test_a_failed_write_leaves_the_old_file_and_no_temporary(tmp_path: Path) -> None:
    path = tmp_path / "keep.txt"
    path.write_text("old")
    with pytest.raises(RuntimeError, match="half way"), atomic_path(path) as tmp:
        tmp.write_text("half")
        raise RuntimeError("half way")
    assert path.read_text() == "old" and [p.name for p in tmp_path.iterdir()] == ["keep.txt"]
    with pytest.raises(OSError):
        atomic_write_text(tmp_path / "no" / "such" / "dir.txt", "x")
    assert [p.name for p in tmp_path.iterdir()] == ["keep.txt"]


def test_every_atomic_writer_of_wsnas_uses_it(tmp_path: Path, umask_022: None, pred) -> None:
    from click.testing import CliRunner

    from wsnas._search._result import write_json
    from wsnas.cli._predict import predict_cmd
    from wsnas.predictors import save

    saved = save(pred, tmp_path / "p.safetensors")
    write_json(tmp_path / "r.json", {"a": 1})
    archs = tmp_path / "archs.txt"
    archs.write_text("|nor_conv_3x3~0|+|nor_conv_3x3~0|avg_pool_3x3~1|+|skip_connect~0|nor_conv_3x3~1|skip_connect~2|\n")
    out = tmp_path / "scores.csv"
    args = ["--space", "nb201", "--predictor", str(saved), "--input", str(archs), "--output", str(out), "--quiet"]
    result = CliRunner().invoke(predict_cmd, args)
    assert result.exit_code == 0, result.output
    for path in (saved, tmp_path / "r.json", out):
        assert _mode(path) == 0o644, path
