"""The private Optuna API the search uses (wsnas._search._optuna): one test per use, so that an Optuna
release that changes one fails here, by name, rather than deep inside a search."""

from __future__ import annotations

from pathlib import Path

import optuna
import pytest

from wsnas._search._optuna import generation_key, storage_of, study_id_of, trial_id_of

optuna.logging.set_verbosity(optuna.logging.WARNING)


@pytest.fixture(params=["memory", "sqlite"])
def study(request, tmp_path: Path) -> optuna.Study:
    storage = None if request.param == "memory" else f"sqlite:///{tmp_path / 'o.db'}"
    s = optuna.create_study(study_name="s", storage=storage, sampler=optuna.samplers.RandomSampler(seed=0))
    s.optimize(lambda t: t.suggest_float("x", 0, 1), n_trials=3)
    return s


def test_storage_of_is_the_storage_the_study_writes_through(study: optuna.Study) -> None:
    storage = storage_of(study)
    assert isinstance(storage, optuna.storages.BaseStorage)
    assert [t.number for t in storage.get_all_trials(study_id_of(study))] == [t.number for t in study.trials]
    storage.set_study_user_attr(study_id_of(study), "k", 1)  # what the study sees next
    assert study.user_attrs["k"] == 1


def test_study_id_of_is_the_storage_key_of_the_study(study: optuna.Study) -> None:
    assert study_id_of(study) == storage_of(study).get_study_id_from_name(study.study_name)


def test_trial_id_of_is_the_storage_key_of_each_trial(study: optuna.Study) -> None:
    storage = storage_of(study)
    for t in study.get_trials(deepcopy=False):
        assert storage.get_trial(trial_id_of(t)).number == t.number
        assert storage.get_trial_id_from_study_id_trial_number(study_id_of(study), t.number) == trial_id_of(t)


def test_generation_key_names_the_generation_attribute_of_genetic_samplers() -> None:
    nsga = optuna.samplers.NSGAIISampler(seed=0, population_size=4)
    key = generation_key(nsga)
    assert isinstance(key, str) and key
    study = optuna.create_study(directions=["maximize", "minimize"], sampler=nsga)
    study.optimize(lambda t: (t.suggest_float("x", 0, 1), t.suggest_float("y", 0, 1)), n_trials=6)
    assert [t.system_attrs[key] for t in study.trials] == [0, 0, 0, 0, 1, 1]  # what the sampler itself records
    for other in (optuna.samplers.TPESampler(seed=0), optuna.samplers.RandomSampler(seed=0)):
        assert generation_key(other) is None


def test_a_new_study_names_its_metrics_after_the_objectives(tmp_path) -> None:
    """optuna-dashboard shows "accuracy" and "params", not "0" and "1"."""
    import optuna

    from wsnas._search._store import open_study

    storage = optuna.storages.RDBStorage(f"sqlite:///{tmp_path / 's.db'}")
    config = {"space": "nb201", "objectives": ["accuracy", "params"]}
    study, _ = open_study(storage, "s", ["maximize", "minimize"], config)
    assert optuna.load_study(study_name="s", storage=storage).metric_names == ["accuracy", "params"]
    assert study.metric_names == ["accuracy", "params"]
