"""The trainable predictor: an ensemble of weight encoders ranking architectures from generated weights.

>>> pred = WeightPredictor(get_space("nb201"), ensemble=5, seed=0).fit(archs, accs)
>>> out = pred.predict(candidates)            # out.score [n], out.uncertainty [n]

Every architecture is encoded as the parameter graph of its network built at the encoding width
(``size``, default ``space.proxy_size``) with weights generated from the fixed seed ``seed``. Member
``i`` of the ensemble is initialised with ``seed + i`` and sees the training data in its own order. The
loss is a logistic pairwise ranking loss over all ordered pairs of a mini-batch plus ``regression_weight``
times the MSE to the standardised targets, so scores come out in target units (``mean + std * z``).
Each member stops early on the validation Spearman correlation and keeps its best epoch.

:meth:`WeightPredictor.pretrain` first teaches the encoder, without labels, to predict the zero-cost
proxies of many architectures (see :mod:`wsnas.predictors._pretrain`); every later :meth:`~WeightPredictor.fit`
starts each member from that encoder with a fresh score head.
"""

from __future__ import annotations

import copy
import os
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from wsnas._arch import Arch
from wsnas.encoding import CandidateGraphs, ParamGraph, batch_graphs
from wsnas.predictors._encoder import EncoderConfig, WeightEncoder
from wsnas.predictors._fit import FitOptions, fit_spaces, train_epoch
from wsnas.predictors._format import FORMAT, FORMAT_VERSION
from wsnas.predictors._parallel import WorkerPool, use_workers
from wsnas.predictors._persist import load_as, save
from wsnas.predictors._prior import blend, fine_tune_weight, fine_tuned_prior, size_values, standardised_sizes
from wsnas.predictors._training import (
    Prediction,
    as_targets,
    check_positive,
    progress_bar,
    ranking_loss,
    space_graphs,
    zoo_spaces,
    zoo_training_set,
)
from wsnas.predictors._transfer import layer_types, transfer

if TYPE_CHECKING:
    from wsnas.search_spaces import SearchSpace
    from wsnas.training import Task

__all__ = ["Prediction", "WeightPredictor", "FORMAT", "FORMAT_VERSION", "load"]


