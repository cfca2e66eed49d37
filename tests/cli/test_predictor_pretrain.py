"""``wsnas predictor pretrain``, ``train --pretrained``, ``eval --pretrained``, the default encoding width of
``predictor train``, the progress bar of ``predictor finetune`` and one fit per distinct label count in
``predictor eval``; each on the ``synthetic_zoo`` fixture (tests/conftest.py) with tiny encoders.
"""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

from wsnas.cli._predictor import predictor_group
from wsnas.predictors import default_transfer_size, load
from wsnas.search_spaces import get_space

NB201 = get_space("nb201")
#: a tiny, fast encoder
TINY = ("--hidden", "8", "--layers", "1", "--ensemble", "2")


def run(*args: str):
    return CliRunner().invoke(predictor_group, list(args))


def one_error_line(result, fragment: str) -> None:
    assert result.exit_code == 2, result.output
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: ") and fragment in lines[0], result.output


@pytest.fixture(scope="module")
def pretrained(tmp_path_factory):
    """``wsnas predictor pretrain`` on 15 NB201 cells, with its progress bars: ``(path, result)``."""
    path = tmp_path_factory.mktemp("pretrain") / "pre.st"
    result = run("pretrain", "--space", "nb201", "--n", "15", "--epochs", "2", "--seed", "3", "--out", str(path), *TINY)
    return path, result


# -- wsnas predictor pretrain ------------------------------------------------------------------------------
def test_pretrain_writes_a_pretrained_predictor_and_one_summary_line(pretrained) -> None:
    path, result = pretrained
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert len(lines) == 1 and lines[0].startswith("pretrained on 15 nb201 architectures (2 epochs, 3 held out)")
    assert lines[0].endswith(f"; saved to {path}")
    pred = load(path)
    assert pred.pretraining is not None and not pred.fitted and pred.space.name == "nb201"
    assert pred.pretraining["n"] == 15 and pred.pretraining["task"] == "synthetic" and pred.ensemble == 2
    assert pred.card["encoding"]["size"] == {"C": 2, "N": 1} and pred.seed == 3
    for name in pred.pretraining["targets"]:  # every pretraining target's held-out Spearman is on the line
        assert f" {name} " in lines[0]
    assert len(pred.pretraining["held_out_spearman"]) == len(pred.pretraining["targets"]) >= 3


def test_pretrain_shows_its_progress_bars(pretrained) -> None:
    _, result = pretrained
    assert "costless targets" in result.stderr and "pretrain" in result.stderr, result.stderr


def test_pretrain_all_enumerates_a_finite_space(tmp_path) -> None:
    out = tmp_path / "g.st"
    result = run("pretrain", "--space", "graph", "--all", "--epochs", "1", "--quiet", "--out", str(out), *TINY)
    assert result.exit_code == 0, result.output
    assert result.stdout.startswith(f"pretrained on {get_space('graph').size} graph architectures")
    assert result.stderr == ""  # --quiet: no bar
    assert load(out).card["encoding"]["size"] == default_transfer_size(get_space("graph"))


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--space", "nb201", "--n", "15", "--all"], "--n and --all exclude each other"),
        (["--space", "nb201", "--n", "14"], "--n must be >= 15"),
        (["--space", "nb101", "--all"], "'nb101' has 423,624: use --n"),
        (["--space", "nb201", "--n", "15", "--task", "nope"], "unknown task 'nope'"),
        (["--space", "nb201", "--n", "15", "--task", "cifar10"], "needs --data-dir DIR"),
        (["--space", "nope", "--n", "15"], "unknown search space 'nope'"),
        (["--space", "nb201", "--n", "15", "--epochs", "0"], "--epochs and --ensemble must be >= 1"),
        (["--space", "nb201", "--n", "20000"], "pretraining failed: cannot sample 20000"),
        (["--space", "nb201", "--n", "15", "-s", "C=0"], "pretraining failed"),
    ],
)
def test_pretrain_bad_input_is_one_error_line(tmp_path, args, message) -> None:
    one_error_line(run("pretrain", *args, "--out", str(tmp_path / "o.st"), "--quiet", *TINY), message)
    assert not (tmp_path / "o.st").exists()


# -- wsnas predictor train: --pretrained and the default width ------------------------------------------------
def test_train_from_a_pretrained_file(pretrained, synthetic_zoo, tmp_path) -> None:
    out = tmp_path / "p.st"
    result = run("train", "--zoo", str(synthetic_zoo), "--pretrained", str(pretrained[0]), "--epochs", "3",
                 "--out", str(out), "--quiet")  # fmt: skip
    assert result.exit_code == 0, result.output
    assert "(2 encoders, from the pretrained encoder)" in result.stdout
    pred, pre = load(out), load(pretrained[0])
    assert pred.fitted and pred.history[-1]["pretrained"] is True and pred.history[-1]["epochs"] == 3
    assert pred.pretraining == pre.pretraining and pred.card["encoding"] == pre.card["encoding"]
    assert pred.training_data["source"] == "zoo" and pred.training_data["target"] == "val_acc"
    assert pred.training_data["zoos"][0]["path"] == str(synthetic_zoo)


def test_train_pretrained_errors_are_one_line(pretrained, saved_predictor, synthetic_zoo, tmp_path) -> None:
    train = ["train", "--zoo", str(synthetic_zoo), "--out", str(tmp_path / "o.st"), "--quiet", "--pretrained"]
    one_error_line(run(*train, str(saved_predictor[0])), "is not a pretrained predictor")
    one_error_line(run(*train, str(pretrained[0]), "--hidden", "8", "-s", "C=4"), "drop --hidden, --size")
    one_error_line(run(*train, str(pretrained[0]), "--space", "nb101"), "was pretrained on 'nb201', not 'nb101'")
    one_error_line(run(*train, str(tmp_path / "none.st")), "predictor file")
    assert not (tmp_path / "o.st").exists()


