"""A search's configuration: every argument of :func:`wsnas.search` checked once, resolved, and frozen.

:meth:`SearchConfig.build` is the one place where a search's options are validated, in one order, before
any work starts: the space, the objectives, the numbers, the predictor (loaded from a file, or a
:class:`~wsnas.SearchPredictor` object, copied), the evaluator and the sampler. The result is frozen: a
worker derives what is its own (the seed of its sampler, :meth:`SearchConfig.worker_seed`) where it uses it.
:meth:`SearchConfig.to_dict` is what the study stores (its keys are :data:`STORED`, each a keyword of
``build``), and :meth:`SearchConfig.from_dict` rebuilds the configuration from it for a joining worker.
Adding an option: a field, its check in ``build``, its key in :data:`STORED` if the study keeps it (a
study stored before the key existed gets ``build``'s default).
"""

from __future__ import annotations

import copy
import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from wsnas._errors import SearchConfigError
from wsnas._search._evaluators import TrainEvaluator, as_evaluator
from wsnas._search._objectives import OBJECTIVES, NetMeasures, check_objectives
from wsnas._search._protocol import SearchPredictor, check_predictor

if TYPE_CHECKING:
    import optuna

    from wsnas.search_spaces import SearchSpace

__all__ = ["SearchConfig", "SAMPLERS", "PRUNERS", "STORED"]

SAMPLERS = ("auto", "tpe", "nsga2", "random")
#: pruner names: Optuna's MedianPruner, SuccessiveHalvingPruner and HyperbandPruner with their defaults
PRUNERS = ("none", "median", "halving", "hyperband")
#: the keys of the configuration a study stores, in order (see :meth:`SearchConfig.to_dict`)
STORED = (
    "space", "evaluator", "objectives", "eval_budget", "predictor", "sampler", "n_candidates", "batch_size", "seed",
    "max_params", "kappa", "fine_tune_epochs", "pruner",
)  # fmt: skip