class WeightPredictor:
    """An ensemble of :class:`WeightEncoder` s scoring architectures of one search space.

    Args:
        space: the search space.
        encoder: the configuration of every member.
        ensemble: number of members (>= 1).
        seed: member ``i`` is initialised with ``seed + i``; also the weight-generator seed of every
            architecture and the seed of the train/validation split.
        size: the encoding width (``space.build`` size keywords); ``None``: ``space.proxy_size``.
        init: the weight init rule of the generated networks.
        device: where the encoders run; ``None``: CUDA when available, else the CPU.
    """

    def __init__(
        self,
        space: SearchSpace,
        *,
        encoder: EncoderConfig = EncoderConfig(),  # noqa: B008 - a frozen dataclass
        ensemble: int = 5,
        seed: int = 0,
        size: dict[str, Any] | None = None,
        init: str = "kaiming_normal",
        device: torch.device | str | None = None,
    ) -> None:
        if isinstance(ensemble, bool) or not isinstance(ensemble, int) or ensemble < 1:
            raise ValueError(f"ensemble must be an int >= 1, got {ensemble!r}")
        if isinstance(seed, bool) or not isinstance(seed, int) or not 0 <= seed < 2**62:
            raise ValueError(f"seed must be an int in [0, 2**62), got {seed!r}")
        self.space = space
        self.encoder = encoder
        self.ensemble = ensemble
        self.seed = seed
        self.candidates = CandidateGraphs(space, size=size, init=init)
        self.device = torch.device(device if device is not None else ("cuda" if torch.cuda.is_available() else "cpu"))
        self.members: list[WeightEncoder] = []
        for i in range(ensemble):
            with torch.random.fork_rng(devices=[]):  # seeded init that leaves the global generator alone
                torch.manual_seed(seed + i)
                self.members.append(WeightEncoder(encoder).to(self.device))
        self.target: dict[str, Any] = {"name": "target", "mean": 0.0, "std": 1.0}
        self.training_data: dict[str, Any] | None = None
        self.history: list[dict[str, Any]] = []
        self.evaluation: dict[str, Any] = {}
        #: layer types of the networks it was trained on (see :mod:`wsnas.predictors._transfer`)
        self.layer_types: list[str] | None = None
        #: the card's record of :meth:`pretrain` (``None``: not pretrained) and the pretrained encoder's state
        self.pretraining: dict[str, Any] | None = None
        self._pretrained: dict[str, torch.Tensor] | None = None
        #: the size prior (see :mod:`wsnas.predictors._prior`); ``None``: scores are the ensemble's alone
        self.prior: dict[str, Any] | None = None
        self.fitted = False

    def __repr__(self) -> str:
        state = "fitted" if self.fitted else "not fitted"
        return f"WeightPredictor({self.space.name!r}, ensemble={self.ensemble}, seed={self.seed}, {state})"

    # -- the card ----------------------------------------------------------------------------------------
    @property
    def card(self) -> dict[str, Any]:
        """JSON-ready description: versions, space, encoding, encoder, training data, history, evaluation."""
        from wsnas._version import __version__

        return {
            "format": FORMAT,
            "format_version": FORMAT_VERSION,
            "wsnas_version": __version__,
            "space": self.space.name,
            "encoding": {
                "size": dict(self.candidates.size),
                "init": self.candidates.init,
                "input_shape": list(self.candidates.input_shape),
                "generator_seed": self.seed,
            },
            "encoder": self.encoder.to_dict(),
            "ensemble": self.ensemble,
            "seed": self.seed,
            "target": dict(self.target),
            "training_data": copy.deepcopy(self.training_data),
            "history": copy.deepcopy(self.history),
            "layer_types": None if self.layer_types is None else list(self.layer_types),
            "evaluation": copy.deepcopy(self.evaluation),
            "pretraining": copy.deepcopy(self.pretraining),
            "prior": copy.deepcopy(self.prior),
            "fitted": self.fitted,
        }

    # -- graphs ------------------------------------------------------------------------------------------
    def _archs(self, archs: Sequence[Arch | str]) -> list[Arch]:
        return [self.candidates.arch(a) for a in archs]

    def _single_graphs(self, archs: Sequence[Arch], batch_size: int = 256) -> list[ParamGraph]:
        """One graph per architecture, built once (in chunks of ``batch_size``) and reused every epoch."""
        return space_graphs(self.candidates, archs, self.seed, batch_size)

    def _z(self, targets: np.ndarray) -> torch.Tensor:
        return torch.as_tensor((targets - self.target["mean"]) / self.target["std"], dtype=torch.float32)

    def _raw_scores(self, member: WeightEncoder, graphs: list[ParamGraph], batch_size: int = 64) -> np.ndarray:
        """``[n]`` standardised scores of ``member`` on ``graphs``."""
        member.eval()
        out = []
        with torch.inference_mode():
            for i in range(0, len(graphs), batch_size):
                g = batch_graphs(graphs[i : i + batch_size]).to(self.device)
                out.append(member(g).double().cpu().numpy())
        return np.concatenate(out) if out else np.zeros(0)

    # -- training ----------------------------------------------------------------------------------------
    def pretrain(
        self,
        archs: Sequence[Arch | str],
        targets: np.ndarray | None = None,
        target_names: Sequence[str] | None = None,
        *,
        task: Task | None = None,
        epochs: int = 4,
        batch_size: int = 64,
        lr: float = 2e-3,
        progress: bool = True,
        other_spaces: Mapping[str | SearchSpace, Sequence[Arch | str] | tuple[Sequence[Arch | str], np.ndarray]]
        | None = None,
        other_sizes: Mapping[str, dict[str, Any]] | None = None,
        checkpoint: str | os.PathLike[str] | None = None,
    ) -> WeightPredictor:
        """Teach the encoder, without labels, to predict ``targets [n, P]`` of ``archs`` (only their ranks
        matter; ``None``: every zero-cost proxy on ``task``'s batch, about 0.1 CPU-s an NB201 cell); resets
        any fit. See :func:`wsnas.predictors._pretrain.pretrain`: the encoder gains a pretraining head of
        ``P'`` outputs (the varying targets) that its score head reads, every member starts from member 0's
        best epoch (held-out fifth, at most 500) with its own fresh score head, the card's ``pretraining``
        records targets, sizes and held-out Spearman. ValueError: < 3 archs, targets of the wrong shape, NaN.

        ``other_spaces`` (space or name -> archs, or ``(archs, targets [m, P])`` in the columns of
        ``target_names``) pretrains on more spaces at once: each space's targets are ranked on their own, its
        networks encoded at ``other_sizes[name]`` (default: its transfer width); ``pretraining["spaces"]``
        records them. ``checkpoint`` (a file path) keeps the proxies computed so far: the same call after a stop
        resumes from them (see :mod:`wsnas.predictors._proxy_cache`).
        """
        from wsnas.predictors._pretrain import pretrain, space_sets

        others = space_sets(other_spaces or {}, labelled=False)
        return pretrain(self, self._archs(archs), targets, target_names, task=task, epochs=epochs,
                        batch_size=batch_size, lr=lr, progress=progress, other_spaces=others,
                        other_sizes=dict(other_sizes or {}), checkpoint=checkpoint)  # fmt: skip

    def fit(
        self,
        archs: Sequence[Arch | str],
        targets: Sequence[float] | np.ndarray,
        *,
        val_fraction: float = 0.2,
        epochs: int = 100,
        batch_size: int = 32,
        lr: float = 1e-3,
        weight_decay: float = 1e-4,
        patience: int = 15,
        regression_weight: float = 0.5,
        pretrained_lr_scale: float = 0.3,
        target_name: str = "target",
        progress: bool = True,
        checkpoint: str | os.PathLike[str] | None = None,
        other_spaces: Mapping[str | SearchSpace, tuple[Sequence[Arch | str], Sequence[float] | np.ndarray]]
        | None = None,
        other_sizes: Mapping[str, dict[str, Any]] | None = None,
        size_prior: bool = True,
    ) -> WeightPredictor:
        """Train every member from scratch on ``(archs, targets)`` (higher target = better architecture);
        after :meth:`pretrain`, from the pretrained encoder (learning at ``lr * pretrained_lr_scale``, 0:
        frozen) with a fresh score head (at ``lr``). A ``val_fraction`` of the data (drawn with ``seed``) is
        held out; each member keeps the epoch of best validation Spearman and stops after ``patience``
        epochs without improvement. With ``val_fraction=0`` every member trains for ``epochs`` epochs.

        With ``checkpoint`` (a file path), the progress is saved there as the fit goes (every few seconds and
        after each member); the same call after a stop (Ctrl-C, a crash) resumes from it and ends with the
        predictor an unstopped fit gives. The file is removed when the fit completes (see
        :mod:`wsnas.predictors._checkpoint`).

        ``other_spaces`` (space or name -> ``(archs, targets)``) trains on labelled architectures of more
        spaces at once, their networks encoded at ``other_sizes[name]`` (default: the space's transfer
        width); each space's targets are standardised on their own and holds out its own validation set
        (see :func:`wsnas.predictors._fit.fit_spaces`). :meth:`transfer` to one of them then uses its width
        and target statistics.

        With ``size_prior`` (the default), scores blend the ensemble with the parameter count, weighted per
        space chosen from its labels: the ensemble's validation Spearman, the parameter count's on every label
        (:mod:`wsnas.predictors._prior`); ``False``: the ensemble alone.

        Raises:
            ValueError: lengths differ, fewer than 4 architectures, a non-finite target, bad options, a
                ``checkpoint`` file of another fit (other data or options).
            wsnas.PredictorFileError: ``checkpoint`` is not a fit checkpoint.
        """
        from wsnas.predictors._pretrain import space_sets

        arch_list = self._archs(archs)
        y = as_targets(targets, len(arch_list))
        if len(arch_list) < 4:
            raise ValueError(f"fit needs at least 4 architectures, got {len(arch_list)}")
        if not 0.0 <= val_fraction < 1.0:
            raise ValueError(f"val_fraction must be in [0, 1), got {val_fraction}")
        check_positive(epochs=epochs, batch_size=batch_size, patience=patience)
        if not 0.0 <= pretrained_lr_scale <= 1.0:
            raise ValueError(f"pretrained_lr_scale must be in [0, 1], got {pretrained_lr_scale}")
        n_val = max(round(val_fraction * len(arch_list)), 3) if val_fraction > 0 else 0
        if len(arch_list) - n_val < 2:
            raise ValueError(
                f"fit holds out {n_val} architectures for validation (val_fraction={val_fraction}, at least 3) "
                f"and needs 2 more to train on, got {len(arch_list)} in all"
            )
        data = [(self.space, arch_list, y), *space_sets(other_spaces or {}, labelled=True, own=self.space.name)]
        options = FitOptions(val_fraction, epochs, batch_size, lr, weight_decay, patience, regression_weight,
                             pretrained_lr_scale)  # fmt: skip
        fit_spaces(self, data, sizes=dict(other_sizes or {}), options=options, target_name=target_name,
                   progress=progress, checkpoint=checkpoint, size_prior=size_prior)  # fmt: skip
        return self

    def _loss(
        self, graphs: list[ParamGraph], z: torch.Tensor, regression_weight: float, scores: np.ndarray | None = None
    ) -> float:
        """Mean over members of the full-set loss (ranking over all pairs + weighted MSE); ``scores [K, n]``:
        the members' raw scores of ``graphs`` when the caller has them."""
        total = 0.0
        for k, member in enumerate(self.members):
            raw = self._raw_scores(member, graphs) if scores is None else scores[k]
            total += float(ranking_loss(torch.as_tensor(raw, dtype=torch.float32), z, regression_weight))
        return total / len(self.members)

    def loss(
        self, archs: Sequence[Arch | str], targets: Sequence[float] | np.ndarray, *, regression_weight: float = 0.5
    ) -> float:
        """The training loss of the ensemble on ``(archs, targets)`` (mean over members, whole set at once)."""
        self._require_fitted("loss")
        arch_list = self._archs(archs)
        y = as_targets(targets, len(arch_list))
        return self._loss(self._single_graphs(arch_list), self._z(y), regression_weight)

    def fine_tune(
        self,
        archs: Sequence[Arch | str],
        targets: Sequence[float] | np.ndarray,
        *,
        epochs: int = 10,
        lr: float = 3e-4,
        batch_size: int = 32,
        weight_decay: float = 1e-4,
        regression_weight: float = 0.5,
        progress: bool = False,
    ) -> WeightPredictor:
        """Continue training every member on new labels (targets standardised as in :meth:`fit`).

        No early stopping: each member trains ``epochs`` epochs in its own order. The event, with the
        training loss before and after, is appended to the card's history, and the layer types of
        ``archs`` join the card's ``layer_types``. The first fine-tuning after :meth:`transfer` to another
        space re-standardises the targets on these labels (mean and std of the new space); 10 labels or more
        choose the size prior's weight again (see :mod:`wsnas.predictors._prior`).
        """
        self._require_fitted("fine_tune")
        arch_list = self._archs(archs)
        y = as_targets(targets, len(arch_list))
        if len(arch_list) < 2:
            raise ValueError(f"fine_tune needs at least 2 architectures, got {len(arch_list)}")
        check_positive(epochs=epochs, batch_size=batch_size)
        graphs = self._single_graphs(arch_list)
        for member in self.members:  # a frozen-encoder fit (pretrained_lr_scale=0) leaves none frozen here
            member.requires_grad_(True)
        restandardised = self.target.get("space", self.space.name) != self.space.name and float(y.std()) > 0
        if restandardised:
            self.target = {**self.target, "mean": float(y.mean()), "std": float(y.std()), "space": self.space.name}
        z = self._z(y)
        scores = np.stack([self._raw_scores(m, graphs) for m in self.members])  # [K, n], before training
        choice = fine_tune_weight(self, arch_list, scores.mean(0), y)  # out of sample when the labels are new
        before = self._loss(graphs, z, regression_weight, scores=scores)
        bar = progress_bar(self.ensemble * epochs, "fine_tune", progress)
        step = len(self.history)
        for i, member in enumerate(self.members):
            opt = torch.optim.AdamW(member.parameters(), lr=lr, weight_decay=weight_decay)
            rng = np.random.default_rng([self.seed, i, step])
            for _ in range(epochs):
                train_epoch(self, member, opt, graphs, z, rng, batch_size, regression_weight)
                bar.update(1)
        bar.close()
        self.prior = fine_tuned_prior(self, choice, len(arch_list))
        if self.layer_types is not None:
            self.layer_types = sorted({*self.layer_types, *layer_types(self.candidates, arch_list, n=16, seed=step)})
        self.history.append(
            {
                "event": "fine_tune",
                "space": self.space.name,
                "n": len(arch_list),
                "epochs": epochs,
                "lr": lr,
                "restandardised": restandardised,
                "train_loss_before": before,
                "train_loss": self._loss(graphs, z, regression_weight),
            }
        )
        return self

    def transfer(
        self, space: SearchSpace | str, *, size: dict[str, Any] | None = None, check: int = 32, adapt: bool = False
    ) -> WeightPredictor:
        """A copy bound to ``space`` (object or name) at encoding width ``size`` (``None``: a per-space default,
        :data:`~wsnas.predictors.TRANSFER_SIZES`) with the same trained members, target statistics and record;
        warns (:class:`~wsnas.predictors.UnseenLayerWarning`) naming layer types of ``check`` sampled networks
        of ``space`` it never saw, and with ``adapt`` gives them the weights of their nearest seen types
        (:func:`~wsnas.predictors.adapt_unseen`). See :mod:`wsnas.predictors._transfer`.

        Raises:
            ValueError: ``space`` cannot build its networks at ``size``. RuntimeError: not fitted.
        """
        return transfer(self, space, size=size, check=check, adapt=adapt, cls=WeightPredictor)

    # -- prediction --------------------------------------------------------------------------------------
    def predict(
        self, archs: Sequence[Arch | str], *, batch_size: int = 64, workers: int = 1, progress: bool = False
    ) -> Prediction:
        """Score ``archs`` (Arch objects or the space's strings), in target units, higher = better.

        Args:
            batch_size: architectures per batched graph (64 was the fastest on one CPU thread, NB201 C=2:
                2.4 ms per architecture for five encoders vs 4.1-5.4 at 256, graphs cached).
            workers: processes; ``> 1`` scores chunks in single-threaded worker processes, each holding
                a copy of this predictor (see :mod:`wsnas.predictors._parallel`); same scores as ``1``.
                The workers start by forkserver (or spawn), which re-imports a script's main module:
                call this under ``if __name__ == "__main__":`` in a script.
            progress: a tqdm bar on stderr counting architectures.

        Returns:
            :class:`Prediction` with ``score [n]`` (ensemble mean, blended with the size prior when the
            predictor has one) and ``uncertainty [n]`` (ensemble std, scaled alike).
        """
        self._require_fitted("predict")
        check_positive(batch_size=batch_size, workers=workers)
        count = use_workers(self, len(archs), batch_size=batch_size, workers=workers)
        entry = None if self.prior is None else self.prior["spaces"].get(self.space.name)
        blended = entry is not None and bool(entry["weight"])
        if count:
            # the workers start while the input is validated here
            with WorkerPool(self, count, cls=WeightPredictor) as pool:
                arch_list = self._archs(archs)
                scores, logs = pool.scores(arch_list, batch_size=batch_size, progress=progress, sizes=blended)
        else:
            arch_list = self._archs(archs)
            logs = np.zeros(len(arch_list)) if blended else None
            scores = self._member_scores(arch_list, batch_size, progress, sizes=logs)
        if blended:  # the counts were read while each network's spec was at hand (no second build)
            scores = blend(scores, standardised_sizes(self.candidates, arch_list, entry, logs=logs), entry)
        scores = self.target["mean"] + self.target["std"] * scores
        return Prediction(score=scores.mean(axis=0), uncertainty=scores.std(axis=0))

    def _member_scores(
        self, arch_list: Sequence[Arch], batch_size: int, progress: bool = False, sizes: np.ndarray | None = None
    ) -> np.ndarray:
        """``[K, n]`` standardised scores of every member on validated architectures; ``sizes [n]``, when given,
        is filled with their size feature (:func:`~wsnas.predictors._prior.size_values` with the prior's
        combination for this space, read from the specs and graphs just built)."""
        from tqdm import tqdm

        entry = None if self.prior is None else self.prior["spaces"].get(self.space.name)
        coef = None if entry is None else entry.get("coef")

        scores = np.zeros((self.ensemble, len(arch_list)))  # [K, n]
        for m in self.members:
            m.eval()
        bar = tqdm(total=len(arch_list), desc="predict", unit="arch", disable=not progress, leave=False)
        with torch.inference_mode():
            for i in range(0, len(arch_list), batch_size):
                chunk = arch_list[i : i + batch_size]  # validated above: the private path skips a second check
                g = self.candidates._graphs(chunk, [self.seed] * len(chunk), "cpu").to(self.device)
                if sizes is not None:  # the chunk's specs are in the candidates' cache now
                    sizes[i : i + batch_size] = size_values(self.candidates, chunk, coef)
                for k, m in enumerate(self.members):
                    scores[k, i : i + batch_size] = m(g).double().cpu().numpy()
                bar.update(len(chunk))
        bar.close()
        return scores

    def save(self, path: str | os.PathLike[str]) -> os.PathLike[str]:
        """Write the predictor to one safetensors file (see :func:`wsnas.predictors.save`)."""
        return save(self, path)

    @staticmethod
    def load(path_or_name: str | os.PathLike[str], *, device: torch.device | str | None = None) -> WeightPredictor:
        """Read a predictor file or a shipped predictor by name (see :func:`wsnas.predictors.load`)."""
        return load(path_or_name, device=device)

    def _require_fitted(self, what: str) -> None:
        if not self.fitted:
            raise RuntimeError(f"{what} needs a fitted predictor: call fit() or from_zoo() first, or load() one")

    # -- zoos --------------------------------------------------------------------------------------------
    @classmethod
    def from_zoo(
        cls,
        paths: str | os.PathLike[str] | Sequence[str | os.PathLike[str]],
        *,
        space: SearchSpace | str | None = None,
        target: str = "val_acc",
        encoder: EncoderConfig = EncoderConfig(),  # noqa: B008 - a frozen dataclass
        ensemble: int = 5,
        seed: int = 0,
        size: dict[str, Any] | None = None,
        device: torch.device | str | None = None,
        **fit_options: Any,
    ) -> WeightPredictor:
        """Fit on the records of wsnas zoo files (:meth:`wsnas.Zoo.load`), skipping diverged records.

        Records of one architecture (several seeds or tasks) are averaged into one target. ``space``
        defaults to the records' space; when the records come from several spaces and ``space`` is
        ``None``, the predictor trains on all of them at once (``fit(other_spaces=...)``), bound to the
        first file's space. ``fit_options`` go to :meth:`fit`; ``target`` is one of ``val_acc``,
        ``val_loss``, ``params``, ``flops`` (scores predict it as is).

        Raises:
            ValueError: no usable record, an unknown target field.
            wsnas.ZooFileError: a file is not a zoo.
        """
        path_list = [paths] if isinstance(paths, (str, os.PathLike)) else list(paths)
        names = zoo_spaces(path_list) if space is None else []
        space_obj, archs, y, description = zoo_training_set(path_list, space or (names[0] if names else None), target)
        if len(names) > 1:
            others = {n: zoo_training_set(path_list, n, target) for n in names[1:]}
            fit_options["other_spaces"] = {n: (a, t) for n, (_, a, t, _) in others.items()}
            description["records"] += sum(d["records"] for *_, d in others.values())
        fit_options.setdefault("target_name", target)
        pred = cls(space_obj, encoder=encoder, ensemble=ensemble, seed=seed, size=size, device=device)
        pred.fit(archs, y, **fit_options)
        assert pred.training_data is not None
        pred.training_data.update(description)
        return pred


def load(
    path_or_name: str | os.PathLike[str],
    *,
    device: torch.device | str | None = None,
    space: SearchSpace | None = None,
) -> WeightPredictor:
    """Load a predictor file, a shipped predictor by name (``load("nb201")``) or an MLflow model URI as a
    :class:`WeightPredictor`; see :func:`wsnas.predictors._persist.load_as` for the arguments.

    Raises:
        wsnas.PredictorFileError: the file is missing, not a wsnas predictor file, truncated or tampered with.
    """
    return load_as(WeightPredictor, path_or_name, device=device, space=space)