def test_train_encodes_at_the_shipped_width_by_default(synthetic_zoo, tmp_path) -> None:
    out = tmp_path / "p.st"
    result = run("train", "--zoo", str(synthetic_zoo), "--epochs", "1", "--out", str(out), *TINY)
    assert result.exit_code == 0, result.output
    assert "fit" in result.stderr  # the progress bar of the fit
    size = load(out).card["encoding"]["size"]
    assert size == {"C": 2, "N": 1} == load("nb201").card["encoding"]["size"] == default_transfer_size(NB201)
    assert size != NB201.proxy_size


# -- wsnas predictor eval: --pretrained, one fit per label count ---------------------------------------------
def test_eval_fits_the_pretrained_predictor(pretrained, synthetic_zoo, saved_predictor) -> None:
    common = ["eval", "--zoo", str(synthetic_zoo), "--methods", "encoder", "--budgets", "10", "--epochs", "2",
              "--json", "--quiet"]  # fmt: skip
    result = run(*common, "--pretrained", str(pretrained[0]))
    assert result.exit_code == 0, result.output
    table = json.loads(result.stdout)
    assert table["meta"]["pretrained"]["targets"] == load(pretrained[0]).pretraining["targets"]
    assert [(r["method"], r["n_train"]) for r in table["rows"]] == [("encoder", 10)]
    one_error_line(run(*common, "--pretrained", str(saved_predictor[0])), "is not a pretrained predictor")


def test_eval_fits_budgets_of_one_label_count_once(synthetic_zoo, monkeypatch) -> None:
    from wsnas.predictors._baselines import ArchGNNBaseline

    fits: list[int] = []
    original = ArchGNNBaseline.fit

    def counting_fit(self, archs, targets):  # noqa: ANN001, ANN202
        fits.append(len(archs))
        return original(self, archs, targets)

    monkeypatch.setattr(ArchGNNBaseline, "fit", counting_fit)
    # 60 cells, 18 held out: a pool of 42, so 50 and all are both 42 labels
    result = run("eval", "--zoo", str(synthetic_zoo), "--methods", "arch_gnn,params", "--budgets", "10,50,all",
                 "--json", "--quiet")  # fmt: skip
    assert result.exit_code == 0, result.output
    assert fits == [10, 42]
    rows = {r["budget"]: r for r in json.loads(result.stdout)["rows"] if r["method"] == "arch_gnn"}
    assert [rows[b]["n_train"] for b in ("10", "50", "all")] == [10, 42, 42]
    assert rows["50"] == {**rows["all"], "budget": "50"}


# -- wsnas predictor finetune: a progress bar ------------------------------------------------------------------
def test_finetune_shows_a_progress_bar_unless_quiet(saved_predictor, synthetic_zoo, tmp_path) -> None:
    args = ["finetune", "--predictor", str(saved_predictor[0]), "--zoo", str(synthetic_zoo), "--n", "6",
            "--epochs", "2", "--out", str(tmp_path / "ft.st")]  # fmt: skip
    result = run(*args)
    assert result.exit_code == 0, result.output
    assert "fine_tune" in result.stderr and "fine-tuned on 6 nb201 architectures (2 epochs)" in result.stdout
    quiet = run(*args, "--quiet")
    assert quiet.exit_code == 0 and "fine_tune" not in quiet.stderr, quiet.output


def test_pretrain_stopped_by_ctrl_c_resumes_from_its_proxies(pretrained, tmp_path, monkeypatch) -> None:
    import torch

    import wsnas.predictors._proxy_cache as cache_module
    import wsnas.predictors._zc_gbm as zc_module

    real, calls = zc_module.ZeroCostScores.matrix, []

    def ctrl_c_at_the_sixth(self, batch):  # noqa: ANN001
        calls.append(1)
        if len(calls) == 6:
            raise KeyboardInterrupt
        return real(self, batch)

    monkeypatch.setattr(cache_module, "SAVE_EVERY", 0.0)
    monkeypatch.setattr(zc_module.ZeroCostScores, "matrix", ctrl_c_at_the_sixth)
    out = tmp_path / "pre.st"
    args = ["pretrain", "--space", "nb201", "--n", "15", "--epochs", "2", "--seed", "3", "--out", str(out), *TINY]
    stopped = run(*args, "--quiet")
    ckpt = tmp_path / "pre.st.ckpt"
    assert stopped.exit_code == 130, stopped.output
    assert f"interrupted: progress is saved in '{ckpt}'; run the same command again to resume" in stopped.output
    assert ckpt.is_file() and not out.exists()

    calls.clear()
    monkeypatch.setattr(zc_module.ZeroCostScores, "matrix", lambda self, batch: (calls.append(1), real(self, batch))[1])
    resumed = run(*args, "--quiet")
    assert resumed.exit_code == 0, resumed.output
    assert f"resuming from the checkpoint '{ckpt}'" in resumed.output and not ckpt.exists()
    assert len(calls) == 10  # the five saved before the stop are not computed again
    # the same pretrained encoder as the unstopped run of the same command (the fixture's)
    a, b = load(pretrained[0]), load(out)
    assert all(torch.equal(v, b._pretrained[k]) for k, v in a._pretrained.items())
