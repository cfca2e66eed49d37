"""The evaluation table and ``wsnas predictor eval`` on a small synthetic zoo (NB201, C=4, N=1).

The zoo's ``val_acc`` is a known function of the architecture (its conv-edge count) plus seeded noise.
"""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from click.testing import CliRunner
from scipy.stats import spearmanr

from wsnas import ZooRecord
from wsnas.cli._predictor import eval_cmd
from wsnas.predictors import EncoderConfig
from wsnas.predictors._evaluate import EvalTable, evaluate, top_fraction_precision
from wsnas.search_spaces import get_space
from wsnas.training import Zoo, sample_distinct

SPACE = get_space("nb201")
SIZE = {"C": 4, "N": 1}
METHODS = ("encoder", "encoder_shuffled", "arch_gnn", "weight_stats", "params", "synflow")
FAST = {
    "encoder": EncoderConfig(hidden=8, layers=1, kernel_size=3),
    "ensemble": 2,
    "size": SIZE,
    "fit_options": {"epochs": 4, "batch_size": 16, "patience": 2},
    "gnn_options": {"hidden": 8, "layers": 1, "epochs": 10},
    "zero_cost_batch": 8,
    "device": "cpu",
    "progress": False,
}




def write_zoo(path, n: int = 60, seed: int = 0) -> None:
    zoo, rng = Zoo(path), np.random.default_rng(seed)
    for arch in sample_distinct(SPACE, n, seed):
        convs = sum(d["op"].startswith("nor_conv") for _, _, d in arch.graph.edges(data=True))
        acc = float(np.clip(0.3 + 0.1 * convs + rng.normal(0.0, 0.03), 0.0, 1.0))
        zoo.append(ZooRecord(
            space="nb201", arch=SPACE.to_string(arch), arch_hash=arch.hash, seed=0, task="synthetic",
            task_fingerprint="0" * 16, val_acc=acc, val_loss=1.0 - acc, val_acc_curve=[acc], val_loss_curve=[1 - acc],
            train_loss_curve=[1.0], train_seconds=1.0, params=1000, flops=1000, diverged=False, init="generated",
            wsnas_version="0.1.0", timestamp="2026-01-01T00:00:00+00:00",
        ))  # fmt: skip


@pytest.fixture(scope="module")
def zoo(tmp_path_factory):
    path = tmp_path_factory.mktemp("zoo") / "zoo.jsonl"
    write_zoo(path)
    return path


@pytest.fixture(scope="module")
def table(zoo) -> EvalTable:
    return evaluate([zoo], label_budgets=(10, 20, None), n_test=18, seed=0, methods=METHODS, **FAST)


def test_table_has_a_row_per_method_and_budget_with_metrics_in_range(table) -> None:
    assert [(r["method"], r["budget"]) for r in table.rows] == [(m, b) for m in METHODS for b in ("10", "20", "all")]
    for r in table.rows:
        assert set(r) == set(table.columns)
        assert r["n_test"] == 18
        for key in ("spearman", "kendall"):
            assert r[key] is None or -1.0 <= r[key] <= 1.0
        assert 0.0 <= r["top5_precision"] <= 1.0
    assert [table.row("arch_gnn", b)["n_train"] for b in ("10", "20", "all")] == [10, 20, 42]
    assert table.meta["zero_cost_task"] == "synthetic" and table.meta["n_archs"] == 60


def test_training_free_rows_repeat_across_budgets(table) -> None:
    for m in ("params", "synflow"):
        rows = [table.row(m, b) for b in ("10", "20", "all")]
        assert all(r["spearman"] == rows[0]["spearman"] and r["n_train"] == 0 for r in rows)
    assert table.row("params", "all")["spearman"] > 0.3  # params grow with conv edges, as the target does


def test_test_split_is_fixed_across_budgets_and_disjoint_from_training(table, zoo) -> None:
    test = set(table.splits["test"])
    assert len(test) == 18
    for b in ("10", "20", "all"):
        assert not test & set(table.splits[b])
    assert set(table.splits["10"]) < set(table.splits["20"]) < set(table.splits["all"])
    again = evaluate([zoo], label_budgets=(10,), n_test=18, seed=0, methods=["params"], **FAST)
    assert again.splits["test"] == table.splits["test"] and again.splits["10"] == table.splits["10"]
    other = evaluate([zoo], label_budgets=(10,), n_test=18, seed=1, methods=["params"], **FAST)
    assert other.splits["test"] != table.splits["test"]


