"""The README's bash blocks run as written, in order, in one working directory, each command exiting 0.

The working directory stands for a checkout's root: ``predictors/`` (the shipped zoos) is linked into it
and ``../shared/data/cifar10`` beside it is the CIFAR-10 copy of ``conftest.cifar_dir``. Commands run with
``bash`` and the ``wsnas`` and ``python`` of this interpreter's environment, tracking on (as a user gets it).
Two kinds of change are made, each listed in ``SUBSTITUTIONS`` and each required to match the README as often
as it says (so that the two cannot drift apart silently):

* scale: a command too costly for the suite runs smaller (fewer cells, evaluations, epochs);
* servers: the PostgreSQL and MLflow server URLs become the suite's own local servers.

``wsnas ui`` serves until stopped: it runs on a free port until its MLflow server has started, then gets
Ctrl-C (tests/test_lifeline.py waits for the page itself).
The two set-up blocks at the top (a virtual environment and ``pip install``) are what CI itself runs
(``.ci/run``); they are checked to be there and skipped.
"""

from __future__ import annotations

import os
import re
import resource
import shlex
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"

#: the set-up blocks, skipped by their content: CI runs exactly these (a fresh venv, then pip and pytest)
SETUP = (
    "python3 -m venv .venv && . .venv/bin/activate && pip install torch==2.13.0 && pip install . && wsnas search",
    'python3 -m venv .venv && . .venv/bin/activate && pip install torch==2.13.0 && pip install -e ".[test]" && pytest',
)

#: (README text, what runs instead, how many times the README's bash blocks hold the text, checked).
#: ``{postgres}``, ``{mlflow}`` and ``{ui_port}`` are filled in with the suite's servers and a free port.
SUBSTITUTIONS = (
    # scale: the zoo (200 CIFAR-10 cells of 5,000 images -> 10 cells of 500 images)
    ("--subset 5000", "--subset 500", 1),
    ("--n 200 --seed 0 --out zoo.jsonl", "--n 10 --seed 0 --out zoo.jsonl --workers 1", 1),
    # scale: predictors (tiny encoders, few epochs; 64 cells scored instead of all 15,625)
    ("--n 2000 --out pre.safetensors", "--n 16 --epochs 1 --ensemble 1 --hidden 8 --layers 1 --out pre.safetensors", 1),
    ("--pretrained pre.safetensors", "--pretrained pre.safetensors --epochs 3", 1),
    ("n.enumerate()", "list(n.enumerate())[:64]", 1),
    ("--budgets 50,100,200,all", "--budgets all --ensemble 1 --epochs 3 --hidden 8 --layers 1", 1),
    ("--n 25 --seed 0", "--n 4 --seed 0 --epochs 2", 1),
    ("--epochs 3 --ensemble 2 --out both", "--epochs 1 --ensemble 1 --hidden 8 --layers 1 --out both", 1),
    # scale: searches (2-3 real evaluations instead of 20-100); the trained export: 1 epoch, and neither
    # TorchScript nor torch.export (the first export writes both)
    ("wsnas search          #", "wsnas search --eval-budget 2 #", 1),
    ("--eval-budget 50", "--eval-budget 3", 1),
    ("--eval-budget 100", "--eval-budget 2", 1),
    ("wsnas search --tracking-uri", "wsnas search --eval-budget 3 --tracking-uri", 1),  # resumes the first: 1 more
    ("--epochs 5", "--epochs 1 --no-torchscript --no-torch-export", 1),
    # scale: "Search your own data" (CIFAR-10 searched by two workers with a pruner: 3 evaluations of
    # 2 epochs on 300 images at 8x8)
    ("--epochs 4 --resolution 16 \\\n    --subset 4000", "--epochs 2 --resolution 8 \\\n    --subset 300", 1),
    ("--eval-budget 24", "--eval-budget 3", 1),
    # servers: the suite's PostgreSQL and MLflow servers; the UI on a free port
    ("postgresql://user@db-host/wsnas", "{postgres}", 2),
    ("http://mlflow-host:5000", "{mlflow}", 1),
    ("wsnas ui       ", "wsnas ui --port {ui_port}", 1),  # and stopped once it serves (see _serve_then_stop)
)


def bash_blocks(text: str) -> list[str]:
    """The README's ```bash blocks, in order."""
    return re.findall(r"```bash\n(.*?)```", text, flags=re.S)


def commands(block: str) -> list[str]:
    """``block`` split into whole commands: a line continues while it ends in ``\\`` or leaves a quote open;
    blank and comment-only lines are dropped."""
    out: list[str] = []
    pending = ""
    for line in block.splitlines():
        pending = f"{pending}\n{line}" if pending else line
        if pending.endswith("\\"):
            continue
        try:
            words = shlex.split(pending, comments=True)
        except ValueError:  # an open quote: the command goes on on the next line
            continue
        if words:
            out.append(pending)
        pending = ""
    assert not pending, f"unterminated command at the end of a README bash block: {pending!r}"
    return out


