"""``wsnas zoo build`` and ``wsnas zoo show``: a small zoo built and shown, and one-line errors."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from click.testing import CliRunner

from wsnas.cli._zoo import zoo_group
from wsnas.training import Zoo


def _one_line_error(args: list[str], fragment: str) -> None:
    result = CliRunner().invoke(zoo_group, args)
    assert result.exit_code == 2, result.output
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: ") and fragment in lines[0], result.output


def test_cli_build_show_and_one_line_errors(tmp_path: Path) -> None:
    out = str(tmp_path / "z.jsonl")
    common = ["--n", "2", "--seed", "0", "--out", out]
    _one_line_error(["build", "--space", "nb999", "--task", "synthetic", *common], "unknown search space 'nb999'")
    _one_line_error(["build", "--space", "nb201", "--task", "mnist", *common], "unknown task 'mnist'")
    _one_line_error(["build", "--space", "nb201", "--task", "cifar10", *common], "needs --data-dir")
    missing = str(tmp_path / "nowhere")
    _one_line_error(
        ["build", "--space", "nb201", "--task", "cifar10", "--data-dir", missing, *common], "nowhere' does not exist"
    )
    _one_line_error(["build", "--space", "nb201", "--task", "synthetic", "--epochs", "0", *common], "epochs must be")
    _one_line_error(["show", str(tmp_path / "none.jsonl")], "does not exist")
    args = ["build", "--space", "nb201", "--task", "synthetic", "--subset", "64", "-s", "C=4", "-s", "N=1"]
    result = CliRunner().invoke(zoo_group, [*args, *common, "--workers", "1", "--quiet"])
    assert result.exit_code == 0, result.output
    records = Zoo.load(out)
    assert len(records) == 2 and all(r.task == "synthetic" for r in records)
    shown = CliRunner().invoke(zoo_group, ["show", out])
    assert shown.exit_code == 0 and "2 records" in shown.output
    best = max(records, key=lambda r: r.val_acc)
    assert f"{best.val_acc:.4f}" in shown.output and best.arch in shown.output


def test_cli_modules_import_no_torch() -> None:
    code = "import sys, wsnas.cli._zoo, wsnas.training; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "False"