def test_markdown_and_json(table) -> None:
    md = table.to_markdown().splitlines()
    assert md[1].startswith("| method | budget | n_train")
    assert len(md) == 3 + len(table.rows)
    assert any(line.startswith("| arch_gnn | all | 42 | 18 |") for line in md)
    doc = json.loads(table.to_json())
    assert len(doc["rows"]) == len(table.rows) and doc["meta"]["space"] == "nb201"


def test_top_fraction_precision_on_a_hand_made_example() -> None:
    y = np.arange(40.0)  # k = round(0.05 * 40) = 2: the true top is {39, 38}
    assert top_fraction_precision(y, y) == 1.0
    assert top_fraction_precision(y, -y) == 0.0
    pred = np.zeros(40)
    pred[[39, 5]] = [10.0, 9.0]  # one of the two found
    assert top_fraction_precision(y, pred) == 0.5
    assert top_fraction_precision(np.arange(10.0), np.arange(10.0)[::-1]) == 0.0  # k = 1 at least
    assert top_fraction_precision(np.array([1.0, 3.0, 2.0]), np.array([0.0, 5.0, 1.0])) == 1.0
    with pytest.raises(ValueError, match="two \\[n\\] arrays"):
        top_fraction_precision(np.zeros(3), np.zeros(4))


def test_evaluate_rejects_bad_settings(zoo) -> None:
    with pytest.raises(ValueError, match="unknown \\['bogus'\\]"):
        evaluate([zoo], methods=["bogus"], **FAST)
    with pytest.raises(ValueError, match="ints >= 5 or None"):
        evaluate([zoo], label_budgets=(2,), methods=["params"], **FAST)
    with pytest.raises(ValueError, match="n_test=58 of 60"):
        evaluate([zoo], n_test=58, methods=["params"], **FAST)
    with pytest.raises(ValueError, match="does not exist"):
        evaluate(["/nonexistent/zoo.jsonl"], methods=["params"], **FAST)


def invoke(*args: str):
    return CliRunner().invoke(eval_cmd, list(args))


def test_cli_prints_a_table_and_json(zoo) -> None:
    common = ["--zoo", str(zoo), "--methods", "params,arch_gnn", "--budgets", "10,all", "--quiet", "-s", "C=4"]
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
def test_cli_bad_input_is_one_line(zoo, args, message) -> None:
    base = [] if args[0] == "--zoo" else ["--zoo", str(zoo)]
    methods = [] if "--methods" in args else ["--methods", "params"]
    res = invoke(*base, *args, *methods, "--quiet")
    assert res.exit_code == 2, res.output
    err = res.stderr.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: ") and message in err[0], res.stderr


def test_save_predictor_writes_the_measured_encoder_with_the_table_in_its_card(zoo, tmp_path) -> None:
    from wsnas.predictors import load

    path = tmp_path / "pred.safetensors"
    table = evaluate([zoo], label_budgets=(10, None), n_test=18, seed=0, methods=["encoder", "params"],
                     save_predictor=path, baseline_size={"C": 2, "N": 1}, **FAST)  # fmt: skip
    pred = load(path)
    card = pred.card
    assert card["evaluation"]["rows"] == table.rows and card["evaluation"]["encoder_budget"] == "all"
    assert card["evaluation"]["test_hashes"] == table.splits["test"]
    assert card["training_data"]["n"] == 42 and card["training_data"]["source"] == "zoo"
    assert table.meta["baseline_size"] == {"C": 2, "N": 1} and dict(card["encoding"]["size"]) == SIZE
    records = [r for r in Zoo.load(zoo) if r.arch_hash in set(table.splits["test"])]
    scores = pred.predict([r.arch for r in records]).score
    assert np.isfinite(scores).all() and len(scores) == 18
    rho = spearmanr(scores, [r.val_acc for r in records]).statistic  # the saved model is the measured one
    assert rho == pytest.approx(table.row("encoder", "all")["spearman"], abs=1e-9)
    with pytest.raises(ValueError, match="needs the 'encoder' method"):
        evaluate([zoo], methods=["params"], save_predictor=path, **FAST)
