"""wsnas runs without Triton installed (it is the ``gpu`` extra): the reference kernels serve the CPU."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

tomllib = pytest.importorskip("tomllib")  # Python >= 3.11 (CI runs 3.11)

ROOT = Path(__file__).resolve().parents[2]

SCRIPT = """
import sys
sys.modules["triton"] = None  # import triton now raises ImportError, as on a machine without it
import numpy as np, torch
from wsnas.kernels import triton_available
from wsnas.predictors import EncoderConfig, WeightPredictor
from wsnas.search_spaces import NB201
assert not triton_available()
space = NB201()
archs = [space.sample(np.random.default_rng(i)) for i in range(8)]
pred = WeightPredictor(space, encoder=EncoderConfig(hidden=4, layers=1), ensemble=1, size={"C": 2, "N": 1})
pred.fit(archs, list(range(8)), epochs=1, val_fraction=0, progress=False)
print(len(pred.predict(archs).score))
"""


def test_generation_encoding_and_scoring_run_with_triton_missing() -> None:
    env = {"WSNAS_KERNELS": "auto", "PATH": "/usr/bin:/bin"}
    out = subprocess.run([sys.executable, "-c", SCRIPT], capture_output=True, text=True, env=env, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip() == "8"


def test_triton_is_an_extra_not_a_core_dependency() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    assert not any(d.startswith("triton") for d in project["dependencies"])
    assert any(d.startswith("triton") for d in project["optional-dependencies"]["gpu"])
    assert any(d.startswith("triton") for d in project["optional-dependencies"]["test"])
