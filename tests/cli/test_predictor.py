"""``wsnas predictor train``, ``eval`` and ``finetune``: each on a small synthetic zoo, and their one-line errors.

``predictor train`` runs once per module in the ``trained_by_cli`` fixture (tests/conftest.py); ``eval``
reads the ``synthetic_zoo`` fixture and ``finetune`` transfers the ``saved_predictor`` fixture to NB101.
"""

from __future__ import annotations

import json
import math

import click
import pytest
from click.testing import CliRunner

from wsnas import ZooRecord
from wsnas.cli._predictor import eval_cmd, predictor_group
from wsnas.predictors import load
from wsnas.search_spaces import get_space
from wsnas.testing import assert_one_line_error as _one_line_error
from wsnas.training import Zoo, sample_distinct

NB201, NB101 = get_space("nb201"), get_space("nb101")


# -- wsnas predictor train ---------------------------------------------------------------------------------
def cli() -> click.Group:
    group = click.Group("wsnas")
    group.add_command(predictor_group)
    return group


def test_train_writes_a_predictor_and_prints_the_validation_spearman(trained_by_cli) -> None:
    folder, _, result, _ = trained_by_cli
    assert result.exit_code == 0, result.output
    assert "validation Spearman " in result.output and "(19 train, 5 validation)" in result.output
    card = load(folder / "p.st").card
    assert card["ensemble"] == 2 and card["encoding"]["size"] == {"C": 4, "N": 1}
    assert card["training_data"]["zoos"][0]["tasks"] == [{"task": "synthetic", "fingerprint": "0123456789abcdef"}]
    weight = card["prior"]["spaces"]["nb201"]["weight"]  # the size prior is on by default and reported
    assert f"size prior weight: nb201 {weight:g}" in result.output


def test_train_without_the_size_prior(trained_by_cli) -> None:
    folder, _, _, options = trained_by_cli
    out = folder / "plain.st"
    result = CliRunner().invoke(cli(), ["predictor", "train", "--zoo", str(folder / "zoo.jsonl"), "--out", str(out),
                                        "--no-size-prior", *options])  # fmt: skip
    assert result.exit_code == 0, result.output
    assert load(out).prior is None and "size prior" not in result.output


def test_train_errors_are_one_line_with_exit_status_2(trained_by_cli) -> None:
    folder, archs, _, options = trained_by_cli
    good = NB201.to_string(archs[0])
    (folder / "bad.txt").write_text(f"{good}\n{good}\n|nope~0|\n")
    train = ["predictor", "train", "--out", str(folder / "x.st")]
    run = CliRunner().invoke
    _one_line_error(run(cli(), [*train, "--zoo", str(folder / "missing.jsonl"), *options]), "zoo file")
    _one_line_error(run(cli(), [*train, "--zoo", str(folder / "bad.txt"), *options]), "line 1 is not a zoo record")
    _one_line_error(
        run(cli(), [*train, "--zoo", str(folder / "zoo.jsonl"), "--space", "nb999", *options]), "unknown search space"
    )
    assert not (folder / "x.st").exists()


# -- wsnas predictor eval ----------------------------------------------------------------------------------
def invoke(*args: str):
    return CliRunner().invoke(eval_cmd, list(args))


def test_cli_prints_a_table_and_json(synthetic_zoo) -> None:
    common = ["--zoo", str(synthetic_zoo), "--methods", "params,arch_gnn", "--budgets", "10,all", "--quiet", "-s",
              "C=4"]  # fmt: skip
    res = invoke(*common)
    assert res.exit_code == 0, res.output
    lines = [line for line in res.stdout.splitlines() if line.startswith("|")]
    assert len(lines) == 2 + 4 and "| params | 10 |" in res.stdout
    res = invoke(*common, "--json")
    assert res.exit_code == 0, res.output
    rows = json.loads(res.stdout)["rows"]
    assert [(r["method"], r["budget"]) for r in rows] == [("params", "10"), ("params", "all"),
                                                          ("arch_gnn", "10"), ("arch_gnn", "all")]  # fmt: skip
    assert all(r["spearman"] is None or math.isfinite(r["spearman"]) for r in rows)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--zoo", "/nonexistent.jsonl"], "does not exist"),
        (["--budgets", "10,abc"], "--budgets expects"),
        (["--budgets", "3"], "must be >= 5"),
        (["--methods", "synflow,bogus"], "unknown method 'bogus'"),
        (["--test-fraction", "1.5"], "test_fraction must be in (0, 1)"),
        (["--predictor", "/nonexistent.safetensors"], "error:"),
        (["--space", "nope"], "unknown search space"),
    ],
)
def test_cli_bad_input_is_one_line(synthetic_zoo, args, message) -> None:
    base = [] if args[0] == "--zoo" else ["--zoo", str(synthetic_zoo)]
    methods = [] if "--methods" in args else ["--methods", "params"]
    res = invoke(*base, *args, *methods, "--quiet")
    assert res.exit_code == 2, res.output
    err = res.stderr.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: ") and message in err[0], res.stderr