def substitute(blocks: list[str], values: dict[str, object]) -> list[str]:
    """``blocks`` with every ``SUBSTITUTIONS`` entry applied; each must match as often as it says."""
    joined = "\n".join(blocks)
    wrong = {old: (joined.count(old), n) for old, _, n in SUBSTITUTIONS if joined.count(old) != n}
    assert not wrong, f"README bash blocks no longer match SUBSTITUTIONS (found, expected): {wrong}"
    for old, new, _ in SUBSTITUTIONS:
        blocks = [b.replace(old, new.format(**values)) for b in blocks]
    return blocks


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _children(pid: int) -> list[int]:
    """The child processes of ``pid`` (Linux /proc)."""
    try:
        return [int(c) for c in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
    except OSError:
        return []


def _running(pids: list[int], wait: float = 10.0) -> list[int]:
    """Those of ``pids`` still running after up to ``wait`` s: a process in its last moments (signalled, not yet
    gone) or a zombie left for init to reap has stopped and does not count."""

    def alive(pid: int) -> bool:
        try:
            return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
        except (OSError, IndexError):
            return False

    deadline = time.monotonic() + wait
    while (left := [p for p in pids if alive(p)]) and time.monotonic() < deadline:
        time.sleep(0.1)
    return left


def _serve_then_stop(cmd: str, cwd: Path, env: dict[str, str], timeout: float = 120.0) -> None:
    """Run the serving command ``cmd`` (``wsnas ui``) until it has started its server under a guard process,
    then press Ctrl-C: it must stop cleanly (exit 130) and take the server with it."""
    # a user's terminal delivers Ctrl-C; a suite started in the background (`nohup ... &`) inherits SIGINT ignored,
    # which exec keeps: give the command the default disposition a terminal gives it
    proc = subprocess.Popen(["bash", "-c", f"exec {cmd}"], cwd=cwd, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))  # fmt: skip
    server: list[int] = []
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline and proc.poll() is None and not server:
            server = [s for guard in _children(proc.pid) for s in _children(guard)]
            time.sleep(0.2)
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGINT)
        try:
            output, _ = proc.communicate(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            output, _ = proc.communicate()
    assert server, f"{cmd!r} started no server within {timeout} s (exit {proc.returncode}):\n{output[-3000:]}"
    assert proc.returncode == 130 and "MLflow UI stopped" in output, f"{cmd!r} did not stop on Ctrl-C:\n{output}"
    assert not _running(server), f"{cmd!r} left its server running"


def test_substitutions_and_setup_blocks_match_the_readme() -> None:
    blocks = bash_blocks(README.read_text())
    assert [b.strip() for b in blocks[: len(SETUP)]] == list(SETUP)
    substitute(blocks, {"postgres": "P", "mlflow": "M", "ui_port": 1})
    assert commands("a \\\n  b\nc 'd\ne' # f\n# g\n\n") == ["a \\\n  b", "c 'd\ne' # f"]


def test_readme_bash_blocks_run(tmp_path, cifar_dir, postgres, mlflow_server) -> None:
    blocks = bash_blocks(README.read_text())[len(SETUP) :]
    ui_port = _free_port()
    blocks = substitute(blocks, {"postgres": postgres, "mlflow": mlflow_server.uri, "ui_port": ui_port})
    work = tmp_path / "checkout"
    work.mkdir()
    (work / "predictors").symlink_to(ROOT / "predictors")
    (tmp_path / "shared" / "data").mkdir(parents=True)
    (tmp_path / "shared" / "data" / "cifar10").symlink_to(cifar_dir)
    env = {k: v for k, v in os.environ.items() if k not in ("WSNAS_TRACKING", "MLFLOW_TRACKING_URI")}
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    env["OMP_NUM_THREADS"] = "1"  # torch on one thread, as in the rest of the suite (see conftest.py)
    timings = []
    for i, block in enumerate(blocks, start=len(SETUP) + 1):
        for cmd in commands(block):
            start, cpu = time.monotonic(), _children_cpu()
            if cmd.startswith("wsnas ui --port"):
                _serve_then_stop(cmd, work, env)
            else:
                done = subprocess.run(["bash", "-e", "-o", "pipefail", "-c", cmd], cwd=work, env=env,
                                      capture_output=True, text=True, timeout=300)  # fmt: skip
                assert done.returncode == 0, (
                    f"README bash block {i}: {cmd!r} exited {done.returncode}\n"
                    f"stdout: {done.stdout[-2000:]}\nstderr: {done.stderr[-3000:]}"
                )
            timings.append((time.monotonic() - start, _children_cpu() - cpu, cmd.splitlines()[0][:90]))
    print("\n".join(f"{s:6.1f} s {c:6.1f} CPU-s  {cmd}" for s, c, cmd in timings))
    scores = (work / "scores.csv").read_text().splitlines()
    assert scores[0] == "arch,score,uncertainty" and len(scores) == 1 + 64  # the 64 cells the table leaves
    assert (work / "winner" / "model.pt2").is_file() and (work / "winner-digits" / "model.safetensors").is_file()
    assert (work / "runs" / "cifar-1.json").is_file() and (work / "winner-cifar" / "model.ts").is_file()
