"""The search's configuration (one frozen SearchConfig, built and checked once) and the SearchPredictor
protocol that a predictor passed to wsnas.search must satisfy."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

import numpy as np
import optuna
import pytest

import wsnas
from wsnas._search import SearchConfig
from wsnas._search._config import STORED
from wsnas._search._loop import Loop
from wsnas._search._protocol import MEMBERS
from wsnas._search._store import Coordinator
from wsnas.search_spaces import get_space

SPACE = get_space("nb201")


def _convs(arch) -> float:  # noqa: ANN001 - a stand-in for training
    return SPACE.ops(arch).count("nor_conv_3x3") / 6


class CountingPredictor:
    """A user's predictor: scores by the number of 3x3 convolutions, remembers its fine-tunings."""

    def __init__(self) -> None:
        self.space = SPACE
        self.target = {"mean": 0.5, "std": 0.2}
        self.tuned: list[int] = []

    @property
    def card(self) -> dict[str, Any]:
        return {"name": "counting"}

    def predict(self, archs):  # noqa: ANN001, ANN201
        score = np.array([_convs(a) for a in archs])
        return type("Scores", (), {"score": score, "uncertainty": np.zeros(len(archs))})()

    def fine_tune(self, archs, targets, *, epochs: int) -> None:  # noqa: ANN001
        assert all(isinstance(a, str) for a in archs) and len(archs) == len(targets)
        self.tuned.append(len(archs))


def test_config_is_frozen_keyword_only_and_stores_what_it_resolved(table) -> None:
    ev = wsnas.TableEvaluator(table, "arch", "acc")
    config = SearchConfig.build(space="nb201", evaluator=ev, eval_budget=4, predictor=None, seed=3)
    with pytest.raises(dataclasses.FrozenInstanceError):
        config.seed = 4  # type: ignore[misc]
    with pytest.raises(TypeError):
        SearchConfig(*[getattr(config, f.name) for f in dataclasses.fields(config)])  # type: ignore[misc]
    stored = config.to_dict()
    assert tuple(stored) == STORED and json.loads(json.dumps(stored)) == stored
    assert stored["space"] == "nb201" and stored["evaluator"] == ev.spec and stored["predictor"] is None
    assert (stored["sampler"], stored["n_candidates"], stored["batch_size"]) == ("tpe", 32, 1)
    again = SearchConfig.from_dict(stored, evaluator=stored["evaluator"], predictor=None)
    assert again.to_dict() == stored
    assert [config.worker_seed(i) for i in range(3)] == [3, 4, 5] and config.seed == 3


def test_workers_derive_their_seed_without_changing_the_config(tmp_path: Path) -> None:
    first = wsnas.search("nb201", evaluator=_convs, eval_budget=2, predictor=None, seed=5, output_dir=tmp_path,
                         progress=False)  # fmt: skip
    second = wsnas.join(first.study_name, first.storage, evaluator=_convs, output_dir=tmp_path, progress=False)
    assert first._config.seed == second._config.seed == 5
    assert first.study.user_attrs["wsnas:config"]["seed"] == 5
    workers = sorted(v for k, v in second.study.user_attrs.items() if k.startswith("wsnas:worker:"))
    assert workers == [0, 1]
    config = second._config  # worker i's sampler draws as a fresh sampler seeded seed + i

    def first_proposal(sampler) -> str:  # noqa: ANN001
        study = optuna.create_study(directions=config.directions, sampler=sampler)
        return SPACE.to_string(SPACE.suggest(study.ask()))

    expected = [first_proposal(optuna.samplers.TPESampler(seed=5 + worker)) for worker in (0, 1, 2)]
    assert len(set(expected)) == 3  # the seeds tell the workers apart
    for worker in (0, 1, 2):
        loop = Loop(config, second.study, Coordinator(second.study), None, worker=worker)
        assert first_proposal(loop.sampler) == expected[worker]
    assert config.seed == 5


def test_weight_predictor_is_a_search_predictor(pred) -> None:
    assert isinstance(pred, wsnas.SearchPredictor)
    declared = {n for n in vars(wsnas.SearchPredictor) if not n.startswith("_")}
    assert declared == set(MEMBERS)


def test_a_users_predictor_screens_on_a_copy_and_fine_tunes_only_with_several_objectives(tmp_path: Path) -> None:
    mine = CountingPredictor()
    assert isinstance(mine, wsnas.SearchPredictor)
    res = wsnas.search("nb201", evaluator=_convs, eval_budget=5, predictor=mine, batch_size=8, output_dir=tmp_path,
                       progress=False)  # fmt: skip
    assert len(res.history) == 5 and all(r.predicted is not None for r in res.history)
    assert mine.tuned == [] and res.predictor is not mine and res.predictor.tuned == []  # a GP prior: no tuning
    res = wsnas.search("nb201", evaluator=_convs, eval_budget=5, predictor=mine, batch_size=8, output_dir=tmp_path,
                       objectives=("accuracy", "params"), progress=False)  # fmt: skip
    assert mine.tuned == [] and res.predictor.tuned and res.predictor.tuned[-1] == 5  # the search's own copy


def test_a_predictor_without_the_protocols_members_is_refused_at_the_door(tmp_path: Path) -> None:
    class ScoresOnly:
        space = SPACE

        def predict(self, archs):  # noqa: ANN001, ANN201
            return None

    with pytest.raises(wsnas.SearchConfigError, match=r"without fine_tune, target, card$"):
        wsnas.search("nb201", evaluator=_convs, eval_budget=2, predictor=ScoresOnly(), output_dir=tmp_path,
                     progress=False)  # fmt: skip
    assert not tmp_path.exists() or not any(tmp_path.iterdir())
    broken = CountingPredictor()
    broken.fine_tune = "not callable"  # type: ignore[assignment]
    with pytest.raises(wsnas.SearchConfigError, match="without fine_tune$"):
        wsnas.search("nb201", evaluator=_convs, eval_budget=2, predictor=broken, output_dir=tmp_path, progress=False)
    base = wsnas.search("nb201", evaluator=_convs, eval_budget=1, predictor=CountingPredictor(),
                        output_dir=tmp_path / "j", progress=False)  # fmt: skip
    with pytest.raises(wsnas.SearchConfigError, match="a ScoresOnly without fine_tune, target, card"):
        wsnas.join(base.study_name, base.storage, evaluator=_convs, predictor=ScoresOnly(), output_dir=tmp_path / "j",
                   progress=False)  # fmt: skip
