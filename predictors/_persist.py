"""Predictor files: one safetensors file holding every member's weights and the card. No pickle, ever.

Layout: tensors ``m{i}.{name}`` (member ``i``'s state dict), ``pre.{name}`` (the pretrained encoder every
fit starts from, when the card has ``pretraining``) and string metadata

* ``format`` = ``"wsnas-predictor"``, ``format_version`` = ``"1"``;
* ``card``: the predictor's card as JSON (:attr:`WeightPredictor.card`);
* ``sha256``: digest of the tensor payload (every tensor's name, dtype, shape and bytes, in name order);
* ``card_sha256``: digest of the ``card`` string.

Loading reads the file with ``safetensors.safe_open`` (data only: nothing is executed), checks both
digests, rebuilds the predictor from its card and checks that the tensors are exactly the ones its
members need. Any problem is a :class:`~wsnas.PredictorFileError` naming the path and what is wrong.
Saving writes a temporary file in the target folder and renames it over the target (atomic).

This module knows no predictor class: :func:`load_as` builds the class it is given, and
:func:`wsnas.predictors.load` is ``load_as(WeightPredictor, ...)`` (in :mod:`wsnas.predictors._predictor`),
so the predictor can save and load itself through this module without an import cycle.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from wsnas._atomic import atomic_path
from wsnas._errors import PredictorFileError
from wsnas.predictors._format import FORMAT, FORMAT_VERSION

if TYPE_CHECKING:
    import torch

    from wsnas.predictors._predictor import WeightPredictor
    from wsnas.search_spaces import SearchSpace

__all__ = ["save", "load_as", "shipped_path", "shipped_names", "download_predictor", "SHIPPED_DIR", "MODEL_URI_SCHEMES"]

P = TypeVar("P", bound="WeightPredictor")

#: where the predictors that ship with wsnas live: ``load("nb201")`` reads ``SHIPPED_DIR / "nb201.safetensors"``
SHIPPED_DIR = Path(__file__).resolve().parent / "_shipped"
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]*")
#: URIs that :func:`load_as` resolves through MLflow
MODEL_URI_SCHEMES = ("models:/", "runs:/")
#: the predictor file's name inside an MLflow model (see :mod:`wsnas.predictors._mlflow`)
MODEL_DATA = "predictor.safetensors"


def _digest(tensors: dict[str, torch.Tensor]) -> str:
    """sha256 over ``(name, dtype, shape, bytes)`` of every tensor, in name order."""
    import torch

    h = hashlib.sha256()
    for name in sorted(tensors):
        t = tensors[name].detach().cpu().contiguous()
        h.update(f"{name}\0{str(t.dtype)}\0{list(t.shape)}\0".encode())
        h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes())
    return h.hexdigest()


def save(predictor: WeightPredictor, path: str | os.PathLike[str]) -> Path:
    """Write ``predictor`` (weights of every member and its card) to the one file ``path``, atomically.

    Returns:
        The path written.

    Raises:
        ValueError: the predictor is not fitted.
    """
    from safetensors.torch import save_file

    pretrained = getattr(predictor, "_pretrained", None)
    if not predictor.fitted and pretrained is None:
        raise ValueError("save needs a fitted (or pretrained) predictor: call fit(), from_zoo() or pretrain() first")
    tensors = {
        f"m{i}.{name}": t.detach().cpu().contiguous().clone()
        for i, member in enumerate(predictor.members)
        for name, t in member.state_dict().items()
    }
    if pretrained is not None:  # where every later fit starts
        tensors.update({f"pre.{name}": t.detach().cpu().contiguous().clone() for name, t in pretrained.items()})
    card = json.dumps(predictor.card, sort_keys=True, allow_nan=False)
    metadata = {
        "format": FORMAT,
        "format_version": str(FORMAT_VERSION),
        "card": card,
        "sha256": _digest(tensors),
        "card_sha256": hashlib.sha256(card.encode()).hexdigest(),
    }
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(target) as tmp:
        save_file(tensors, str(tmp), metadata=metadata)
    return target


def shipped_names() -> list[str]:
    """The names of the shipped predictors installed (``load(name)`` loads each), sorted."""
    return sorted(p.name.removesuffix(".safetensors") for p in SHIPPED_DIR.glob("*.safetensors"))


def shipped_path(name: str) -> Path:
    """Where the shipped predictor ``name`` lives (whether or not it is installed)."""
    return SHIPPED_DIR / f"{name}.safetensors"


def _resolve(path_or_name: str | os.PathLike[str]) -> Path:
    path = Path(path_or_name)
    if path.exists():
        if not path.is_file():
            raise PredictorFileError(f"predictor path {str(path)!r} is not a file")
        return path
    name = str(path_or_name)
    if _NAME.fullmatch(name):  # a bare name: a shipped predictor
        shipped = shipped_path(name)
        if shipped.is_file():
            return shipped
        raise PredictorFileError(
            f"no shipped predictor named {name!r} is installed yet (looked for {str(shipped)!r}); train one with "
            f"`wsnas predictor train --zoo ZOO.jsonl --out {name}.safetensors` and pass its path "
            "(wsnas predict --predictor FILE, or wsnas.predictors.load(FILE))"
        )
    raise PredictorFileError(f"predictor file {name!r} does not exist")


def _read(path: Path) -> tuple[dict[str, str], dict[str, torch.Tensor]]:
    from safetensors import safe_open

    try:  # safetensors reports every failure to open as "No such file or directory": open it here first
        with open(path, "rb") as f:
            f.read(1)
    except OSError as exc:
        raise PredictorFileError(f"cannot read predictor file {str(path)!r}: {exc.strerror or exc}") from None
    try:
        with safe_open(str(path), framework="pt", device="cpu") as f:
            metadata = dict(f.metadata() or {})
            tensors = {k: f.get_tensor(k) for k in f.keys()}
    except Exception as exc:  # safetensors raises its own SafetensorError, OSError, ...
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise PredictorFileError(
            f"{str(path)!r} is not a wsnas predictor file: it is not a readable safetensors file ({reason})"
        ) from None
    return metadata, tensors


def _card(path: Path, metadata: dict[str, str], tensors: dict[str, torch.Tensor]) -> dict[str, Any]:
    where = repr(str(path))
    if metadata.get("format") != FORMAT or "card" not in metadata:
        raise PredictorFileError(
            f"{where} is not a wsnas predictor file: a safetensors file whose metadata has no "
            f"format={FORMAT!r} and card (format={metadata.get('format')!r})"
        )
    if metadata.get("format_version") != str(FORMAT_VERSION):
        raise PredictorFileError(
            f"{where} has predictor format version {metadata.get('format_version')!r}; this wsnas reads "
            f"version {FORMAT_VERSION}"
        )
    text = metadata["card"]
    if metadata.get("card_sha256") != hashlib.sha256(text.encode()).hexdigest():
        raise PredictorFileError(f"{where}: the card does not match its sha256 (the file was tampered with)")
    if metadata.get("sha256") != _digest(tensors):
        raise PredictorFileError(
            f"{where}: the tensor data does not match its sha256 (the file was tampered with or corrupted)"
        )
    try:
        card = json.loads(text)
    except ValueError as exc:
        raise PredictorFileError(f"{where}: the card is not valid JSON ({exc})") from None
    if not isinstance(card, dict):
        raise PredictorFileError(f"{where}: the card must be a JSON object, got {type(card).__name__}")
    return card


def _rebuild(
    cls: type[P], path: Path, card: dict[str, Any], device: torch.device | str | None, space: SearchSpace | None = None
) -> P:
    from wsnas._errors import UnknownSearchSpace
    from wsnas.predictors._encoder import EncoderConfig
    from wsnas.search_spaces import get_space

    where = repr(str(path))
    try:
        if space is not None and space.name != card["space"]:
            raise PredictorFileError(f"{where} was trained on search space {card['space']!r}, not {space.name!r}")
        space = get_space(card["space"]) if space is None else space
    except UnknownSearchSpace:
        raise PredictorFileError(
            f"{where} was trained on search space {card['space']!r}, which is not registered here "
            "(register it with wsnas.search_spaces.register_space before loading)"
        ) from None
    except (KeyError, TypeError) as exc:
        raise PredictorFileError(f"{where}: the card has no valid 'space' ({exc!r})") from None
    try:
        enc = dict(card["encoder"])
        enc["aggregators"] = tuple(enc["aggregators"])
        encoding = card["encoding"]
        pred = cls(
            space,
            encoder=EncoderConfig(**enc),
            ensemble=card["ensemble"],
            seed=card["seed"],
            size=dict(encoding["size"]),
            init=encoding["init"],
            device=device,
        )
        target = {"name": str(card["target"]["name"]), "mean": float(card["target"]["mean"])}
        target["std"] = float(card["target"]["std"])
        if "space" in card["target"]:  # the space the statistics come from (after a transfer)
            target["space"] = str(card["target"]["space"])
        pred.target = target
        pred.training_data = card.get("training_data")
        pred.history = list(card.get("history") or [])
        types = card.get("layer_types")  # absent from files written before transfer existed
        if types is not None and not isinstance(types, list):
            raise TypeError(f"'layer_types' must be a list of strings, got {type(types).__name__}")
        pred.layer_types = None if types is None else [str(t) for t in types]
        pred.evaluation = dict(card.get("evaluation") or {})
        pretraining = card.get("pretraining")  # absent from files written before pretraining existed
        if pretraining is not None and not isinstance(pretraining, dict):
            raise TypeError(f"'pretraining' must be an object, got {type(pretraining).__name__}")
        pred.pretraining = pretraining
        from wsnas.predictors._prior import checked_prior

        pred.prior = checked_prior(card.get("prior"))  # absent from files written before the prior existed
    except (KeyError, TypeError, ValueError) as exc:
        raise PredictorFileError(f"{where}: the card is invalid ({type(exc).__name__}: {exc})") from None
    return pred


def load_as(
    cls: type[P],
    path_or_name: str | os.PathLike[str],
    *,
    device: torch.device | str | None = None,
    space: SearchSpace | None = None,
) -> P:
    """Load a predictor file, or a shipped predictor by name (``load("nb201")``), as a ``cls``.

    Args:
        cls: the predictor class its card rebuilds (:func:`wsnas.predictors.load`: ``WeightPredictor``).
        path_or_name: a file written by :func:`save`, the name of a shipped predictor (a bare name
            such as ``"nb201"`` that is not an existing file), or an MLflow model URI
            (``models:/NAME/VERSION``, ``runs:/RUN_ID/NAME``) of a predictor logged with
            :func:`wsnas.predictors.log_predictor`.
        device: where the encoders run; ``None``: CUDA when available, else the CPU.
        space: the search space object to use (its name must be the card's); ``None``: the registered
            space of that name.

    Raises:
        wsnas.PredictorFileError: the file does not exist, is not a wsnas predictor file (not
            safetensors, no or invalid card, another format version), is truncated, was tampered with
            (a digest does not match), or its tensors are missing, extra or of the wrong shape.
    """
    if not isinstance(path_or_name, (str, os.PathLike)):
        raise PredictorFileError(
            "a predictor is loaded from a file path, a shipped predictor's name or an MLflow model URI (a str or "
            f"os.PathLike), got {path_or_name!r} ({type(path_or_name).__name__})"
        )
    if isinstance(path_or_name, str) and path_or_name.startswith(MODEL_URI_SCHEMES):
        with tempfile.TemporaryDirectory(prefix="wsnas-model-") as tmp:  # the tensors are read into memory
            return load_as(cls, download_predictor(path_or_name, tmp), device=device, space=space)
    path = _resolve(path_or_name)
    metadata, tensors = _read(path)
    card = _card(path, metadata, tensors)
    pred = _rebuild(cls, path, card, device, space)
    where = repr(str(path))
    expected = {f"m{i}.{k}": v for i, m in enumerate(pred.members) for k, v in m.state_dict().items()}
    if pred.pretraining is not None:
        expected.update({f"pre.{k}": v for k, v in pred.members[0].state_dict().items()})
    missing = sorted(set(expected) - set(tensors))
    extra = sorted(set(tensors) - set(expected))
    if missing or extra:
        raise PredictorFileError(
            f"{where}: the tensors do not match the card's {pred.ensemble} encoders: "
            f"missing {missing[:3]}{'...' if len(missing) > 3 else ''}, unexpected {extra[:3]}"
            f"{'...' if len(extra) > 3 else ''}"
        )
    for name, ref in expected.items():
        t = tensors[name]
        if t.shape != ref.shape or t.dtype != ref.dtype:
            raise PredictorFileError(
                f"{where}: tensor {name!r} has shape {list(t.shape)} {t.dtype}, the card's encoder needs "
                f"{list(ref.shape)} {ref.dtype}"
            )
    for i, member in enumerate(pred.members):
        prefix = f"m{i}."
        member.load_state_dict({k[len(prefix) :]: v for k, v in tensors.items() if k.startswith(prefix)})
    if pred.pretraining is not None:
        pred._pretrained = {k[4:]: v for k, v in tensors.items() if k.startswith("pre.")}
    pred.fitted = bool(card.get("fitted", True))
    return pred


def download_predictor(uri: str, dst: str | os.PathLike[str] | None = None) -> Path:
    """The predictor file of the MLflow model at ``uri`` (``models:/NAME/VERSION``, ``runs:/ID/NAME``),
    downloaded to ``dst`` (default: a new temporary folder).

    Raises:
        wsnas.PredictorFileError: the model cannot be fetched or is not a wsnas predictor model.
    """
    import mlflow

    _check_mlflow_store(uri)
    try:
        local = Path(mlflow.artifacts.download_artifacts(artifact_uri=uri, dst_path=None if dst is None else str(dst)))
    except Exception as exc:  # MlflowException, connection errors: one clear message
        raise PredictorFileError(f"cannot fetch the MLflow model {uri!r}: {type(exc).__name__}: {exc}") from None
    found = sorted(local.rglob(MODEL_DATA))
    if not found:
        raise PredictorFileError(f"the MLflow model {uri!r} holds no {MODEL_DATA} (not a wsnas predictor model)")
    return found[0]


def _check_mlflow_store(uri: str) -> None:
    """The MLflow store that ``uri`` is looked up in was chosen and exists: a look-up creates nothing (MLflow
    would otherwise create ``./mlflow.db``, or the SQLite file it was pointed at, and then say "not found")."""
    import mlflow

    try:
        from mlflow.tracking._tracking_service.utils import is_tracking_uri_set
    except ImportError:  # another MLflow: only the environment tells
        chosen = bool(os.environ.get("MLFLOW_TRACKING_URI"))
    else:
        chosen = is_tracking_uri_set()
    if not chosen and not os.environ.get("MLFLOW_REGISTRY_URI"):
        raise PredictorFileError(
            f"cannot fetch the MLflow model {uri!r}: no MLflow tracking URI is set; set MLFLOW_TRACKING_URI "
            "(or call mlflow.set_tracking_uri) to the store the model was logged to, e.g. sqlite:///RUNS/mlflow.db "
            "or http://HOST:PORT"
        )
    store = mlflow.get_registry_uri() if uri.startswith("models:") else mlflow.get_tracking_uri()
    if store.startswith("sqlite:///"):
        db = Path(store[len("sqlite:///") :])
        if not db.is_file():
            raise PredictorFileError(
                f"cannot fetch the MLflow model {uri!r}: the MLflow store {store!r} does not exist "
                "(nothing was created)"
            )
