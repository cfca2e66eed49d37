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


import glob  # noqa: E402
import shutil  # noqa: E402
import signal  # noqa: E402
import socket  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
import urllib.request  # noqa: E402
from collections.abc import Iterator  # noqa: E402
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
        from wsnas._lifeline import die_with_parent, guarded  # a killed pytest (SIGTERM, -9) ends the server too
        from wsnas.cli._track import UI_ENV  # as `wsnas ui`: no job runner (eight idle processes), no telemetry

        env = {**os.environ, **UI_ENV}
        self.proc = subprocess.Popen(guarded(cmd), stdout=log, stderr=subprocess.STDOUT, cwd=self.root, env=env,
                                     preexec_fn=lambda: die_with_parent(signal.SIGTERM))  # fmt: skip
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


# -- a real PostgreSQL server ---------------------------------------------------------------------------------
def _pg_bin(name: str) -> str | None:
    found = sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"))
    return found[-1] if found else shutil.which(name)


@pytest.fixture(scope="session")
def postgres() -> Iterator[str]:
    """A PostgreSQL server of its own on 127.0.0.1 (run as ``nobody`` when the tests run as root): its URL.
    Skipped only when the PostgreSQL binaries are not installed."""
    initdb, pg_ctl = _pg_bin("initdb"), _pg_bin("pg_ctl")
    if initdb is None or pg_ctl is None:
        pytest.skip("PostgreSQL is not installed (initdb/pg_ctl not found); .ci/run installs it")
    root = Path(tempfile.mkdtemp(prefix="wsnas-pg-"))  # not under pytest's 0700 folder: nobody must reach it
    data = root / "data"
    data.mkdir()
    prefix: list[str] = []
    if os.geteuid() == 0:  # postgres refuses to run as root
        os.chmod(root, 0o755)
        shutil.chown(data, user="nobody")
        prefix = ["runuser", "-u", "nobody", "--"]
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    run = {"check": True, "capture_output": True, "text": True, "timeout": 120}
    subprocess.run([*prefix, initdb, "-D", str(data), "-U", "postgres", "--auth=trust", "--no-sync"], **run)
    opts = f"-p {port} -h 127.0.0.1 -k {data} -F -c max_connections=100"
    subprocess.run([*prefix, pg_ctl, "-D", str(data), "-l", str(data / "log"), "-w", "-o", opts, "start"], **run)
    try:
        yield f"postgresql://postgres@127.0.0.1:{port}/postgres"
    finally:
        subprocess.run([*prefix, pg_ctl, "-D", str(data), "-m", "immediate", "stop"], capture_output=True)
        shutil.rmtree(root, ignore_errors=True)


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


# -- a synthetic NB201 zoo and tiny predictors: the predictor tests and the predictor commands' tests ----------
def _conv_count(arch) -> int:  # noqa: ANN001
    return sum(d["op"].startswith("nor_conv") for _, _, d in arch.graph.edges(data=True))


def _zoo_record(arch, acc: float, **fields):  # noqa: ANN001, ANN202
    from wsnas.search_spaces import get_space
    from wsnas.training import ZooRecord

    record = {
        "space": "nb201", "arch": get_space("nb201").to_string(arch), "arch_hash": arch.hash, "seed": 0,
        "task": "synthetic", "task_fingerprint": "0123456789abcdef", "val_acc": acc, "val_loss": 1.0 - acc,
        "val_acc_curve": [acc], "val_loss_curve": [1.0 - acc], "train_loss_curve": [1.0], "train_seconds": 0.5,
        "params": 10, "flops": 10, "diverged": False, "init": "kaiming_normal", "wsnas_version": "0.1.0",
        "timestamp": "2025-01-01T00:00:00+00:00",
    }  # fmt: skip
    return ZooRecord(**{**record, **fields})


