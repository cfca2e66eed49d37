"""The evaluation table on a small synthetic zoo (the ``synthetic_zoo`` fixture: NB201, encoded at C=4, N=1).

The zoo's ``val_acc`` is a known function of the architecture (its conv-edge count) plus seeded noise.
``wsnas predictor eval`` is tested in tests/cli/test_predictor.py.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
from scipy.stats import spearmanr

from wsnas.predictors import EncoderConfig
from wsnas.predictors._evaluate import EvalTable, evaluate, top_fraction_precision
from wsnas.search_spaces import get_space
from wsnas.training import Zoo

SPACE = get_space("nb201")
SIZE = {"C": 4, "N": 1}
METHODS = ("encoder", "encoder_shuffled", "arch_gnn", "weight_stats", "zc_gbm", "params", "synflow")
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


@pytest.fixture(scope="module")
def table(synthetic_zoo) -> EvalTable:
    return evaluate([synthetic_zoo], label_budgets=(10, 20, None), n_test=18, seed=0, methods=METHODS, **FAST)


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


def test_test_split_is_fixed_across_budgets_and_disjoint_from_training(table, synthetic_zoo) -> None:
    test = set(table.splits["test"])
    assert len(test) == 18
    for b in ("10", "20", "all"):
        assert not test & set(table.splits[b])
    assert set(table.splits["10"]) < set(table.splits["20"]) < set(table.splits["all"])
    again = evaluate([synthetic_zoo], label_budgets=(10,), n_test=18, seed=0, methods=["params"], **FAST)
    assert again.splits["test"] == table.splits["test"] and again.splits["10"] == table.splits["10"]
    other = evaluate([synthetic_zoo], label_budgets=(10,), n_test=18, seed=1, methods=["params"], **FAST)
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


def test_evaluate_rejects_bad_settings(synthetic_zoo) -> None:
    with pytest.raises(ValueError, match="unknown \\['bogus'\\]"):
        evaluate([synthetic_zoo], methods=["bogus"], **FAST)
    with pytest.raises(ValueError, match="ints >= 5 or None"):
        evaluate([synthetic_zoo], label_budgets=(2,), methods=["params"], **FAST)
    with pytest.raises(ValueError, match="n_test=58 of 60"):
        evaluate([synthetic_zoo], n_test=58, methods=["params"], **FAST)
    with pytest.raises(ValueError, match="does not exist"):
        evaluate(["/nonexistent/zoo.jsonl"], methods=["params"], **FAST)


def test_save_predictor_writes_the_measured_encoder_with_the_table_in_its_card(synthetic_zoo, tmp_path) -> None:
    from wsnas.predictors import load

    path = tmp_path / "pred.safetensors"
    table = evaluate([synthetic_zoo], label_budgets=(10, None), n_test=18, seed=0, methods=["encoder", "params"],
                     save_predictor=path, baseline_size={"C": 2, "N": 1}, **FAST)  # fmt: skip
    pred = load(path)
    card = pred.card
    assert card["evaluation"]["rows"] == table.rows and card["evaluation"]["encoder_budget"] == "all"
    assert card["evaluation"]["test_hashes"] == table.splits["test"]
    assert card["training_data"]["n"] == 42 and card["training_data"]["source"] == "zoo"
    assert table.meta["baseline_size"] == {"C": 2, "N": 1} and dict(card["encoding"]["size"]) == SIZE
    records = [r for r in Zoo.load(synthetic_zoo) if r.arch_hash in set(table.splits["test"])]
    scores = pred.predict([r.arch for r in records]).score
    assert np.isfinite(scores).all() and len(scores) == 18
    rho = spearmanr(scores, [r.val_acc for r in records]).statistic  # the saved model is the measured one
    assert rho == pytest.approx(table.row("encoder", "all")["spearman"], abs=1e-9)
    with pytest.raises(ValueError, match="needs the 'encoder' method"):
        evaluate([synthetic_zoo], methods=["params"], save_predictor=path, **FAST)
