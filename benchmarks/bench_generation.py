"""Speed of seeded weight generation: candidates per second for NB201 networks of distinct random cells.

Prints one JSON line per (batch size, path): generation alone (specs built beforehand), end to end through
``wsnas.generate`` (host-side preparation included), and the kernel call alone on a prepared row table.
On a CUDA device the Triton kernel and the PyTorch reference are timed side by side; on the CPU only the
reference runs (the Triton interpreter is a correctness tool, not a fast path), and the line says so.

    python benchmarks/bench_generation.py            # batches 64, 256, 1024, 4096, 3 repeats
    python benchmarks/bench_generation.py --quick    # the same batches, 1 repeat (about 1 minute on 2 CPU cores)
    python benchmarks/bench_generation.py --quick --threads 1   # steadier on a machine shared with others
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from collections.abc import Callable

import numpy as np
import torch

from wsnas.encoding import WeightSpec, generate, weight_spec
from wsnas.encoding._weights import _row_table
from wsnas.search_spaces import NB201, NB201_OPS

__all__ = ["main"]


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _best_time(fn: Callable[[], object], device: torch.device, repeats: int) -> float:
    """Fastest of ``repeats`` timed calls after one warm-up call, in seconds."""
    fn()
    _sync(device)
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        _sync(device)
        best = min(best, time.perf_counter() - t0)
    return best


def _specs(n: int, size: dict[str, int], seed: int) -> list[WeightSpec]:
    """Specs of ``n`` distinct random NB201 cells (sampled without replacement from the 15,625)."""
    space = NB201()
    codes = np.random.default_rng(seed).choice(len(NB201_OPS) ** 6, size=n, replace=False)
    specs = []
    with torch.device("meta"):  # no memory for weights that are never used
        for code in codes:
            ops = [NB201_OPS[(int(code) // len(NB201_OPS) ** k) % len(NB201_OPS)] for k in range(6)]
            specs.append(weight_spec(space.build(space.from_ops(ops), **size)))
    return specs


def _run_kernel(path: str, rows: torch.Tensor, scales: torch.Tensor, out: torch.Tensor) -> None:
    if path == "triton":
        from wsnas.kernels._weight_gen import weight_gen_triton

        weight_gen_triton(rows, scales, out)
    else:
        from wsnas.kernels._weight_gen_ref import weight_gen_reference

        weight_gen_reference(rows, scales, out)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="one timed repeat per measurement")
    parser.add_argument("--batches", type=int, nargs="+", default=[64, 256, 1024, 4096])
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's own)")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    saved_mode = os.environ.get("WSNAS_KERNELS")
    repeats = 1 if args.quick else 3
    device = torch.device(args.device)
    size = {"C": 8, "N": 1}
    on_gpu = device.type == "cuda"
    paths = ["reference", "triton"] if on_gpu else ["reference"]
    note = None if on_gpu else "no CUDA device: PyTorch reference only (Triton runs on CUDA tensors)"

    t0 = time.perf_counter()
    specs = _specs(max(args.batches), size, seed=0)
    header = {
        "bench": "generation_setup",
        "space": "nb201",
        "size": size,
        "distinct_archs": len(specs),
        "spec_build_ms_per_arch": round(1e3 * (time.perf_counter() - t0) / len(specs), 3),
        "device": str(device),
        "gpu": torch.cuda.get_device_name(device) if on_gpu else None,
        "cpu": platform.processor() or platform.machine(),
        "torch_threads": torch.get_num_threads(),
        "cpu_count": os.cpu_count(),
        "torch": torch.__version__,
    }
    print(json.dumps(header), flush=True)

    for batch in args.batches:
        sub, seeds = specs[:batch], list(range(batch))
        rows, scales, _, _ = _row_table(sub, torch.tensor(seeds))
        total = int(rows[-1, 0] + rows[-1, 1])
        prep_s = _best_time(lambda sub=sub, seeds=seeds: _row_table(sub, torch.tensor(seeds)), device, repeats)
        kernel_s: dict[str, float] = {}
        for path in paths:
            os.environ["WSNAS_KERNELS"] = path
            out = torch.empty(total, dtype=torch.float32, device=device)
            rows_d, scales_d = rows.to(device), scales.to(device)
            kernel_s[path] = _best_time(
                lambda p=path, r=rows_d, s=scales_d, o=out: _run_kernel(p, r, s, o), device, repeats
            )
            e2e_s = _best_time(lambda sub=sub, seeds=seeds: generate(sub, seeds, device=device), device, repeats)
            del out
            line = {
                "bench": "generation",
                "path": path,
                "batch": batch,
                "device": str(device),
                "candidates_per_s": round(batch / e2e_s, 1),
                "weights_per_s": round(total / e2e_s),
                "mean_weights_per_candidate": round(total / batch),
                "end_to_end_ms": round(1e3 * e2e_s, 3),
                "host_prep_ms": round(1e3 * prep_s, 3),
                "kernel_ms": round(1e3 * kernel_s[path], 3),
                "repeats": repeats,
            }
            if note:
                line["note"] = note
            print(json.dumps(line), flush=True)
        if saved_mode is None:
            os.environ.pop("WSNAS_KERNELS", None)
        else:
            os.environ["WSNAS_KERNELS"] = saved_mode
        if on_gpu:
            ratio = kernel_s["reference"] / kernel_s["triton"]
            print(json.dumps({"bench": "generation_speedup", "batch": batch, "kernel_vs_reference": round(ratio, 2)}))
        else:
            print(
                json.dumps({"bench": "generation_speedup", "batch": batch, "kernel_vs_reference": None, "note": note})
            )


if __name__ == "__main__":
    main()
