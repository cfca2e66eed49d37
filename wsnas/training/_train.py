"""Real, deterministic training of one network on a :class:`~wsnas.Task`, and of many in parallel.

>>> result = train(NB201(), arch, digits(epochs=2), seed=0)
>>> result.val_acc, result.val_acc_curve, result.train_seconds

Determinism: for a seed, the initial weights, the data order and every op are fixed; training runs with
one torch thread and ``torch.use_deterministic_algorithms(True)`` (both restored afterwards), so two runs
give bit-identical curves. :func:`train_many` runs one single-threaded process per core.
"""

from __future__ import annotations

import contextlib
import math
import os
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

from wsnas._arch import Arch
from wsnas._lifeline import die_with

if TYPE_CHECKING:
    import torch
    import torch.nn as nn

    from wsnas.search_spaces import SearchSpace
    from wsnas.training._tasks import Task, TaskData

__all__ = ["TrainResult", "train", "train_many"]


@dataclass(frozen=True)
class TrainResult:
    """What one training run measured.

    ``train_seconds`` is wall time, ``cpu_seconds`` the CPU time of the training process (with one torch
    thread, the compute a run costs whatever else the machine is doing). ``val_acc``/``val_loss`` are the
    final validation accuracy (a fraction) and mean cross-entropy; the curves hold one value per finished
    epoch. A run whose loss became NaN or infinite is
    ``diverged``: training stops there, ``val_acc`` is chance level (``1 / num_classes``) and
    ``val_loss`` is ``None``. ``init`` says where the initial weights came from (``generated``: wsnas's
    weight generator with ``seed``; ``given``: passed in by the caller). A run that an ``on_epoch``
    callback stopped early has ``extra["stopped_after_epoch"]`` (and curves that long).
    """

    space: str
    arch: str
    arch_hash: str
    seed: int
    task: str
    task_fingerprint: str
    val_acc: float
    val_loss: float | None
    val_acc_curve: tuple[float, ...]
    val_loss_curve: tuple[float, ...]
    train_loss_curve: tuple[float, ...]
    train_seconds: float
    params: int
    flops: int
    diverged: bool = False
    cpu_seconds: float = math.nan
    init: str = "generated"
    extra: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict (curves as lists)."""
        doc = asdict(self)
        for key in ("val_acc_curve", "val_loss_curve", "train_loss_curve"):
            doc[key] = list(doc[key])
        return doc


@contextlib.contextmanager
def _deterministic() -> Iterator[None]:
    """One torch thread and deterministic algorithms inside, the caller's settings restored after."""
    import torch

    threads, det = torch.get_num_threads(), torch.are_deterministic_algorithms_enabled()
    torch.set_num_threads(1)
    torch.use_deterministic_algorithms(True)
    try:
        yield
    finally:
        torch.use_deterministic_algorithms(det)
        torch.set_num_threads(threads)


def _initial_weights(net: nn.Module, seed: int, weights: Any) -> str:
    """Load ``weights`` (flat ``[P]``) into ``net``, or weights generated from ``seed``; returns which."""
    import torch

    from wsnas.encoding import generate, load_into, weight_spec

    if weights is not None:
        load_into(net, torch.as_tensor(weights, dtype=torch.float32).reshape(-1))
        return "given"
    load_into(net, generate(weight_spec(net), [seed], device="cpu").candidate(0))
    return "generated"


def _optimizer(net: nn.Module, task: Task, steps: int) -> tuple[torch.optim.Optimizer, Any]:
    import torch

    if task.optimizer == "sgd":
        opt: torch.optim.Optimizer = torch.optim.SGD(
            net.parameters(), lr=task.lr, momentum=task.momentum, nesterov=task.nesterov and task.momentum > 0,
            weight_decay=task.weight_decay,
        )  # fmt: skip
    else:
        opt = torch.optim.AdamW(net.parameters(), lr=task.lr, weight_decay=task.weight_decay)
    if task.schedule == "onecycle":
        sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=task.lr, total_steps=max(steps, 2))
    elif task.schedule == "cosine":
        sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=max(steps, 1))
    else:
        sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda _: 1.0)
    return opt, sched


def _evaluate(net: nn.Module, x: torch.Tensor, y: torch.Tensor, batch: int = 500) -> tuple[float, float]:
    """``(accuracy, mean cross-entropy)`` of ``net`` on ``x [N, C, R, R]``, ``y [N]`` in eval mode."""
    import torch
    import torch.nn.functional as F

    net.eval()
    correct, loss = 0, 0.0
    with torch.no_grad():
        for i in range(0, len(y), batch):
            logits = net(x[i : i + batch])  # [b, classes]
            loss += float(F.cross_entropy(logits, y[i : i + batch], reduction="sum"))
            correct += int((logits.argmax(1) == y[i : i + batch]).sum())
    net.train()
    return correct / len(y), loss / len(y)


