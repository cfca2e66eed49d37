"""``wsnas predictor train`` and ``wsnas predict`` end to end on a small synthetic zoo, and their errors."""

from __future__ import annotations

import csv
import io
import subprocess
import sys

import click
import numpy as np
import pytest
from click.testing import CliRunner

from wsnas import ZooRecord
from wsnas.cli._predict import predict_cmd
from wsnas.cli._predictor import predictor_group
from wsnas.predictors import load
from wsnas.search_spaces import get_space
from wsnas.training import Zoo, sample_distinct

SPACE = get_space("nb201")
TRAIN = ["--ensemble", "2", "--epochs", "4", "--hidden", "8", "--layers", "1", "-s", "C=4", "-s", "N=1", "--quiet"]


def cli() -> click.Group:
    group = click.Group("wsnas")
    group.add_command(predictor_group)
    group.add_command(predict_cmd)
    return group


def run(*args: str, stdin: str | None = None):
    return CliRunner().invoke(cli(), list(args), input=stdin)


def _record(arch, acc: float) -> ZooRecord:
    return ZooRecord(
        space="nb201", arch=SPACE.to_string(arch), arch_hash=arch.hash, seed=0, task="synthetic",
        task_fingerprint="0123456789abcdef", val_acc=acc, val_loss=1.0 - acc, val_acc_curve=[acc],
        val_loss_curve=[1.0 - acc], train_loss_curve=[1.0], train_seconds=0.5, params=10, flops=10,
        diverged=False, init="kaiming_normal", wsnas_version="0.1.0", timestamp="2025-01-01T00:00:00+00:00",
    )  # fmt: skip


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A zoo of 24 architectures whose accuracy grows with the cell's conv count, and a predictor trained on it."""
    folder = tmp_path_factory.mktemp("cli")
    archs = sample_distinct(SPACE, 24, 0)
    noise = np.random.default_rng(0).normal(0, 0.02, len(archs))
    zoo = Zoo(folder / "zoo.jsonl")
    for a, eps in zip(archs, noise):
        convs = sum(d["op"].startswith("nor_conv") for _, _, d in a.graph.edges(data=True))
        zoo.append(_record(a, 0.3 + 0.1 * convs + float(eps)))
    result = run("predictor", "train", "--zoo", str(folder / "zoo.jsonl"), "--out", str(folder / "p.st"), *TRAIN)
    return folder, archs, result


def test_train_writes_a_predictor_and_prints_the_validation_spearman(trained) -> None:
    folder, _, result = trained
    assert result.exit_code == 0, result.output
    assert "validation Spearman " in result.output and "(19 train, 5 validation)" in result.output
    card = load(folder / "p.st").card
    assert card["ensemble"] == 2 and card["encoding"]["size"] == {"C": 4, "N": 1}
    assert card["training_data"]["zoos"][0]["tasks"] == [{"task": "synthetic", "fingerprint": "0123456789abcdef"}]


def test_predict_writes_rows_in_input_order(trained) -> None:
    folder, archs, _ = trained
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


def test_predict_reads_stdin_and_writes_stdout(trained) -> None:
    folder, archs, _ = trained
    strings = [SPACE.to_string(a) for a in archs[5:8]]
    result = run("predict", "--space", "nb201", "--predictor", str(folder / "p.st"), "--input", "-", "--output", "-",
                 stdin="\n".join(strings) + "\n")  # fmt: skip
    assert result.exit_code == 0, result.output
    rows = list(csv.reader(io.StringIO(result.stdout)))
    assert rows[0] == ["arch", "score", "uncertainty"] and [r[0] for r in rows[1:]] == strings


def _one_line_error(result, fragment: str) -> None:
    assert result.exit_code == 2, result.output
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: ") and fragment in lines[0], result.output


def test_errors_are_one_line_with_exit_status_2(trained) -> None:
    folder, archs, _ = trained
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
    _one_line_error(
        run("predictor", "train", "--zoo", str(folder / "missing.jsonl"), "--out", str(folder / "x.st"), *TRAIN),
        "zoo file",
    )
    _one_line_error(
        run("predictor", "train", "--zoo", str(folder / "bad.txt"), "--out", str(folder / "x.st"), *TRAIN),
        "line 1 is not a zoo record",
    )
    _one_line_error(
        run("predictor", "train", "--zoo", str(folder / "zoo.jsonl"), "--out", str(folder / "x.st"), "--space",
            "nb999", *TRAIN),
        "unknown search space",
    )  # fmt: skip
    assert not (folder / "o.csv").exists() and not (folder / "x.st").exists()


def test_importing_the_commands_does_not_import_torch() -> None:
    code = "import sys, wsnas.cli._predict; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "False"
