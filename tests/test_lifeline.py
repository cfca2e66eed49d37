"""Issue 14: child processes die with their parent. ``kill -9`` of ``wsnas zoo build`` leaves none of its
training workers, forkserver or resource tracker running; SIGTERM to ``wsnas ui`` closes the MLflow
server's port and leaves no process; SIGTERM to ``wsnas search`` says so, gives back its claim and exits
143, and the same command resumes."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from wsnas._lifeline import is_alive

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")


def _children() -> dict[int, list[int]]:
    out: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_bytes()
        except OSError:
            continue
        ppid = int(stat[stat.rfind(b")") + 2 :].split()[1])
        out.setdefault(ppid, []).append(int(entry))
    return out


def descendants(pid: int) -> set[int]:
    """Every process below ``pid`` (children, their children, ...), read from /proc."""
    tree, found, todo = _children(), set(), [pid]
    while todo:
        for child in tree.get(todo.pop(), []):
            if child not in found:
                found.add(child)
                todo.append(child)
    return found


def _wait_gone(pids: set[int], timeout: float = 15.0) -> set[int]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        left = {p for p in pids if is_alive(p)}
        if not left:
            return left
        time.sleep(0.2)
    return {p for p in pids if is_alive(p)}


def _wait_for(predicate, timeout: float, what: str) -> None:  # noqa: ANN001
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.2)
    pytest.fail(f"timed out waiting for {what}")


def _wsnas(*args: str, cwd: Path) -> subprocess.Popen:
    code = "import sys; from wsnas.cli import main; sys.exit(main(prog_name='wsnas'))"
    return subprocess.Popen([sys.executable, "-c", code, *args], cwd=cwd, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)  # fmt: skip


def _kill_all(pids: set[int]) -> None:
    for p in pids:
        try:
            os.kill(p, signal.SIGKILL)
        except ProcessLookupError:
            pass


def test_kill_9_of_zoo_build_leaves_no_worker(tmp_path: Path) -> None:
    proc = _wsnas("zoo", "build", "--space", "nb201", "--task", "synthetic", "--n", "40", "--seed", "0",
                  "--workers", "2", "--out", str(tmp_path / "z.jsonl"), "--quiet", cwd=tmp_path)  # fmt: skip
    seen: set[int] = set()
    try:

        def two_workers() -> bool:
            seen.update(descendants(proc.pid))
            tree = _children()
            return sum(len(tree.get(c, [])) for c in descendants(proc.pid)) >= 2  # workers under the forkserver

        _wait_for(two_workers, 120, "two training workers")
        time.sleep(1.0)
        seen.update(descendants(proc.pid))
        proc.kill()
        proc.wait()
        left = _wait_gone(seen)
    finally:
        _kill_all({p for p in seen if is_alive(p)})
        proc.kill()
    assert len(seen) >= 3, seen
    assert not left, f"processes left running after kill -9 of the parent: {sorted(left)}"


def _port_open(port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(0.5)
        return s.connect_ex(("127.0.0.1", port)) == 0


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.parametrize("sig", [signal.SIGTERM])  # kill -9 too in benchmarks/probe.py (a minute more per run)
def test_signal_to_ui_leaves_no_server(tmp_path: Path, sig: int) -> None:
    import sqlite3

    store = tmp_path / "mlflow.db"
    sqlite3.connect(store).close()  # an empty SQLite file: MLflow creates its tables on start
    port = _free_port()
    proc = _wsnas("ui", "--tracking-uri", f"sqlite:///{store}", "--port", str(port), cwd=tmp_path)
    seen: set[int] = set()
    try:

        def listening() -> bool:
            seen.update(descendants(proc.pid))
            return _port_open(port) or proc.poll() is not None

        _wait_for(listening, 120, "the MLflow UI to listen")
        assert proc.poll() is None, proc.communicate()
        time.sleep(1.0)
        seen.update(descendants(proc.pid))
        proc.send_signal(sig)
        proc.wait(timeout=30)
        left = _wait_gone(seen)
    finally:
        _kill_all({p for p in seen if is_alive(p)})
        proc.kill()
    assert seen, "the UI started no process"
    assert not left, f"processes left running after signal {sig} to wsnas ui: {sorted(left)}"
    assert not _port_open(port)
    if sig == signal.SIGTERM:
        assert proc.returncode != 0


_SLOW_TABLE = (
    "import sys, time\n"
    "from wsnas._search import _evaluators as e\n"
    "call = e.TableEvaluator.__call__\n"
    "def slow(self, arch):\n"
    "    time.sleep(120)\n"
    "    return call(self, arch)\n"
    "e.TableEvaluator.__call__ = slow\n"
    "from wsnas.cli import main\n"
    "sys.exit(main(prog_name='wsnas'))\n"
)


def _states(db: Path) -> list[str]:
    import sqlite3

    if not db.is_file():
        return []
    con = sqlite3.connect(db, timeout=30)
    try:
        return [row[0] for row in con.execute("SELECT state FROM trials")]
    except sqlite3.OperationalError:  # the tables are not created yet
        return []
    finally:
        con.close()


def test_sigterm_to_search_releases_its_claim_and_resumes(table, tmp_path: Path) -> None:
    import json

    out = tmp_path / "runs"
    args = ["search", "--evaluator", f"table:{table}:arch:acc", "--predictor", "none", "--eval-budget", "2",
            "--output-dir", str(out), "--study-name", "s", "--no-tracking", "--quiet"]  # fmt: skip
    proc = subprocess.Popen([sys.executable, "-c", _SLOW_TABLE, *args], cwd=tmp_path, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)  # fmt: skip
    try:
        _wait_for(lambda: "RUNNING" in _states(out / "search.db") or proc.poll() is not None, 120, "an evaluation")
        assert proc.poll() is None, proc.communicate()
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=60)
    finally:
        proc.kill()
    assert proc.returncode == 143, err
    assert "terminated (SIGTERM): finished evaluations are stored" in err and "Traceback" not in err, err
    assert "RUNNING" not in _states(out / "search.db")
    code = "import sys; from wsnas.cli import main; sys.exit(main(prog_name='wsnas'))"
    again = subprocess.run([sys.executable, "-c", code, *args, "--json"], cwd=tmp_path, capture_output=True,
                           text=True, timeout=300)  # fmt: skip
    assert again.returncode == 0, again.stderr
    history = json.loads(again.stdout)["history"]
    assert len(history) == 2 and len({h["arch"] for h in history}) == 2
