"""Writing a file atomically: a new temporary file beside the target, fsync, then a rename over it.

A reader sees the old file or the new one, never a part of one; after a crash the target is the old
file (at worst a stray ``.NAME.*.tmp`` stays beside it, which nothing reads). The temporary file is
created with mode ``0o666`` less the process umask (``0644`` under umask ``022``), the mode of any new
file, and keeps it even when a writer replaces the temporary file with its own (safetensors writes a
file of mode ``0600`` and renames it over the path it is given); the rename keeps nothing of the file it
replaces (mode, owner, links).

>>> atomic_write_text("out/result.json", json.dumps(doc))
>>> with atomic_path("model.safetensors") as tmp:   # for writers that take a path
...     save_file(tensors, str(tmp))
"""

from __future__ import annotations

import contextlib
import os
import secrets
import stat
from collections.abc import Iterator
from pathlib import Path

__all__ = ["atomic_path", "atomic_write_bytes", "atomic_write_text"]


def _new_temp(target: Path) -> tuple[Path, int]:
    """Create an empty, new file beside ``target``; its path and its mode (``0o666`` less the umask)."""
    for _ in range(100):
        tmp = target.with_name(f".{target.name}.{secrets.token_hex(4)}.tmp")
        try:
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)  # the kernel applies the umask
        except FileExistsError:
            continue
        try:
            return tmp, stat.S_IMODE(os.fstat(fd).st_mode)  # read, not computed: os.umask() would change it
        finally:
            os.close(fd)
    raise FileExistsError(f"cannot create a temporary file beside {str(target)!r}")


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike[str]) -> Iterator[Path]:
    """A new, empty temporary file beside ``path`` to write inside the block (by its path).

    When the block ends normally the file is flushed to disk (fsync) and renamed over ``path``; when it
    raises, the file is removed and ``path`` is untouched.

    Raises:
        OSError: the folder of ``path`` does not exist or is not writable (nothing is left behind).
    """
    target = Path(path)
    tmp, mode = _new_temp(target)
    try:
        yield tmp
        fd = os.open(tmp, os.O_RDWR)
        try:
            os.fchmod(fd, mode)  # the writer may have replaced the file with one of another mode
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, target)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def atomic_write_bytes(path: str | os.PathLike[str], data: bytes) -> Path:
    """Write ``data`` to ``path`` atomically (see :func:`atomic_path`); returns the path."""
    with atomic_path(path) as tmp, open(tmp, "wb") as f:
        f.write(data)
    return Path(path)


def atomic_write_text(path: str | os.PathLike[str], text: str, *, encoding: str = "utf-8") -> Path:
    """Write ``text`` to ``path`` atomically, encoded as is (no newline translation); returns the path."""
    return atomic_write_bytes(path, text.encode(encoding))