# -- wsnas predictor finetune ---------------------------------------------------------------------------------
def _nb101_zoo(path, n: int = 10) -> list:
    archs = sample_distinct(NB101, n, 5)
    zoo = Zoo(path)
    for i, a in enumerate(archs):
        acc = 0.2 + 0.01 * i
        zoo.append(ZooRecord(
            space="nb101", arch=NB101.to_string(a), arch_hash=a.hash, seed=0, task="synthetic",
            task_fingerprint="0123456789abcdef", val_acc=acc, val_loss=1 - acc, val_acc_curve=[acc],
            val_loss_curve=[1 - acc], train_loss_curve=[1.0], train_seconds=0.5, params=10, flops=10,
            diverged=False, init="kaiming_normal", wsnas_version="0.1.0", timestamp="2025-01-01T00:00:00+00:00",
        ))  # fmt: skip
    return archs


def run(*args: str):
    return CliRunner().invoke(predictor_group, list(args))


def test_cli_finetune_transfers_and_fine_tunes(saved_predictor, tmp_path) -> None:
    _nb101_zoo(tmp_path / "zoo.jsonl")
    out = tmp_path / "ft.safetensors"
    result = run("finetune", "--predictor", str(saved_predictor[0]), "--zoo", str(tmp_path / "zoo.jsonl"), "--n", "6",
                 "--epochs", "2", "--seed", "1", "--out", str(out))  # fmt: skip
    assert result.exit_code == 0, result.output
    assert "warning: search space 'nb101' uses layer types" in result.output
    assert "transferred from nb201 and fine-tuned on 6 nb101 architectures (2 epochs)" in result.output
    pred = load(out)
    assert pred.space.name == "nb101" and [e["event"] for e in pred.history] == ["fit", "transfer", "fine_tune"]
    event = pred.history[-1]
    assert event["n"] == 6 and event["seed"] == 1 and len(event["arch_hashes"]) == 6 and event["epochs"] == 2
    json.dumps(pred.card, allow_nan=False)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--n", "50"], "more than the 10 usable architectures"),
        (["--n", "1"], "--n must be >= 2"),
        (["--n", "4", "-s", "C=2"], "cannot transfer the predictor to 'nb101'"),
        (["--n", "4", "--space", "nope"], "nope"),
        (["--n", "4", "--target", "accuracy"], "target must be one of"),
        (["--n", "4", "--epochs", "0"], "--epochs must be >= 1"),
        (["--n", "4", "--lr", "0"], "--lr must be > 0"),
    ],
    ids=["too-many", "too-few", "bad-size", "unknown-space", "bad-target", "bad-epochs", "bad-lr"],
)
def test_cli_finetune_bad_input_is_one_error_line(saved_predictor, tmp_path, args, message) -> None:
    _nb101_zoo(tmp_path / "zoo.jsonl")
    result = run("finetune", "--predictor", str(saved_predictor[0]), "--zoo", str(tmp_path / "zoo.jsonl"),
                 "--out", str(tmp_path / "o.st"), *args)  # fmt: skip
    assert result.exit_code == 2, result.output
    errors = [line for line in result.output.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and message in errors[0], result.output
    assert not (tmp_path / "o.st").exists()


def test_cli_finetune_missing_files_are_one_error_line(saved_predictor, tmp_path) -> None:
    result = run("finetune", "--predictor", str(saved_predictor[0]), "--zoo", str(tmp_path / "none.jsonl"), "--n", "4",
                 "--out", str(tmp_path / "o.st"))  # fmt: skip
    assert result.exit_code == 2 and result.output.startswith("error: zoo file") and "does not exist" in result.output
    _nb101_zoo(tmp_path / "zoo.jsonl")
    result = run("finetune", "--predictor", str(tmp_path / "nope.st"), "--zoo", str(tmp_path / "zoo.jsonl"),
                 "--n", "4", "--out", str(tmp_path / "o.st"))  # fmt: skip
    assert result.exit_code == 2 and result.output.startswith("error: predictor file"), result.output
    assert "does not exist" in result.output


def test_train_stopped_by_ctrl_c_resumes_to_the_same_predictor(trained_by_cli, monkeypatch) -> None:
    import torch

    import wsnas.predictors._checkpoint as checkpoint_module
    import wsnas.predictors._fit as fit_module

    folder, _, _, options = trained_by_cli
    real, calls = fit_module.train_epoch, []

    def ctrl_c_in_the_fifth_epoch(*args, **kwargs) -> None:  # noqa: ANN002, ANN003
        calls.append(1)
        real(*args, **kwargs)
        if len(calls) == 5:
            raise KeyboardInterrupt

    monkeypatch.setattr(checkpoint_module, "SAVE_EVERY", 0.0)
    monkeypatch.setattr(fit_module, "train_epoch", ctrl_c_in_the_fifth_epoch)
    args = ["predictor", "train", "--zoo", str(folder / "zoo.jsonl"), "--out", str(folder / "q.st"), *options]
    stopped = CliRunner().invoke(cli(), args)
    ckpt = folder / "q.st.ckpt"
    assert stopped.exit_code == 130, stopped.output
    assert f"interrupted: progress is saved in '{ckpt}'; run the same command again to resume" in stopped.output
    assert ckpt.is_file() and not (folder / "q.st").exists()

    monkeypatch.setattr(fit_module, "train_epoch", real)
    resumed = CliRunner().invoke(cli(), args)
    assert resumed.exit_code == 0, resumed.output
    assert f"resuming from the checkpoint '{ckpt}'" in resumed.output and not ckpt.exists()
    # the same members, bit for bit, as the unstopped run of the same command (the fixture's p.st)
    a, b = load(folder / "p.st"), load(folder / "q.st")
    for ma, mb in zip(a.members, b.members):
        assert all(torch.equal(v, mb.state_dict()[k]) for k, v in ma.state_dict().items())
