"""Test-wide settings (Triton interprets its kernels when no GPU is present) and the shared fixtures."""

from __future__ import annotations

import os

# Triton reads TRITON_INTERPRET when a kernel module is imported, so it must be set before any test
# imports wsnas.kernels modules. On a machine with a GPU the real kernels are compiled instead.
try:
    import torch

    _has_cuda = torch.cuda.is_available()
except Exception:  # pragma: no cover - torch is a hard dependency
    _has_cuda = False
if not _has_cuda:
    os.environ.setdefault("TRITON_INTERPRET", "1")

# Searches track to MLflow by default; a fresh MLflow SQLite store costs seconds to create, so tests
# that do not test tracking run without it (tracking tests pass tracking= or --tracking-uri explicitly).
os.environ["WSNAS_TRACKING"] = "0"

# One torch thread for the whole suite, as in wsnas's own training processes. On a busy 2-core machine
# two intra-op threads spin-wait for each other: NB201 C=8 weight generation took 6-165 ms on two
# threads against about 6 ms on one, and batches of small ops were 2-20x slower.
torch.set_num_threads(1)


import socket  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
import urllib.request  # noqa: E402
from pathlib import Path  # noqa: E402

import pytest  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]


# -- CIFAR-10 --------------------------------------------------------------------------------------------
def cifar_candidates() -> list[Path]:
    """Where the CIFAR-10 tests look for a ``cifar-10-batches-py`` copy, in order: ``$WSNAS_CIFAR10_DIR``,
    then the ``shared/data/cifar10`` folder beside the checkout (where development machines and CI have it)."""
    env = os.environ.get("WSNAS_CIFAR10_DIR")
    return [*([Path(env)] if env else []), ROOT.parent / "shared" / "data" / "cifar10"]


@pytest.fixture(scope="session")
def cifar_dir() -> Path:
    """The CIFAR-10 folder; a test that asks for it is skipped, saying where it looked, when it is missing."""
    candidates = cifar_candidates()
    for path in candidates:
        if path.exists():
            return path
    pytest.skip(
        f"CIFAR-10 folder missing: looked for {' and '.join(str(p) for p in candidates)} "
        "(set WSNAS_CIFAR10_DIR or put a cifar-10-batches-py copy there)"
    )


# -- a real MLflow tracking server -------------------------------------------------------------------------


class MlflowServer:
    """``mlflow server`` on 127.0.0.1 with a SQLite store and served artifacts in ``root``; it can be
    stopped and started again on the same port and store (``uri`` stays valid)."""

    def __init__(self, root: Path) -> None:
        self.root = root
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = s.getsockname()[1]
        self.uri = f"http://127.0.0.1:{self.port}"
        self.proc: subprocess.Popen | None = None

    def start(self, timeout: float = 120.0) -> None:
        cmd = [
            sys.executable, "-m", "mlflow", "server", "--host", "127.0.0.1", "--port", str(self.port),
            "--workers", "1", "--backend-store-uri", f"sqlite:///{self.root / 'mlflow.db'}",
            "--artifacts-destination", str(self.root / "artifacts"),
        ]  # fmt: skip
        log = (self.root / "server.log").open("ab")
        self.proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, cwd=self.root)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"mlflow server exited with {self.proc.returncode}; see {self.root / 'server.log'}")
            try:
                with urllib.request.urlopen(f"{self.uri}/health", timeout=2) as r:
                    if r.status == 200:
                        return
            except OSError:
                time.sleep(0.5)
        self.stop()
        raise RuntimeError(f"mlflow server did not answer within {timeout} s; see {self.root / 'server.log'}")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None


@pytest.fixture(scope="session")
def mlflow_server(tmp_path_factory) -> MlflowServer:
    """A real MLflow tracking server for the session (started on first use)."""
    server = MlflowServer(tmp_path_factory.mktemp("mlflow"))
    server.start()
    yield server
    server.stop()


# -- the search tests' shared data: the NB201 zoo as a user's table, and a tiny fitted predictor ---------------
@pytest.fixture(scope="session")
def records() -> list:
    """The shipped NB201 CIFAR-10 zoo's records (1,255 cells)."""
    from wsnas import Zoo
    from wsnas.predictors import SHIPPED_DIR

    return Zoo.load(Path(SHIPPED_DIR) / "zoos" / "nb201-cifar10-onecycle.jsonl")


@pytest.fixture(scope="session")
def table(records, tmp_path_factory) -> Path:
    """The zoo as a user's CSV (columns arch, acc)."""
    import csv

    path = tmp_path_factory.mktemp("table") / "nb201.csv"
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["arch", "acc"])
        w.writerows([r.arch, r.val_acc] for r in records)
    return path


@pytest.fixture(scope="session")
def pred(records):
    """A tiny NB201 predictor fitted on 40 zoo records (the shipped default is not needed)."""
    from wsnas.predictors import WeightPredictor
    from wsnas.search_spaces import get_space

    sub = records[:40]
    p = WeightPredictor(get_space("nb201"), ensemble=2, size={"C": 2, "N": 1}, seed=0)
    return p.fit([r.arch for r in sub], [r.val_acc for r in sub], epochs=3, progress=False)
