"""The chosen architecture as a network a user can ship: weights, the architecture, and two ways to load it.

>>> res = export("nb201", result.best.arch, "winner/", size={"C": 8, "N": 1})   # generated weights
>>> res = export(space, arch, "winner/", weights="trained", task=digits(epochs=2), overwrite=True)
>>> net = torch.jit.load("winner/model.ts")        # plain PyTorch: [B, 3, 32, 32] -> [B, 10] logits

``export`` builds ``space.build(arch, **size)``, gives it weights (generated from ``seed``, trained on a
task from those generated weights, or read from a state dict) and writes into ``out_dir``:

* ``model.safetensors``: the ``state_dict`` (parameters and batch-norm buffers; no pickled code);
* ``arch.json``: the space, the architecture (string and graph JSON), the exact build keywords, where the
  weights came from, the seed, the wsnas and torch versions, the parameter count, input shape and classes;
* ``rebuild.py``: ``load() -> nn.Module``, the network rebuilt through wsnas with those weights;
* ``model.ts`` (``torchscript=True``): a TorchScript trace that ``torch.jit.load`` runs without wsnas;
* ``model.pt2`` (``torch_export=True``): a ``torch.export`` program with a dynamic batch dimension,
  loaded by ``torch.export.load(path).module()`` without wsnas (recent PyTorch deprecates TorchScript;
  ``torch.export`` is its successor, TorchScript the format older PyTorch and libtorch read).

Every file is written atomically (:mod:`wsnas._atomic`), ``arch.json`` last: a folder with ``arch.json``
holds a whole export. Torch loads inside :func:`export`, so importing this module stays cheap.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import warnings
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from wsnas._arch import Arch
from wsnas._atomic import atomic_path, atomic_write_bytes, atomic_write_text
from wsnas._errors import InvalidArchitecture, WsnasError

if TYPE_CHECKING:
    import torch
    import torch.nn as nn

    from wsnas.search_spaces import SearchSpace
    from wsnas.training._tasks import Task

__all__ = ["ExportError", "ExportResult", "export", "EXPORT_FILES"]

#: every file :func:`export` may write, by role
EXPORT_FILES = {
    "state": "model.safetensors",
    "arch": "arch.json",
    "rebuild": "rebuild.py",
    "torchscript": "model.ts",
    "torch_export": "model.pt2",
}
_WEIGHT_KINDS = ("generated", "trained")
_TOLERANCE = {"rtol": 1e-4, "atol": 1e-5}  # a compiled program vs the module it came from


class ExportError(WsnasError, ValueError):
    """An export was asked for wrongly: an unknown weights kind, a missing task or state file, a size the
    space cannot build, weights that do not fit the network, an output folder that is not empty."""


@dataclass(frozen=True)
class ExportResult:
    """What :func:`export` wrote.

    ``files``: role (``state``, ``arch``, ``rebuild``, ``torchscript``, ``torch_export``) -> path, for the
    files written; ``build_kwargs``: the keywords ``space.build`` was called with (``rebuild.py`` uses
    them); ``input_shape``: ``(C, H, W)`` of one input, so the network maps ``[B, C, H, W]`` to
    ``[B, num_classes]``; ``weights``: ``generated``, ``trained`` or ``given``; ``training``: the training
    run's measurements when ``weights="trained"``; ``module``: the exported network (eval mode).
    """

    out_dir: Path
    files: dict[str, Path]
    space: str
    arch: str
    build_kwargs: dict[str, Any]
    params: int
    input_shape: tuple[int, int, int]
    num_classes: int
    weights: str
    seed: int
    training: dict[str, Any] | None = None
    module: nn.Module | None = field(default=None, repr=False, compare=False)

    @property
    def load_hint(self) -> str:
        """The one line that loads the export in plain PyTorch (or through ``rebuild.py`` without a trace)."""
        if "torchscript" in self.files:
            return f"torch.jit.load({str(self.files['torchscript'])!r})"
        if "torch_export" in self.files:
            return f"torch.export.load({str(self.files['torch_export'])!r}).module()"
        return f"python {self.files['rebuild']}  # or import it and call load()"


def export(
    space: SearchSpace | str,
    arch: Arch | str | Any,
    out_dir: str | os.PathLike[str],
    *,
    size: Mapping[str, Any] | None = None,
    weights: str | os.PathLike[str] | Mapping[str, Any] = "generated",
    task: Task | str | None = None,
    seed: int = 0,
    torchscript: bool = True,
    torch_export: bool = True,
    input_shape: tuple[int, int, int] | None = None,
    overwrite: bool = False,
) -> ExportResult:
    """Write ``arch`` of ``space`` as a built network with weights into ``out_dir`` (see the module doc).

    Args:
        space: a search space or its registered name (``rebuild.py`` finds it by name, so a space of your
            own must be registered with :func:`wsnas.search_spaces.register_space` where it is loaded).
        arch: an :class:`~wsnas.Arch` of ``space``, its string form, or a search record (``result.best``).
        out_dir: a folder that does not exist or is empty (created); ``overwrite=True`` allows a full one.
        size: size keywords for ``space.build`` (``{"C": 16, "N": 5}`` for NB201); ``None``: the space's
            default build size.
        weights: ``"generated"`` (wsnas's weight generator with ``seed``), ``"trained"`` (trained on
            ``task`` from the generated weights with :func:`wsnas.train`), a ``.safetensors`` file of a
            state dict (a previous export's ``model.safetensors``) or a state dict itself.
        task: a :class:`~wsnas.Task` or a built-in task's name; needed by ``"trained"``. It sets the
            network's ``num_classes``, ``in_channels`` and input shape, with any weights.
        seed: seeds the generated weights (and the data order of training).
        torchscript: also write ``model.ts`` (``torch.jit.trace`` on one example input).
        torch_export: also write ``model.pt2`` (``torch.export`` with a dynamic batch dimension).
        input_shape: ``(C, H, W)`` of one input; default the task's, else the space's ``input_shape``
            with ``in_channels`` from ``size``.
        overwrite: write into a non-empty ``out_dir`` (files of an earlier export are replaced).

    Returns:
        An :class:`ExportResult`; ``result.module`` is the network in eval mode.

    Raises:
        wsnas.UnknownSearchSpace, wsnas.UnknownTask, wsnas.InvalidArchitecture, wsnas.DatasetError,
        ExportError: bad input, each before anything is written.
    """
    import torch

    from wsnas._netstats import count_params
    from wsnas._version import __version__
    from wsnas.search_spaces import get_space, space_names
    from wsnas.training._tasks import get_task

    space_obj: SearchSpace = get_space(space) if isinstance(space, str) else space
    if space_obj.name not in space_names():
        warnings.warn(f"space {space_obj.name!r} is not registered: rebuild.py finds spaces by name, so register it "
                      "(wsnas.search_spaces.register_space) where the export is loaded", stacklevel=2)  # fmt: skip
    arch_obj = _arch_of(space_obj, arch)
    text = space_obj.to_string(arch_obj)
    if isinstance(task, str):
        task = get_task(task)
    kind = _weights_kind(weights)
    if kind == "trained" and task is None:
        raise ExportError("weights='trained' needs a task (task=digits(...), or --task on the command line)")
    out = Path(out_dir)
    _check_out_dir(out, overwrite)
    kwargs = _build_kwargs(space_obj, size, task)
    shape = _input_shape(space_obj, kwargs, task, input_shape)

    training: dict[str, Any] | None = None
    if kind == "trained":
        net, training = _trained(space_obj, arch_obj, kwargs, task, seed)  # type: ignore[arg-type]
    else:
        net = _build(space_obj, arch_obj, kwargs)
        if kind == "generated":
            _load_generated(net, seed)
        else:
            _load_state(net, weights, kind)
    net.eval()
    example = torch.randn((2, *shape), generator=torch.Generator().manual_seed(seed))  # [2, C, H, W]
    try:
        with torch.no_grad():
            logits = net(example)  # [2, num_classes]
    except Exception as exc:  # noqa: BLE001 - the shape is user input; say which one failed
        raise ExportError(
            f"the network of {space_obj.name} does not run on inputs of shape {list(shape)}: {exc}"
        ) from None
    if logits.dim() != 2:
        raise ExportError(f"the network's output has shape {list(logits.shape)}, expected [B, num_classes]")

    out.mkdir(parents=True, exist_ok=True)
    files = {"state": out / EXPORT_FILES["state"]}
    _save_state(net, files["state"])
    if torchscript:
        files["torchscript"] = _save_torchscript(net, example, logits, out / EXPORT_FILES["torchscript"])
    if torch_export:
        files["torch_export"] = _save_torch_export(net, example, logits, out / EXPORT_FILES["torch_export"])
    for role in ("torchscript", "torch_export"):  # an earlier export's program of another network
        if role not in files:
            (out / EXPORT_FILES[role]).unlink(missing_ok=True)
    script = _rebuild_script(space_obj.name, text, kwargs, shape, int(logits.shape[-1]))
    files["rebuild"] = atomic_write_text(out / EXPORT_FILES["rebuild"], script)
    doc = {
        "format": "wsnas-export/1",
        "space": space_obj.name,
        "arch": text,
        "arch_hash": arch_obj.hash,
        "arch_json": arch_obj.to_dict(),
        "build_kwargs": kwargs,
        "size": {**_default_size(space_obj), **kwargs},
        "weights": kind,
        "weights_source": None if kind != "given" or isinstance(weights, Mapping) else str(weights),
        "seed": int(seed),
        "params": count_params(net),
        "input_shape": list(shape),
        "num_classes": int(logits.shape[-1]),
        "task": None if task is None else {"name": task.name, "fingerprint": task.fingerprint, **task.recipe()},
        "training": training,
        "files": {role: path.name for role, path in files.items()},
        "versions": {"wsnas": __version__, "torch": torch.__version__},
    }
    files["arch"] = atomic_write_text(out / EXPORT_FILES["arch"], json.dumps(doc, indent=2, default=str) + "\n")
    return ExportResult(
        out_dir=out, files=files, space=space_obj.name, arch=text, build_kwargs=kwargs, params=doc["params"],
        input_shape=shape, num_classes=doc["num_classes"], weights=kind, seed=int(seed), training=training,
        module=net,
    )  # fmt: skip


# -- inputs -------------------------------------------------------------------------------------------
def _arch_of(space: SearchSpace, arch: Any) -> Arch:
    """``arch`` as an :class:`Arch` of ``space``: an Arch, its string, or a record with an ``arch`` string."""
    if isinstance(arch, Arch):
        return space.validate(arch)
    if isinstance(arch, str):
        return space.from_string(arch)
    inner = getattr(arch, "arch", None)
    if isinstance(inner, str):  # a SearchRecord (result.best) or a TrainResult
        return space.from_string(inner)
    raise InvalidArchitecture(
        f"expected an Arch of space {space.name!r}, its string or a search record, got {type(arch).__name__}"
    )


def _weights_kind(weights: Any) -> str:
    if isinstance(weights, Mapping):
        return "given"
    if isinstance(weights, str) and weights in _WEIGHT_KINDS:
        return weights
    if isinstance(weights, (str, os.PathLike)):
        path = Path(weights)
        if not path.is_file():
            raise ExportError(
                f"weights must be one of {', '.join(_WEIGHT_KINDS)} or a .safetensors state dict file, "
                f"got {str(weights)!r} (no such file)"
            )
        return "given"
    raise ExportError(f"weights must be one of {', '.join(_WEIGHT_KINDS)}, a file or a state dict, got {weights!r}")


def _check_out_dir(out: Path, overwrite: bool) -> None:
    if out.exists() and not out.is_dir():
        raise ExportError(f"the output {str(out)!r} is a file, expected a folder")
    if out.is_dir() and any(out.iterdir()) and not overwrite:
        raise ExportError(f"the output folder {str(out)!r} is not empty; choose another or overwrite (--force)")


def _build_kwargs(space: SearchSpace, size: Mapping[str, Any] | None, task: Task | None) -> dict[str, Any]:
    """The exact keywords of ``space.build``: the task's ``num_classes``/``in_channels``, then ``size``."""
    kwargs = dict(size or {})
    for key, value in kwargs.items():
        if not isinstance(key, str) or not key.isidentifier():
            raise ExportError(f"size keywords must be identifiers, got {key!r}")
        if not (value is None or isinstance(value, (bool, int, float, str))):
            raise ExportError(f"size values must be numbers, strings or None, got {key}={value!r}")
    if task is None:
        return kwargs
    for key in ("num_classes", "in_channels"):
        want = getattr(task.source, key)
        if kwargs.get(key, want) != want:
            raise ExportError(f"size {key}={kwargs[key]!r} differs from task {task.name!r}'s {key}={want}")
    return {"num_classes": task.source.num_classes, "in_channels": task.source.in_channels, **kwargs}


def _input_shape(space: SearchSpace, kwargs: Mapping[str, Any], task: Task | None, given: Any) -> tuple[int, int, int]:
    if given is None:
        if task is not None:
            return tuple(task.input_shape)  # type: ignore[return-value]
        c, h, w = space.input_shape
        channels = kwargs.get("in_channels")
        return (channels if isinstance(channels, int) else c, h, w)
    shape = tuple(given)
    if len(shape) != 3 or not all(isinstance(d, int) and not isinstance(d, bool) and d >= 1 for d in shape):
        raise ExportError(f"input_shape must be three positive ints (C, H, W), got {given!r}")
    return shape  # type: ignore[return-value]


# -- the network --------------------------------------------------------------------------------------
def _build(space: SearchSpace, arch: Arch, kwargs: Mapping[str, Any]) -> nn.Module:
    try:
        return space.build(arch, **kwargs)
    except (TypeError, ValueError) as exc:
        if isinstance(exc, WsnasError):
            raise
        raise ExportError(f"{space.name} cannot be built with size {dict(kwargs)}: {exc}") from None


def _default_size(space: SearchSpace) -> dict[str, Any]:
    """The size keywords ``space.build`` documents by their defaults (``{"C": 16, "N": 5}`` for NB201)."""
    import inspect

    try:
        params = inspect.signature(space.build).parameters.values()
    except (TypeError, ValueError):
        return {}
    return {
        p.name: p.default for p in params
        if p.kind is p.KEYWORD_ONLY and p.default is not p.empty and p.default is not None
        and p.name not in ("num_classes", "in_channels")
    }  # fmt: skip


def _load_generated(net: nn.Module, seed: int) -> None:
    from wsnas.encoding import generate, load_into, weight_spec

    try:
        load_into(net, generate(weight_spec(net), [int(seed)], device="cpu").candidate(0))
    except ValueError as exc:
        raise ExportError(f"cannot generate weights with seed {seed!r}: {exc}") from None


def _load_state(net: nn.Module, weights: Any, kind: str) -> None:
    import torch

    if isinstance(weights, Mapping):
        state, where = dict(weights), "the state dict"
    else:
        from safetensors import SafetensorError
        from safetensors.torch import load_file

        where = f"{str(weights)!r}"
        try:
            state = load_file(str(weights))
        except (SafetensorError, OSError, ValueError) as exc:
            raise ExportError(f"weights file {where} is not a safetensors state dict: {exc}") from None
    if not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise ExportError(f"{where} must map names to tensors")
    try:
        net.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        reason = " ".join(str(exc).split())
        raise ExportError(f"{where} does not fit the network: {reason[:400]}") from None


class _Keeping:
    """A search space whose :meth:`build` builds with fixed keywords and keeps the network it returns.

    :func:`wsnas.train` builds, trains and drops its network; training through this wrapper keeps it.
    Every other attribute is the wrapped space's.
    """

    def __init__(self, space: SearchSpace, kwargs: Mapping[str, Any]) -> None:
        self._space, self._kwargs = space, dict(kwargs)
        self.built: nn.Module | None = None

    def __getattr__(self, name: str) -> Any:
        return getattr(self._space, name)

    def build(self, arch: Arch, **_task_size: Any) -> nn.Module:
        self.built = _build(self._space, arch, self._kwargs)
        return self.built


def _trained(
    space: SearchSpace, arch: Arch, kwargs: dict[str, Any], task: Task, seed: int
) -> tuple[nn.Module, dict[str, Any]]:
    """Train the network at ``kwargs`` on ``task`` from generated weights; the trained module and its run."""
    from wsnas.training._train import train

    _build(space, arch, kwargs)  # a bad size is an ExportError before any data is read
    size = {k: v for k, v in {**_default_size(space), **kwargs}.items() if k not in ("num_classes", "in_channels")}
    keeping = _Keeping(space, kwargs)
    result = train(keeping, arch, task.with_recipe(size=size) if size else task, seed=seed)  # type: ignore[arg-type]
    assert keeping.built is not None
    if result.diverged:
        warnings.warn("training diverged (loss NaN or infinite); the exported weights are where it stopped",
                      RuntimeWarning, stacklevel=3)  # fmt: skip
    run = {key: value for key, value in result.to_dict().items() if key not in ("space", "arch", "arch_hash", "extra")}
    return keeping.built, run


# -- writing ------------------------------------------------------------------------------------------
def _save_state(net: nn.Module, path: Path) -> None:
    from safetensors.torch import save_file

    state = {k: v.detach().cpu().contiguous().clone() for k, v in net.state_dict().items()}  # no shared storage
    with atomic_path(path) as tmp:
        save_file(state, str(tmp), metadata={"format": "pt"})


def _check_same(what: str, program: Any, net: nn.Module, example: torch.Tensor, logits: torch.Tensor) -> None:
    """``program`` computes ``net`` on ``example [2, C, H, W]`` and on a batch of another size (``[3, ...]``)."""
    import torch

    other = torch.cat([example, example[:1]])  # [3, C, H, W]: no batch size may be baked in
    for x, want in ((example, logits), (other, net(other))):
        try:
            got = program(x)
        except Exception as exc:  # noqa: BLE001 - a program that cannot run this batch
            raise ExportError(f"the {what} fails on a batch of {len(x)}: {exc}") from None
        if got.shape != want.shape or not torch.allclose(got, want, **_TOLERANCE):
            diff = (got - want).abs().max().item() if got.shape == want.shape else "shape"
            raise ExportError(f"the {what} does not compute what the network does (max difference {diff})")


@contextlib.contextmanager
def _quiet_deprecation() -> Iterator[None]:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # torch.jit is deprecated, still the portable format
        warnings.simplefilter("ignore", UserWarning)
        yield


def _save_torchscript(net: nn.Module, example: torch.Tensor, logits: torch.Tensor, path: Path) -> Path:
    """``torch.jit.trace`` on ``example [2, C, H, W]``, saved, loaded back and checked against ``logits``."""
    import torch

    with _quiet_deprecation(), torch.no_grad():
        try:
            traced = torch.jit.trace(net, example, check_trace=False)
        except Exception as exc:  # noqa: BLE001 - tracing failures come in many types
            raise ExportError(f"cannot trace the network with TorchScript ({exc}); pass torchscript=False") from None
        buffer = io.BytesIO()
        torch.jit.save(traced, buffer)
        _check_same("TorchScript trace", torch.jit.load(io.BytesIO(buffer.getvalue())), net, example, logits)
    return atomic_write_bytes(path, buffer.getvalue())


def _save_torch_export(net: nn.Module, example: torch.Tensor, logits: torch.Tensor, path: Path) -> Path:
    """``torch.export`` with a dynamic batch dimension, saved, loaded back and checked against ``logits``."""
    import torch

    with _quiet_deprecation(), torch.no_grad():
        try:
            program = torch.export.export(net, (example,), dynamic_shapes=({0: torch.export.Dim("batch")},))
        except Exception as exc:  # noqa: BLE001
            raise ExportError(f"torch.export cannot capture the network ({exc}); pass torch_export=False") from None
        buffer = io.BytesIO()
        torch.export.save(program, buffer)
        loaded = torch.export.load(io.BytesIO(buffer.getvalue())).module()
        _check_same("torch.export program", loaded, net, example, logits)
    return atomic_write_bytes(path, buffer.getvalue())


_REBUILD = '''"""Rebuild the exported network through wsnas: ``load()`` returns it with the exported weights.

    from rebuild import load     # or importlib, from this folder
    net = load()                 # nn.Module in eval mode: [B, {c}, {h}, {w}] -> [B, {classes}] logits

Needs wsnas (and the search space {space!r} registered, as the built-in ones are). ``model.ts``, when
there is one, needs only PyTorch: ``torch.jit.load("model.ts")``.
"""

from pathlib import Path

SPACE = {space!r}
ARCH = {arch!r}
BUILD_KWARGS = {kwargs!r}
WEIGHTS = Path(__file__).resolve().with_name("model.safetensors")


def load():
    """The network ``get_space(SPACE).build(from_string(ARCH), **BUILD_KWARGS)`` with the saved state."""
    from safetensors.torch import load_file

    from wsnas.search_spaces import get_space

    space = get_space(SPACE)
    net = space.build(space.from_string(ARCH), **BUILD_KWARGS)
    net.load_state_dict(load_file(str(WEIGHTS)))
    return net.eval()


if __name__ == "__main__":
    net = load()
    print(f"{{type(net).__name__}}: {{sum(p.numel() for p in net.parameters()):,}} parameters")
'''


def _rebuild_script(space: str, arch: str, kwargs: Mapping[str, Any], shape: tuple[int, int, int], classes: int) -> str:
    c, h, w = shape
    return _REBUILD.format(space=space, arch=arch, kwargs=dict(kwargs), c=c, h=h, w=w, classes=classes)
