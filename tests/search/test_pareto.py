"""``SearchResult.pareto`` is exactly the non-dominated set of the evaluated records, by every objective in its
direction, sorted by the first objective, and ``to_dict`` carries it with every objective's value."""

from __future__ import annotations

import wsnas
from wsnas._search._objectives import OBJECTIVES
from wsnas.search_spaces import get_space

SPACE = get_space("nb201")


def _front(records: list[wsnas.SearchRecord], objectives: tuple[str, ...]) -> set[str]:
    """Brute force: the records that no other one is at least as good as on every objective and better on one."""

    def dominates(a: wsnas.SearchRecord, b: wsnas.SearchRecord) -> bool:
        gains = [(a.values[o] - b.values[o]) * (1 if OBJECTIVES[o] == "maximize" else -1) for o in objectives]
        return all(g >= 0 for g in gains) and any(g > 0 for g in gains)

    return {r.arch_hash for r in records if not any(dominates(q, r) for q in records)}


def _check(result: wsnas.SearchResult) -> None:
    objectives = result.objectives
    evaluated = result.evaluated()
    front = _front(evaluated, objectives)
    assert 0 < len(front) < len(evaluated)  # dominated records exist, and none of them is on the front
    assert {r.arch_hash for r in result.pareto} == front and len(result.pareto) == len(front)
    accuracy = [r.values["accuracy"] for r in result.pareto]
    assert accuracy == sorted(accuracy, reverse=True)  # best first objective first
    assert result.best is result.pareto[0]
    doc = result.to_dict()
    assert doc["evaluated"] == len(evaluated) and len(doc["pareto"]) == len(front)
    for p in doc["pareto"]:
        assert set(p["values"]) == set(objectives) and p["params"] and p["flops"]


def test_pareto_is_the_non_dominated_set_on_three_objectives_with_ties(tmp_path) -> None:
    def evaluate(arch: wsnas.Arch) -> float:  # seven values only: many ties on accuracy
        return SPACE.ops(arch).count("nor_conv_3x3") / 6

    objectives = ("accuracy", "params", "flops")
    result = wsnas.search("nb201", evaluator=evaluate, eval_budget=14, predictor=None, sampler="random",
                          objectives=objectives, output_dir=tmp_path, progress=False)  # fmt: skip
    assert len(result.evaluated()) == 14
    _check(result)


def test_a_training_free_pareto_is_chosen_among_the_screened(pred, tmp_path) -> None:
    result = wsnas.search("nb201", predictor=pred, n_candidates=24, batch_size=12, objectives=("accuracy", "params"),
                          output_dir=tmp_path, progress=False)  # fmt: skip
    assert result.training_free and len(result.evaluated()) == 24
    _check(result)
