"""Several worker processes share one study (PostgreSQL, SQLite, journal file); a SIGKILLed worker resumes.

The PostgreSQL tests start a throwaway server (initdb + pg_ctl on 127.0.0.1, a free port) and are
skipped only when the PostgreSQL binaries are not installed.
"""

from __future__ import annotations

import csv
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import optuna
import pytest

import wsnas
from wsnas._search._store import is_token
from wsnas.predictors import WeightPredictor
from wsnas.search_spaces import get_space

ZOO = Path(wsnas.predictors.SHIPPED_DIR) / "zoos" / "nb201-cifar10-onecycle.jsonl"
SPACE = get_space("nb201")
BUDGET = 12

# One worker: a table lookup that takes ``delay`` seconds, so that the workers overlap.
WORKER = """
import csv, json, sys, time
import torch
torch.set_num_threads(1)
import wsnas
from wsnas.search_spaces import get_space

cfg = json.loads(sys.argv[1])
with open(cfg["table"]) as f:
    table = {row["arch"]: float(row["acc"]) for row in csv.DictReader(f)}
space = get_space("nb201")
table = {space.from_string(k).hash: v for k, v in table.items()}

def evaluate(arch):
    time.sleep(cfg["delay"])
    return table[arch.hash]

evaluate.can_evaluate = lambda arch: arch.hash in table  # the search proposes only the table's cells

wsnas.search("nb201", evaluator=evaluate, eval_budget=cfg["budget"], predictor=cfg["predictor"],
             storage=cfg["storage"], study_name="shared", output_dir=cfg["out"], batch_size=8,
             stale_after=cfg.get("stale_after", 60.0), progress=False)
print("done")
"""


