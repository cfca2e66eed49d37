"""The predictor as a GP prior (wsnas/_search/_acquire.py) and the loop's use of an evaluator's domain."""

from __future__ import annotations

import csv

import numpy as np
import pytest

import wsnas
from wsnas._search._acquire import K0, TokenIndex, arch_tokens, distances, gp_ucb
from wsnas.search_spaces import get_space

SPACE = get_space("nb201")


def _small_table(records, path, n: int = 40):
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["arch", "acc"])
        w.writerows([r.arch, r.val_acc] for r in records[:n])
    return wsnas.TableEvaluator(path, "arch", "acc")


def test_edit_distance_counts_changed_ops() -> None:
    a = SPACE.sample(np.random.default_rng(0))
    nbrs = SPACE.neighbours(a)
    index = TokenIndex()
    for x in [a, *nbrs]:
        index.add(x)
    d = distances(index.matrix([a.hash]), index.matrix([x.hash for x in nbrs]))
    assert np.all(d == 1.0)
    assert arch_tokens(a) == arch_tokens(SPACE.from_string(SPACE.to_string(a)))


def test_gp_follows_the_results_where_they_overrule_the_prior() -> None:
    # candidates 0..3 on a line of edit distances; the prior prefers 3, the results say 0's side is good
    tok = np.array([[1, 1, 1, 0, 0, 0], [1, 1, 0, 1, 0, 0], [1, 0, 0, 1, 1, 0], [0, 0, 0, 1, 1, 1]], np.float32)
    obs = np.array([[1, 1, 1, 0, 0, 1], [0, 0, 1, 1, 1, 1], [0, 1, 0, 1, 1, 1]], np.float32)
    prior_c, prior_o = np.array([0.0, 0.1, 0.2, 1.0]), np.array([0.0, 0.9, 0.8])
    acq = gp_ucb(prior_c, tok, prior_o, obs, np.array([1.0, 0.0, 0.05]))
    assert int(np.argmax(acq)) == 0  # next to the best result, although the prior ranks it last
    same = gp_ucb(prior_c, tok, prior_o, obs, np.array([0.0, 1.0, 0.9]))
    assert int(np.argmax(same)) == 3  # results that agree with the prior keep its ranking


def test_first_picks_are_the_priors_top_over_the_whole_table(records, pred, tmp_path) -> None:
    ev = _small_table(records, tmp_path / "t.csv")
    res = wsnas.search("nb201", evaluator=ev, eval_budget=6, predictor=pred, output_dir=tmp_path, progress=False,
                       tracking=False)  # fmt: skip
    scores = np.asarray(pred.predict([SPACE.from_string(r.arch) for r in records[:40]]).score)
    top = {records[i].arch_hash for i in np.argsort(-scores)[:K0]}
    assert {r.arch_hash for r in res.history[:K0]} == top
    assert len({r.arch_hash for r in res.history}) == 6 and all(r.state == "COMPLETE" for r in res.history)


@pytest.mark.parametrize("predictor", [None, "pred"])
def test_a_small_table_is_searched_until_its_rows_are_spent(records, pred, predictor, tmp_path, capsys) -> None:
    # issue 14 item 2: a 12-row table, budget 10 -> 10 evaluations (not "no new candidates" after a few);
    # budget 20 -> all 12 rows, then a clear stop
    ev = _small_table(records, tmp_path / "t.csv", n=12)
    p = pred if predictor else None
    res = wsnas.search("nb201", evaluator=ev, eval_budget=10, predictor=p, output_dir=tmp_path / "a",
                       progress=False, tracking=False)  # fmt: skip
    assert len({r.arch_hash for r in res.history if r.state == "COMPLETE"}) == 10
    res = wsnas.search("nb201", evaluator=ev, eval_budget=20, predictor=p, output_dir=tmp_path / "b",
                       progress=False, tracking=False)  # fmt: skip
    assert len({r.arch_hash for r in res.history if r.state == "COMPLETE"}) == 12
    assert "every one of the evaluator's 12 architectures" in capsys.readouterr().err


def test_without_a_domain_the_pool_grows_with_neighbours_of_the_best(pred, tmp_path) -> None:
    def evaluator(arch):  # no domain: the pool is sampler proposals plus neighbours of the best results
        # a target the prior (fitted on accuracy) does not know: its first picks are far from the best
        return sum(d["op"] == "skip_connect" for _, _, d in arch.graph.edges(data=True)) / 6.0

    res = wsnas.search("nb201", evaluator=evaluator, eval_budget=12, predictor=pred, output_dir=tmp_path,
                       progress=False, tracking=False, seed=3)  # fmt: skip
    values = [r.values["accuracy"] for r in res.history]
    assert len({r.arch_hash for r in res.history}) == 12
    assert max(values[:K0]) < 1.0 and max(values[K0:]) > max(values[:K0])  # the results lead past the prior's picks
