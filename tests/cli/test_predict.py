"""``wsnas predict`` end to end with a predictor that ``wsnas predictor train`` made on a small synthetic zoo
(the ``trained_by_cli`` fixture), and its errors."""

from __future__ import annotations

import csv
import io
import subprocess
import sys

import click
import numpy as np
from click.testing import CliRunner

from wsnas.cli._predict import predict_cmd
from wsnas.predictors import load
from wsnas.search_spaces import get_space
from wsnas.testing import assert_one_line_error as _one_line_error

SPACE = get_space("nb201")


def cli() -> click.Group:
    group = click.Group("wsnas")
    group.add_command(predict_cmd)
    return group


def run(*args: str, stdin: str | None = None):
    return CliRunner().invoke(cli(), list(args), input=stdin)


def test_predict_writes_rows_in_input_order(trained_by_cli) -> None:
    folder, archs, _, _ = trained_by_cli
    strings = [SPACE.to_string(a) for a in archs[:5]]
    (folder / "in.txt").write_text("# candidates\n" + "\n".join(strings[:2]) + "\n\n" + "\n".join(strings[2:]) + "\n")
    out = folder / "out.csv"
    result = run("predict", "--space", "nb201", "--predictor", str(folder / "p.st"), "--input", str(folder / "in.txt"),
                 "--output", str(out))  # fmt: skip
    assert result.exit_code == 0, result.output
    rows = list(csv.DictReader(out.read_text().splitlines()))
    assert [r["arch"] for r in rows] == strings
    expected = load(folder / "p.st").predict(strings)
    assert np.allclose([float(r["score"]) for r in rows], expected.score, rtol=1e-6, atol=1e-9)
    assert np.allclose([float(r["uncertainty"]) for r in rows], expected.uncertainty, rtol=1e-6, atol=1e-9)


def test_predict_reads_stdin_and_writes_stdout(trained_by_cli) -> None:
    folder, archs, _, _ = trained_by_cli
    strings = [SPACE.to_string(a) for a in archs[5:8]]
    result = run("predict", "--space", "nb201", "--predictor", str(folder / "p.st"), "--input", "-", "--output", "-",
                 stdin="\n".join(strings) + "\n")  # fmt: skip
    assert result.exit_code == 0, result.output
    rows = list(csv.reader(io.StringIO(result.stdout)))
    assert rows[0] == ["arch", "score", "uncertainty"] and [r[0] for r in rows[1:]] == strings


def test_errors_are_one_line_with_exit_status_2(trained_by_cli, only_nb201_shipped) -> None:
    folder, archs, _, _ = trained_by_cli
    good = SPACE.to_string(archs[0])
    (folder / "bad.txt").write_text(f"{good}\n{good}\n|nope~0|\n")
    (folder / "good.txt").write_text(good + "\n")
    (folder / "card.json").write_text('{"space": "nb201"}')
    pred = ["--predictor", str(folder / "p.st")]
    io_args = ["--input", str(folder / "good.txt"), "--output", str(folder / "o.csv")]
    _one_line_error(run("predict", "--space", "nb999", *pred, *io_args), "unknown search space 'nb999'")
    _one_line_error(
        run("predict", "--space", "nb201", *pred, "--input", str(folder / "missing.txt"), "--output", "-"),
        "cannot read input file",
    )
    _one_line_error(
        run("predict", "--space", "nb201", *pred, "--input", str(folder / "bad.txt"), "--output", "-"), "line 3"
    )
    _one_line_error(
        run("predict", "--space", "nb201", "--predictor", str(folder / "card.json"), *io_args),
        "not a readable safetensors file",
    )
    macro = get_space("macro")  # no predictor ships for it
    (folder / "macro.txt").write_text(macro.to_string(macro.sample(np.random.default_rng(0))) + "\n")
    no_default = ["--input", str(folder / "macro.txt"), "--output", str(folder / "o.csv")]
    _one_line_error(run("predict", "--space", "macro", *no_default), "no shipped predictor named 'macro'")
    assert not (folder / "o.csv").exists()


def test_importing_the_commands_does_not_import_torch() -> None:
    code = "import sys, wsnas.cli._predict; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "False"