@pytest.fixture(scope="module")
def synthetic_zoo(tmp_path_factory) -> Path:
    """A zoo file of 60 NB201 cells whose ``val_acc`` is a known function of the cell (its conv-edge count)
    plus seeded noise."""
    import numpy as np

    from wsnas.search_spaces import get_space
    from wsnas.training import Zoo, sample_distinct

    path = tmp_path_factory.mktemp("zoo") / "zoo.jsonl"
    zoo, rng = Zoo(path), np.random.default_rng(0)
    for arch in sample_distinct(get_space("nb201"), 60, 0):
        acc = float(np.clip(0.3 + 0.1 * _conv_count(arch) + rng.normal(0.0, 0.03), 0.0, 1.0))
        zoo.append(_zoo_record(
            arch, acc, task_fingerprint="0" * 16, val_loss_curve=[1 - acc], train_seconds=1.0, params=1000,
            flops=1000, init="generated", timestamp="2026-01-01T00:00:00+00:00",
        ))  # fmt: skip
    return path


@pytest.fixture(scope="module")
def saved_predictor(tmp_path_factory):
    """A tiny NB201 predictor fitted on synthetic targets and saved: ``(path, predictor)``."""
    import numpy as np

    from wsnas.predictors import EncoderConfig, WeightPredictor
    from wsnas.search_spaces import get_space
    from wsnas.training import sample_distinct

    nb201 = get_space("nb201")
    archs = sample_distinct(nb201, 16, 0)
    y = np.array([_conv_count(a) for a in archs]) + np.random.default_rng(0).normal(0, 0.3, len(archs))
    pred = WeightPredictor(
        nb201, encoder=EncoderConfig(hidden=8, layers=1), ensemble=2, seed=0, size={"C": 2, "N": 1}, device="cpu"
    )
    pred.fit(archs, y, epochs=3, batch_size=8, target_name="val_acc", progress=False)
    path = tmp_path_factory.mktemp("transfer") / "nb201.safetensors"
    pred.save(path)
    return path, pred


#: ``wsnas predictor train`` options of a tiny, fast predictor
TRAIN_OPTIONS = ("--ensemble", "2", "--epochs", "4", "--hidden", "8", "--layers", "1", "-s", "C=4", "-s", "N=1",
                 "--quiet")  # fmt: skip


@pytest.fixture(scope="module")
def trained_by_cli(tmp_path_factory):
    """A zoo of 24 architectures whose accuracy grows with the cell's conv count, and a predictor trained on
    it by ``wsnas predictor train`` (``TRAIN_OPTIONS``): ``(folder, archs, result, TRAIN_OPTIONS)``; the
    folder holds ``zoo.jsonl`` and the predictor ``p.st``."""
    import numpy as np
    from click.testing import CliRunner

    from wsnas.cli._predictor import predictor_group
    from wsnas.search_spaces import get_space
    from wsnas.training import Zoo, sample_distinct

    folder = tmp_path_factory.mktemp("cli")
    archs = sample_distinct(get_space("nb201"), 24, 0)
    noise = np.random.default_rng(0).normal(0, 0.02, len(archs))
    zoo = Zoo(folder / "zoo.jsonl")
    for a, eps in zip(archs, noise):
        zoo.append(_zoo_record(a, 0.3 + 0.1 * _conv_count(a) + float(eps)))
    args = ["train", "--zoo", str(folder / "zoo.jsonl"), "--out", str(folder / "p.st"), *TRAIN_OPTIONS]
    return folder, archs, CliRunner().invoke(predictor_group, args), TRAIN_OPTIONS


@pytest.fixture
def only_nb201_shipped(monkeypatch, tmp_path) -> Path:
    """The shipped predictors as if only ``nb201`` were installed (no multi-space one): the folder."""
    import wsnas.predictors._persist as persist

    folder = tmp_path / "shipped"
    folder.mkdir()
    (folder / "nb201.safetensors").symlink_to(persist.SHIPPED_DIR / "nb201.safetensors")
    monkeypatch.setattr(persist, "SHIPPED_DIR", folder)
    return folder