def train(
    space: SearchSpace,
    arch: Arch | str,
    task: Task,
    *,
    weights: Any = None,
    seed: int | None = None,
    on_epoch: Callable[[int, float, float], bool | None] | None = None,
) -> TrainResult:
    """Train ``space.build(arch, **task.build_kwargs)`` on ``task`` and evaluate it on the validation split.

    Args:
        space: the architecture's search space.
        arch: an :class:`Arch` of ``space`` or its string form.
        task: dataset and recipe; an empty ``task.size`` means the space's ``proxy_size``.
        weights: initial weights as one flat float32 buffer ``[P]`` in ``named_parameters()`` order;
            ``None``: generated from ``seed``.
        seed: seeds the initial weights and the data order; ``None``: ``task.seed``.
        on_epoch: called after each epoch as ``on_epoch(epochs_done, val_acc, val_loss)`` (``epochs_done``
            from 1); returning ``True`` stops training there, and an exception it raises (such as
            ``optuna.TrialPruned``) leaves ``train`` with the torch settings restored.

    Returns:
        A :class:`TrainResult`; a NaN or infinite loss gives ``diverged=True`` instead of an error.
    """
    import torch
    import torch.nn.functional as F

    from wsnas._netstats import count_flops, count_params

    arch = space.from_string(arch) if isinstance(arch, str) else space.validate(arch)
    seed = task.seed if seed is None else int(seed)
    if not task.size:
        task = task.with_recipe(size=dict(space.proxy_size))
    data: TaskData = task.prepare()
    with _deterministic():
        net = space.build(arch, **task.build_kwargs)
        init = _initial_weights(net, seed, weights)
        params, flops = count_params(net), count_flops(net, task.input_shape)
        n = len(data.train_y)
        bs = min(task.batch_size, n)
        per_epoch = n // bs  # the last incomplete batch is dropped (batch norm needs > 1 sample)
        opt, sched = _optimizer(net, task, per_epoch * task.epochs)
        order_gen = torch.Generator().manual_seed(seed)
        torch.manual_seed(seed)  # any op that draws randomness (none in the built-in spaces)
        acc_curve: list[float] = []
        loss_curve: list[float] = []
        train_curve: list[float] = []
        diverged = False
        extra: dict[str, Any] = {}
        start, cpu_start = time.perf_counter(), time.process_time()
        net.train()
        for epoch in range(1, task.epochs + 1):
            order = torch.randperm(n, generator=order_gen)
            total = 0.0
            for b in range(per_epoch):
                idx = order[b * bs : (b + 1) * bs]
                loss = F.cross_entropy(net(data.train_x[idx]), data.train_y[idx])  # [bs, C, R, R] -> scalar
                if not torch.isfinite(loss):
                    diverged = True
                    break
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                sched.step()
                total += float(loss.detach())
            if diverged:
                break
            acc, val_loss = _evaluate(net, data.val_x, data.val_y)
            if not math.isfinite(val_loss):
                diverged = True
                break
            train_curve.append(total / per_epoch)
            acc_curve.append(acc)
            loss_curve.append(val_loss)
            if on_epoch is not None and on_epoch(epoch, acc, val_loss) is True and epoch < task.epochs:
                extra["stopped_after_epoch"] = epoch
                break
        seconds, cpu_seconds = time.perf_counter() - start, time.process_time() - cpu_start
    return TrainResult(
        space=space.name,
        arch=space.to_string(arch),
        arch_hash=arch.hash,
        seed=seed,
        task=task.name,
        task_fingerprint=task.fingerprint,
        val_acc=1.0 / task.source.num_classes if diverged else acc_curve[-1],
        val_loss=None if diverged else loss_curve[-1],
        val_acc_curve=tuple(acc_curve),
        val_loss_curve=tuple(loss_curve),
        train_loss_curve=tuple(train_curve),
        train_seconds=seconds,
        cpu_seconds=cpu_seconds,
        params=params,
        flops=flops,
        diverged=diverged,
        init=init,
        extra=extra,
    )


def _worker_init(owner: int) -> None:
    import torch

    die_with(owner)  # a killed parent leaves no worker training for nobody

    torch.set_num_threads(1)


def _train_job(space: SearchSpace, text: str, task: Task, seed: int) -> TrainResult:
    return train(space, text, task, seed=seed)


def train_many(
    space: SearchSpace,
    archs: Iterable[Arch | str],
    task: Task,
    *,
    seeds: int | Sequence[int] | None = None,
    workers: int | None = None,
) -> Iterator[TrainResult]:
    """Train every architecture, one single-threaded process per worker, yielding results as they finish.

    Args:
        seeds: one seed for all, one per architecture, or ``None`` (``task.seed``).
        workers: processes (default ``os.cpu_count()``); ``1`` trains in this process, one at a time.

    Results come in completion order; match them to inputs by ``arch_hash``. Each worker process loads
    the task's data once. A worker's exception (not a divergence) is re-raised here after the pending
    jobs are cancelled.
    """
    texts = [a if isinstance(a, str) else space.to_string(a) for a in archs]
    if seeds is None or isinstance(seeds, int):
        seed_list = [task.seed if seeds is None else int(seeds)] * len(texts)
    else:
        seed_list = [int(s) for s in seeds]
        if len(seed_list) != len(texts):
            raise ValueError(f"train_many needs one seed per architecture, got {len(seed_list)} for {len(texts)}")
    workers = (os.cpu_count() or 1) if workers is None else int(workers)
    if workers < 1:
        raise ValueError(f"workers must be >= 1, got {workers}")
    if workers == 1 or len(texts) <= 1:
        for text, seed in zip(texts, seed_list):
            yield _train_job(space, text, task, seed)
        return
    import multiprocessing as mp
    from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait

    ctx = mp.get_context("forkserver" if "forkserver" in mp.get_all_start_methods() else "spawn")
    pool = ProcessPoolExecutor(max_workers=min(workers, len(texts)), mp_context=ctx, initializer=_worker_init,
                               initargs=(os.getpid(),))  # fmt: skip
    try:
        pending = {pool.submit(_train_job, space, t, task, s) for t, s in zip(texts, seed_list)}
        while pending:
            done, pending = wait(pending, return_when=FIRST_COMPLETED)
            for fut in done:
                yield fut.result()
    finally:
        pool.shutdown(wait=True, cancel_futures=True)