@dataclass(frozen=True, kw_only=True)
class SearchConfig:
    """Everything a worker needs, validated once by :meth:`build` (never changed afterwards).

    ``space_spec``, ``evaluator_spec``, ``predictor_spec``, ``sampler_name`` and ``pruner_name`` are how the
    study stores the space (its name, or its plug-in path), the evaluator, the predictor, the sampler and
    the pruner; ``sampler`` makes a fresh sampler for a seed, ``pruner`` a fresh pruner (``None``: none).
    """

    space: SearchSpace
    space_spec: str
    objectives: tuple[str, ...]
    evaluator: Callable[..., dict[str, float]] | None
    evaluator_spec: str | dict[str, Any] | None
    eval_budget: int
    predictor: SearchPredictor | None
    predictor_spec: str | None
    sampler: Callable[[int], optuna.samplers.BaseSampler]
    sampler_name: str
    n_candidates: int
    batch_size: int
    seed: int
    max_params: int | None
    kappa: float
    fine_tune_epochs: int
    measures: NetMeasures
    pruner: Callable[[], optuna.pruners.BasePruner] | None = None
    pruner_name: str = "none"

    @property
    def directions(self) -> list[str]:
        """The Optuna direction of each objective."""
        return [OBJECTIVES[n] for n in self.objectives]

    @property
    def evals_per_round(self) -> int:
        if self.predictor is None:
            return 1
        return max(1, round(self.eval_budget * self.batch_size / max(self.n_candidates, 1)))

    def worker_seed(self, index: int) -> int:
        """The sampler seed of the ``index``-th worker of a study (0: the first): ``seed + index``."""
        return self.seed + index

    def to_dict(self) -> dict[str, Any]:
        """The configuration as the study stores it: JSON values under the keys of :data:`STORED`."""
        specs = {
            "space": self.space_spec,
            "evaluator": self.evaluator_spec,
            "objectives": list(self.objectives),
            "predictor": self.predictor_spec,
            "sampler": self.sampler_name,
            "pruner": self.pruner_name,
        }
        return {key: specs[key] if key in specs else getattr(self, key) for key in STORED}

    @classmethod
    def from_dict(cls, stored: Mapping[str, Any], **overrides: Any) -> SearchConfig:
        """The configuration a study stored (:meth:`to_dict`), with ``overrides`` (``build`` keywords)."""
        return cls.build(**{**{k: stored[k] for k in STORED if k in stored and k not in overrides}, **overrides})

    @classmethod
    def build(
        cls,
        *,
        space: SearchSpace | str,
        evaluator: Any = None,
        eval_budget: int = 0,
        predictor: Any = None,
        objectives: str | Sequence[str] = ("accuracy",),
        sampler: Any = None,
        n_candidates: int | None = None,
        batch_size: int | None = None,
        seed: int = 0,
        max_params: int | None = None,
        kappa: float = 1.0,
        fine_tune_epochs: int = 3,
        pruner: Any = None,
    ) -> SearchConfig:
        """Check and resolve the arguments of :func:`wsnas.search` (see it for their meaning).

        Raises:
            wsnas.SearchConfigError, wsnas.UnknownSearchSpace, wsnas.PredictorFileError,
            wsnas.EvaluatorError: the first bad argument, in the order above (the pruner last).
        """
        from wsnas.search_spaces import SearchSpace, get_space

        if not isinstance(space, (str, SearchSpace)):
            raise SearchConfigError(
                f"space must be a search space name (see `wsnas spaces`) or a SearchSpace, got {space!r} "
                f"({type(space).__name__})"
            )
        space_obj = get_space(space) if isinstance(space, str) else space
        names = check_objectives(objectives)
        if "accuracy" not in names:
            raise SearchConfigError(f"objectives must include 'accuracy' (the rest are costs), got {list(names)}")
        for key, value, low in (("eval_budget", eval_budget, 0), ("seed", seed, 0)):
            if isinstance(value, bool) or not isinstance(value, int) or value < low:
                raise SearchConfigError(f"{key} must be an int >= {low}, got {value!r}")
        for key, value in (("n_candidates", n_candidates), ("batch_size", batch_size), ("max_params", max_params)):
            if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
                raise SearchConfigError(f"{key} must be None or an int >= 1, got {value!r}")
        if not kappa >= 0 or isinstance(fine_tune_epochs, bool) or not isinstance(fine_tune_epochs, int):
            raise SearchConfigError(
                f"kappa must be >= 0 and fine_tune_epochs an int, got {kappa!r}, {fine_tune_epochs!r}"
            )
        if eval_budget > 0 and evaluator is None:
            raise SearchConfigError(
                f"eval_budget={eval_budget} needs an evaluator (TrainEvaluator, TableEvaluator, ...)"
            )
        if eval_budget == 0 and predictor is None:
            raise SearchConfigError(
                "a training-free search (eval_budget=0) needs a predictor; pass predictor= or a budget"
            )
        pred, pred_spec = _predictor(predictor, space_obj)
        ev = as_evaluator(evaluator, space_obj) if evaluator is not None and eval_budget > 0 else None
        batch = (1 if pred is None else 32) if batch_size is None else batch_size
        if pred is None:
            batch = 1
        n_cand = n_candidates if n_candidates is not None else (max(8 * eval_budget, batch) if eval_budget else 500)
        population = max(4, min(50, (eval_budget or n_cand) // 4))
        factory, sampler_name = _sampler_factory(sampler, len(names), population)
        pruner_factory, pruner_name = _pruner_factory(pruner, names, eval_budget, ev)
        if isinstance(ev, TrainEvaluator):
            size, shape = ev.build_size(space_obj)
            measures = NetMeasures(space_obj, size, shape)
        else:
            measures = NetMeasures(space_obj)
        return cls(
            space=space_obj,
            space_spec=space if isinstance(space, str) and ":" in space else space_obj.name,
            objectives=names,
            evaluator=ev,
            evaluator_spec=_evaluator_spec(ev),
            eval_budget=eval_budget,
            predictor=pred,
            predictor_spec=pred_spec,
            sampler=factory,
            sampler_name=sampler_name,
            n_candidates=n_cand,
            batch_size=batch,
            seed=seed,
            max_params=max_params,
            kappa=kappa,
            fine_tune_epochs=fine_tune_epochs,
            measures=measures,
            pruner=pruner_factory,
            pruner_name=pruner_name,
        )


def _evaluator_spec(ev: Any) -> str | dict[str, Any] | None:
    """How the study stores ``ev``: its ``spec``; ``"callable"`` (or, for a TrainEvaluator that is not
    data, ``{"kind": "object", "why": ...}``) when a joining worker must be given the object again."""
    if ev is None:
        return None
    spec = getattr(ev, "spec", None)
    if spec:
        return spec
    why = getattr(ev, "why_not_data", None)
    return {"kind": "object", "type": type(ev).__name__, "why": why} if why else "callable"


def _pruner_factory(pruner: Any, objectives: tuple[str, ...], eval_budget: int, ev: Any) -> tuple[Any, str]:
    """A factory of fresh pruners (``None``: no pruning) and how the study stores the pruner."""
    import optuna

    if pruner is None or (isinstance(pruner, str) and pruner.lower() == "none"):
        return None, "none"
    if isinstance(pruner, optuna.pruners.BasePruner):
        made = pruner
        name = f"custom:{type(pruner).__name__}"
    elif isinstance(pruner, str) and pruner.lower() in PRUNERS:
        name = pruner.lower()
        made = None
    else:
        raise SearchConfigError(f"unknown pruner {pruner!r}; known pruners: {', '.join(PRUNERS)} or an Optuna pruner")
    if len(objectives) > 1:
        raise SearchConfigError(f"pruning needs one objective (as Optuna's pruners), got {list(objectives)}")
    if eval_budget == 0 or ev is None:
        raise SearchConfigError(f"pruner={name!r} stops real evaluations early; a training-free search has none")
    if not getattr(ev, "takes_trial", False):
        raise SearchConfigError(
            f"pruner={name!r} needs an evaluator that reports intermediate values (a TrainEvaluator, or a "
            f"callable taking a keyword 'trial'); this {type(ev).__name__} reports none"
        )
    if made is not None:
        return (lambda: copy.deepcopy(made)), name
    kinds = {"median": optuna.pruners.MedianPruner, "halving": optuna.pruners.SuccessiveHalvingPruner,
             "hyperband": optuna.pruners.HyperbandPruner}  # fmt: skip
    return kinds[name], name


def _sampler_factory(name: Any, n_objectives: int, population: int) -> tuple[Callable[[int], Any], str]:
    import optuna

    if isinstance(name, optuna.samplers.BaseSampler):
        sampler = name
        return (lambda seed: copy.deepcopy(sampler)), f"custom:{type(name).__name__}"
    key = "auto" if name is None else str(name).lower()
    if key not in SAMPLERS:
        raise SearchConfigError(f"unknown sampler {name!r}; known samplers: {', '.join(SAMPLERS)} or an Optuna sampler")
    if key == "auto":
        key = "tpe" if n_objectives == 1 else "nsga2"
    if key == "tpe":
        return (lambda seed: optuna.samplers.TPESampler(seed=seed)), key
    if key == "nsga2":
        return (lambda seed: optuna.samplers.NSGAIISampler(seed=seed, population_size=population)), key
    return (lambda seed: optuna.samplers.RandomSampler(seed=seed)), key


def _predictor(predictor: Any, space: SearchSpace) -> tuple[SearchPredictor | None, str | None]:
    """The search's own copy of ``predictor`` (``None``: no screening) and how the study stores it."""
    if predictor is None:
        return None, None
    if isinstance(predictor, (str, os.PathLike)):
        from wsnas.predictors import load
        from wsnas.search_spaces import space_names

        spec = str(predictor)
        plugin = space if space.name not in space_names() else None  # a plug-in space: the card cannot name it
        if spec == "default":
            _require_shipped(space.name)
            from wsnas.predictors import default_predictor

            pred: SearchPredictor = default_predictor(space)
        else:
            pred = load(spec, space=plugin)
        spec = spec if spec == "default" else str(Path(spec).resolve())
    else:
        pred, spec = copy.deepcopy(check_predictor(predictor)), "object"
    if pred.space.name != space.name:
        raise SearchConfigError(
            f"the predictor scores space {pred.space.name!r}, the search runs on {space.name!r}; transfer it "
            f"first (pred.transfer({space.name!r}), then save it and pass its file) or search without one "
            "(predictor=None, --predictor none)"
        )
    return pred, spec


def _require_shipped(name: str) -> None:
    """Nothing if a predictor is shipped for space ``name``; else the error that names the ways out.

    Raises:
        SearchConfigError: no shipped predictor for ``name``: search without one (``--predictor none``),
            or transfer a shipped predictor (NB201's) to the space, or train one.
    """
    from wsnas.predictors import MULTI_SPACE, shipped_names

    shipped = shipped_names()
    # none installed at all: the loader's error says how to train one; the multi-space one scores any space
    if name in shipped or MULTI_SPACE in shipped or not shipped:
        return
    source = "nb201" if "nb201" in shipped else shipped[0]
    out = f"{name}-from-{source}.safetensors"
    raise SearchConfigError(
        f"no shipped predictor for space {name!r} (shipped: {', '.join(shipped)}); either search without one: "
        f"--predictor none (predictor=None), or transfer the {source.upper()} predictor: "
        f'python -c \'import wsnas.predictors as p; p.load("{source}").transfer("{name}").save("{out}")\' '
        f"then --predictor {out} (better: fine-tune it on a few measured {name} architectures, "
        f"wsnas predictor finetune --predictor {source} --space {name} --zoo ZOO.jsonl --n 25 --out {out})"
    )