@pytest.fixture(scope="module")
def setup(tmp_path_factory) -> dict:
    """A table of 1,255 zoo cells, a tiny predictor file and the worker script."""
    root = tmp_path_factory.mktemp("workers")
    records = wsnas.Zoo.load(ZOO)
    with open(root / "table.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["arch", "acc"])
        for r in records:
            w.writerow([r.arch, r.val_acc])
    sub = records[:40]
    pred = WeightPredictor(SPACE, ensemble=2, size={"C": 2, "N": 1}, seed=0)
    pred.fit([r.arch for r in sub], [r.val_acc for r in sub], epochs=3, progress=False)
    pred.save(root / "tiny.safetensors")
    (root / "worker.py").write_text(WORKER)
    accs = {r.arch_hash: r.val_acc for r in records}
    return {"root": root, "accs": accs}


def _start(setup: dict, storage: str, out: Path, **extra) -> subprocess.Popen:
    root = setup["root"]
    cfg = {"table": str(root / "table.csv"), "predictor": str(root / "tiny.safetensors"), "storage": storage,
           "out": str(out), "budget": BUDGET, "delay": 0.25, **extra}  # fmt: skip
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.Popen(
        [sys.executable, str(root / "worker.py"), json.dumps(cfg)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )


def _real(storage: str) -> list[optuna.trial.FrozenTrial]:
    from wsnas._search._store import open_storage

    backend, _ = open_storage(storage, Path("."))
    study = optuna.load_study(study_name="shared", storage=backend)
    return [t for t in study.get_trials(deepcopy=False) if is_token(t)]


def _check_shared_study(storage: str, accs: dict[str, float]) -> list[optuna.trial.FrozenTrial]:
    tokens = _real(storage)
    done = [t for t in tokens if t.state == optuna.trial.TrialState.COMPLETE]
    assert len(done) == BUDGET  # the budget exactly: no evaluation lost, none over
    hashes = [t.user_attrs["arch_hash"] for t in done]
    assert len(set(hashes)) == BUDGET  # no architecture twice
    assert sorted(t.user_attrs["slot"] for t in done) == list(range(BUDGET))
    for t in done:  # every stored result is the evaluator's
        assert t.values[0] == pytest.approx(accs[t.user_attrs["arch_hash"]])
    assert not [t for t in tokens if t.state == optuna.trial.TrialState.FAIL and "fail_reason" in t.user_attrs]
    return done


def _run_three(setup: dict, storage: str, out: Path) -> None:
    procs = [_start(setup, storage, out) for _ in range(3)]
    for p in procs:
        stdout, stderr = p.communicate(timeout=240)
        assert p.returncode == 0 and "done" in stdout, stderr[-3000:]
    done = _check_shared_study(storage, setup["accs"])
    workers = {t.user_attrs["worker"] for t in done}
    assert len(workers) >= 2, "the three workers did not share the work"


# -- PostgreSQL (the ``postgres`` fixture is in tests/conftest.py) ---------------------------------------
def test_three_workers_share_one_study_on_postgresql(setup, postgres, tmp_path) -> None:
    _run_three(setup, postgres, tmp_path)


def test_three_workers_share_one_study_on_sqlite(setup, tmp_path) -> None:
    _run_three(setup, f"sqlite:///{tmp_path / 'shared.db'}", tmp_path)


def test_three_workers_share_one_study_on_a_journal_file(setup, tmp_path) -> None:
    _run_three(setup, f"journal:{tmp_path / 'shared.log'}", tmp_path)


def test_sigkill_mid_search_then_rerun_resumes_without_repeat_or_loss(setup, tmp_path) -> None:
    storage = f"sqlite:///{tmp_path / 'kill.db'}"
    proc = _start(setup, storage, tmp_path, delay=0.5)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        try:
            done = [t for t in _real(storage) if t.state == optuna.trial.TrialState.COMPLETE]
        except (KeyError, Exception):  # the study does not exist yet
            done = []
        if len(done) >= 3:
            break
        time.sleep(0.2)
    proc.send_signal(signal.SIGKILL)
    proc.communicate()
    before = {t.number: (t.user_attrs["arch_hash"], t.values) for t in _real(storage) if t.state.name == "COMPLETE"}
    assert 3 <= len(before) < BUDGET
    rerun = _start(setup, storage, tmp_path, delay=0.0)
    stdout, stderr = rerun.communicate(timeout=240)
    assert rerun.returncode == 0, stderr[-3000:]
    done = _check_shared_study(storage, setup["accs"])
    after = {t.number: (t.user_attrs["arch_hash"], t.values) for t in done}
    assert all(after[n] == v for n, v in before.items())  # the finished evaluations were kept as they were
    stale = [t for t in _real(storage) if t.user_attrs.get("outcome") == "stale"]
    assert len(stale) <= 1  # the evaluation in flight when the worker died, given back (not counted)


OPENER = """
import sys, time
from pathlib import Path
from wsnas._search._store import open_storage
start = float(sys.argv[2])
time.sleep(max(0.0, start - time.time()))  # all openers start together
storage, _ = open_storage(sys.argv[1], Path("."))
print(len(storage.get_all_studies()))
"""


def test_processes_opening_a_new_sqlite_file_at_once_all_succeed(tmp_path) -> None:
    """Optuna creates its tables, then the alembic version row: openers that race used to collide."""
    url = f"sqlite:///{tmp_path / 'new.db'}"
    start = time.time() + 5.0  # past every interpreter's start-up
    procs = [
        subprocess.Popen([sys.executable, "-c", OPENER, url, str(start)], stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, text=True, cwd=tmp_path)
        for _ in range(6)
    ]
    for p in procs:
        out, err = p.communicate(timeout=120)
        assert p.returncode == 0, err[-2000:]
        assert out.strip() == "0"


def test_join_waits_for_a_study_that_a_search_creates_later(tmp_path) -> None:
    """``join(wait=)`` keeps looking for a study not there yet; without ``wait`` it fails at once."""
    import threading

    storage = f"sqlite:///{tmp_path / 'late.db'}"
    with pytest.raises(wsnas.StorageError, match="does not exist"):
        wsnas.join("late", storage, output_dir=tmp_path / "w0", evaluator=lambda a: 0.5, tracking=False)

    def evaluate(arch) -> float:
        return len(str(arch)) % 7 / 7

    searcher = threading.Timer(
        1.5, lambda: wsnas.search("nb201", evaluator=evaluate, eval_budget=3, predictor=None, storage=storage,
                                  study_name="late", output_dir=tmp_path / "s", tracking=False, progress=False)
    )  # fmt: skip
    searcher.start()
    start = time.monotonic()
    result = wsnas.join("late", storage, output_dir=tmp_path / "w1", evaluator=evaluate, tracking=False,
                        progress=False, wait=60)  # fmt: skip
    searcher.join()
    assert time.monotonic() - start >= 1.0  # it did wait
    assert result.study_name == "late" and len(result.history) >= 3
    with pytest.raises(wsnas.SearchConfigError, match="wait"):
        wsnas.join("late", storage, output_dir=tmp_path / "w2", evaluator=evaluate, wait=-1)
