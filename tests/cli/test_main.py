"""The ``wsnas`` command itself: answering ``--help`` imports none of the heavy libraries."""

from __future__ import annotations

import subprocess
import sys


def test_help_does_not_import_heavy_libraries() -> None:
    code = (
        "import sys, wsnas.cli; print(sorted(m for m in ('torch', 'optuna', 'mlflow', 'triton') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"
