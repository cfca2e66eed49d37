"""Child processes die with the process that started them, even when it is killed (``kill -9``).

A worker pool's processes (training, predictor scoring) and the ``mlflow ui`` server would otherwise be
re-parented to PID 1 and go on: training for nobody, holding memory, a port. Two lifelines, both set up
inside the child:

- ``PR_SET_PDEATHSIG`` (Linux): the kernel sends the child a signal when its parent dies. A pool's workers
  started by forkserver have the forkserver as parent, not the process that wants them, so
- a watchdog thread polls the process the child belongs to (``owner``) and ends the child when it is gone.

>>> pool = ProcessPoolExecutor(..., initializer=die_with, initargs=(os.getpid(),))
>>> subprocess.Popen(cmd, start_new_session=True, preexec_fn=die_with_parent)
"""

from __future__ import annotations

import os
import signal
import sys
import threading
import time

__all__ = ["die_with_parent", "die_with", "is_alive"]

_PR_SET_PDEATHSIG = 1


def die_with_parent(sig: int = signal.SIGKILL) -> None:
    """Ask the kernel to send ``sig`` to this process when its parent dies (Linux; elsewhere nothing).

    Safe in a ``preexec_fn`` (between fork and exec: only ctypes and a system call)."""
    if not sys.platform.startswith("linux"):
        return
    try:
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, int(sig), 0, 0, 0)
    except (OSError, AttributeError):  # no libc prctl: the watchdog (die_with) still works
        return


def is_alive(pid: int) -> bool:
    """Whether process ``pid`` runs (a zombie, killed but not yet reaped, counts as gone)."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            stat = f.read()
    except FileNotFoundError:
        return False
    except OSError:  # no /proc: ask the kernel
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return False
        except PermissionError:
            return True
        return True
    state = stat[stat.rfind(b")") + 2 : stat.rfind(b")") + 3]
    return state not in (b"Z", b"X")


def die_with(owner: int, interval: float = 0.5) -> None:
    """Tie this process to process ``owner``: it is killed when ``owner`` (or its own parent) dies.

    For a pool's ``initializer``: sets the parent-death signal and starts a daemon thread that checks
    ``owner`` every ``interval`` seconds."""
    die_with_parent()
    if owner == os.getpid():
        return

    def watch() -> None:
        while is_alive(owner):
            time.sleep(interval)
        os.kill(os.getpid(), signal.SIGKILL)

    threading.Thread(target=watch, name="wsnas-lifeline", daemon=True).start()


def guarded(command: list[str]) -> list[str]:
    """``command`` run under a guard process (:func:`_guard`): when the guard's parent dies or the guard is
    told to stop (SIGTERM, SIGINT), the command and every process it started are ended. For servers
    that start their own children (``mlflow ui``: uvicorn, huey); start it with
    ``preexec_fn=lambda: die_with_parent(signal.SIGTERM)`` so that the guard hears of its parent's death."""
    return [sys.executable, "-m", "wsnas._lifeline", *command]


def _guard(command: list[str], grace: float = 5.0) -> int:
    import subprocess

    parent = os.getppid()
    stop = threading.Event()

    def on_signal(signum: int, frame: object) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    # its own process group, so that its children can be ended with it; it dies if the guard is killed
    child = subprocess.Popen(command, start_new_session=True, preexec_fn=lambda: die_with_parent(signal.SIGTERM))
    while child.poll() is None and not stop.is_set() and is_alive(parent):
        stop.wait(0.2)
    if child.poll() is not None:
        return child.returncode
    for sig in (signal.SIGTERM, signal.SIGKILL):
        try:
            os.killpg(child.pid, sig)
        except ProcessLookupError:
            break
        deadline = time.monotonic() + grace
        while time.monotonic() < deadline and _group_alive(child.pid):
            child.poll()
            time.sleep(0.1)
        if not _group_alive(child.pid):
            break
    child.poll()
    return 143


def _group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # zombies of the group (the child, until reaped) count as gone
    for entry in os.listdir("/proc") if os.path.isdir("/proc") else []:
        if entry.isdigit():
            try:
                stat = open(f"/proc/{entry}/stat", "rb").read()
            except OSError:
                continue
            rest = stat[stat.rfind(b")") + 2 :].split()
            if int(rest[2]) == pgid and rest[0] not in (b"Z", b"X"):
                return True
    return not os.path.isdir("/proc")


if __name__ == "__main__":
    die_with_parent(signal.SIGTERM)
    sys.exit(_guard(sys.argv[1:]))
