from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from wsnas import ZooFileError
from wsnas.search_spaces import NB201
from wsnas.training import Zoo, ZooRecord, build_zoo, sample_distinct, synthetic, train

SPACE = NB201()
TASK = synthetic(n=128, epochs=1, batch_size=32, size={"C": 4, "N": 1})


def _record(seed: int = 0) -> ZooRecord:
    arch = sample_distinct(SPACE, 1, seed)[0]
    return ZooRecord.from_result(train(SPACE, arch, TASK, seed=seed))


def test_append_load_round_trip_and_torn_last_line(tmp_path: Path) -> None:
    path = tmp_path / "sub" / "zoo.jsonl"
    assert Zoo.load(path) == []
    zoo = Zoo(path)
    first = zoo.append(_record(0))
    assert Zoo.load(path) == [first] and first.key == ("nb201", first.arch_hash, 0, TASK.fingerprint)
    doc = json.loads(path.read_text())
    assert {"arch", "arch_hash", "space", "seed", "task", "task_fingerprint", "val_acc", "val_acc_curve"} <= set(doc)
    assert {"val_loss_curve", "train_seconds", "params", "flops", "wsnas_version", "timestamp"} <= set(doc)
    # a crash in the middle of a write leaves a torn line: ignored with a warning, removed by the next append
    with open(path, "ab") as fh:
        fh.write(first.to_json().encode()[:40])
    with pytest.warns(RuntimeWarning, match="torn last line"):
        assert Zoo.load(path) == [first]
    second = _record(1)
    with pytest.warns(RuntimeWarning, match="removing a torn last line"):
        zoo.append(second)
    assert Zoo.load(path) == [first, second]
    assert path.read_bytes().count(b"\n") == 2
    # a bad line that is not the last is corruption, not a torn append
    path.write_text("not json\n" + first.to_json() + "\n")
    with pytest.raises(ZooFileError, match="line 1 is not a zoo record"):
        Zoo.load(path)


def test_build_continues_the_same_sample_sequence(tmp_path: Path) -> None:
    out = tmp_path / "zoo.jsonl"
    three = build_zoo(SPACE, TASK, 3, 7, out, workers=1, progress=False)
    five = build_zoo(SPACE, TASK, 5, 7, out, workers=1, progress=False)
    assert five[:3] == three and len(Zoo.load(out)) == 5
    assert [r.arch_hash for r in five] == [a.hash for a in sample_distinct(SPACE, 5, 7)]
    assert len({r.arch_hash for r in five}) == 5


def test_train_seed_retrains_the_same_sample_under_another_seed(tmp_path: Path) -> None:
    out = tmp_path / "zoo.jsonl"
    first = build_zoo(SPACE, TASK, 3, 7, out, workers=1, progress=False)
    again = build_zoo(SPACE, TASK, 3, 7, out, train_seed=8, workers=1, progress=False)
    assert [r.arch_hash for r in again] == [r.arch_hash for r in first]
    assert {r.seed for r in first} == {7} and {r.seed for r in again} == {8}
    assert len(Zoo.load(out)) == 6  # both seeds kept side by side
    assert [r.val_loss for r in again] != [r.val_loss for r in first]  # another seed, other weights
    assert build_zoo(SPACE, TASK, 3, 7, out, train_seed=8, workers=1, progress=False) == again  # resumes
    assert len(Zoo.load(out)) == 6
    with pytest.raises(ValueError, match="train_seed must be an int"):
        build_zoo(SPACE, TASK, 3, 7, out, train_seed=1.5, workers=1, progress=False)  # type: ignore[arg-type]


_BUILD = """
import sys
from wsnas.search_spaces import NB201
from wsnas.training import build_zoo, synthetic
if __name__ == "__main__":
    task = synthetic(n=256, epochs=2, batch_size=16, size={"C": 4, "N": 1})
    build_zoo(NB201(), task, 10, 3, sys.argv[1], workers=1, progress=False)
"""


def test_build_resumes_after_sigkill_without_duplicates(tmp_path: Path) -> None:
    out = tmp_path / "zoo.jsonl"
    script = tmp_path / "build.py"
    script.write_text(_BUILD)
    proc = subprocess.Popen([sys.executable, str(script), str(out)], stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and proc.poll() is None:
            if out.exists() and out.read_bytes().count(b"\n") >= 1:
                break
            time.sleep(0.01)
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        proc.wait()
        proc.stderr.close()
    assert proc.returncode == -signal.SIGKILL, "the build finished before it could be killed"
    before = Zoo.load(out)
    assert 1 <= len(before) < 10
    task = synthetic(n=256, epochs=2, batch_size=16, size={"C": 4, "N": 1})
    records = build_zoo(SPACE, task, 10, 3, out, workers=1, progress=False)
    after = Zoo.load(out)
    keys = [r.key for r in after]
    assert len(after) == 10 and len(set(keys)) == 10
    assert after[: len(before)] == before  # old records untouched, only the missing ones trained
    assert {r.arch_hash for r in records} == {a.hash for a in sample_distinct(SPACE, 10, 3)}
