"""The private parts of Optuna that the search uses, in one place (each has a test in tests/search/).

Optuna has no public way to reach a study's storage object and ids (the search talks to the storage
directly for its claim protocol), nor to tell a genetic sampler which generation a trial belongs to (the
search replays finished trials into an in-memory study for its sampler). Tested with Optuna 4 and 5;
``pyproject.toml`` bounds the version so that a new major release is tried here first.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import optuna
    from optuna.storages import BaseStorage
    from optuna.trial import FrozenTrial

__all__ = ["storage_of", "study_id_of", "trial_id_of", "generation_key"]


def storage_of(study: optuna.Study) -> BaseStorage:
    """The storage object ``study`` reads and writes through (its own, cached: ``study._storage``)."""
    return study._storage


def study_id_of(study: optuna.Study) -> int:
    """``study``'s id in its storage (``study._study_id``), the key of the storage's trial methods."""
    return study._study_id


def trial_id_of(trial: FrozenTrial) -> int:
    """``trial``'s id in its storage (``FrozenTrial._trial_id``; its ``number`` counts within the study)."""
    return trial._trial_id


def generation_key(sampler: optuna.samplers.BaseSampler) -> str | None:
    """The system attribute under which a genetic sampler (NSGA-II, ...) keeps a trial's generation, or
    ``None`` for other samplers (``optuna.samplers._ga.BaseGASampler._get_generation_key``)."""
    from optuna.samplers._ga import BaseGASampler

    return sampler._get_generation_key() if isinstance(sampler, BaseGASampler) else None
