"""Parameter-graph batching speed for NB201 (C=8, N=1), graph sizes, and segment kernel vs reference.

Prints JSON lines. Run: ``python benchmarks/bench_paramgraph.py [--threads 1] [--workers 2]`` (about two
minutes on 2 quiet CPU cores).

* ``templates``: per new architecture, ms to build the module, to make its weight spec, and to make its
  template: the fast path (cached one-level graphs, warm) and the whole-network fx trace (``cache=False``);
* ``batching``: candidates/s per batch size for (a) generation + ``build_batch`` from prepared specs and
  templates (the search loop's steady state, ``from_prepared_cand_per_s``) and (b) end to end from new
  architectures: build + spec + template + generate + batch (``end_to_end_cand_per_s``), on archs no
  earlier step has seen; (b) stops at ``E2E_MAX`` candidates (the line says so) to keep the run short;
  generation is ``wsnas.encoding.generate`` when it imports, else a ``torch.randn`` stand-in;
* ``parallel``: (a) again with ``--workers`` processes of one torch thread each, one per core, a batch split
  evenly between them and every batch started behind a barrier: the throughput of the whole machine, as a
  screening loop with one worker per core gets it (training runs one process per core the same way);
* ``graph_size``: nodes and edges per candidate (mean, max);
* ``segment``: segment_sum reference time on a batch, and the Triton kernel vs reference where it runs.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import time

import numpy as np
import torch

from wsnas.encoding import build_batch, graph_template
from wsnas.search_spaces import NB201

BATCHES = (64, 256, 1024, 4096)
#: end to end costs ~5 ms a candidate (3.5 of them module construction): 2048 keeps (b) under ~15 s
E2E_MAX = 2048
FULL_TRACE = 100  # archs timed with the whole-network trace (~8 ms each)


def _generator():  # noqa: ANN202
    try:
        from wsnas.encoding import generate, weight_spec  # written by another engineer
    except Exception:
        return None
    return generate, weight_spec


def _flat(gen, specs: list, p: int) -> torch.Tensor:  # noqa: ANN001
    return torch.randn(p) if gen is None else gen[0](specs, list(range(len(specs)))).flat


def _worker(rank: int, strings: list[str], batches: tuple[int, ...], barrier, out) -> None:  # noqa: ANN001
    """One process of the ``parallel`` measurement: prepare its share untimed, then time each batch."""
    torch.set_num_threads(1)
    gen = _generator()
    space = NB201()
    archs = [space.from_string(t) for t in strings]
    nets = [space.build(a, C=8, N=1) for a in archs]
    templates = [graph_template(n) for n in nets]
    specs = [gen[1](n) for n in nets]
    build_batch(templates[:4], _flat(gen, specs[:4], sum(t.num_weights for t in templates[:4])))  # warm-up
    for b in batches:
        barrier.wait()
        s = time.perf_counter()
        build_batch(templates[:b], _flat(gen, specs[:b], sum(t.num_weights for t in templates[:b])))
        out.put((rank, b, time.perf_counter() - s))


def parallel(space: NB201, archs: list, workers: int) -> None:
    """Print the ``parallel`` lines: generation + batching from prepared specs on ``workers`` processes."""
    ctx = mp.get_context("forkserver" if "forkserver" in mp.get_all_start_methods() else "spawn")
    barrier, out = ctx.Barrier(workers), ctx.Queue()
    per_worker = tuple(max(1, b // workers) for b in BATCHES)
    strings = [space.to_string(a) for a in archs]
    share = max(per_worker)
    procs = [
        ctx.Process(target=_worker, args=(r, strings[r * share : (r + 1) * share], per_worker, barrier, out))
        for r in range(workers)
    ]
    for p in procs:
        p.start()
    times: dict[int, list[float]] = {}
    for _ in range(workers * len(per_worker)):
        _rank, b, dt = out.get()
        times.setdefault(b, []).append(dt)
    for p in procs:
        p.join()
    for pb in per_worker:
        slowest = max(times[pb])
        print(json.dumps({"bench": "parallel", "space": "nb201", "C": 8, "N": 1, "batch": pb * workers,
                          "workers": workers, "threads_per_worker": 1,
                          "from_prepared_cand_per_s": round(pb * workers / slowest)}))  # fmt: skip


def main() -> None:  # noqa: C901, PLR0915
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--threads", type=int, default=1, help="torch threads of the main measurements")
    parser.add_argument("--workers", type=int, default=min(2, os.cpu_count() or 1), help="processes for 'parallel'")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    space = NB201()
    rng = np.random.default_rng(0)
    seen: dict[str, object] = {}
    n_e2e = sum(min(b, E2E_MAX) for b in BATCHES)
    while len(seen) < max(BATCHES) + n_e2e:
        arch = space.sample(rng)
        seen.setdefault(space.to_string(arch), arch)
    archs = list(seen.values())[: max(BATCHES)]
    fresh = list(seen.values())[max(BATCHES) :]  # never built before (b)

    gen = _generator()
    source = "torch.randn stand-in" if gen is None else "wsnas.encoding.generate"
    graph_template(space.build(fresh[-1], C=8, N=1))  # warm the one-level graph cache (a few fx traces)
    t0 = time.perf_counter()
    nets = [space.build(a, C=8, N=1) for a in archs]
    t1 = time.perf_counter()
    templates = [graph_template(n) for n in nets]
    t2 = time.perf_counter()
    specs = [gen[1](n) for n in nets] if gen is not None else None
    t3 = time.perf_counter()
    for n in nets[:FULL_TRACE]:
        graph_template(n, cache=False)
    t4 = time.perf_counter()
    ms = lambda dt, k=None: round(dt / (k or len(archs)) * 1e3, 3)  # noqa: E731
    print(json.dumps({"bench": "templates", "archs": len(archs), "build_ms": ms(t1 - t0),
                      "spec_ms": ms(t3 - t2) if gen is not None else None, "template_ms": ms(t2 - t1),
                      "full_trace_template_ms": ms(t4 - t3, FULL_TRACE)}))  # fmt: skip

    build_batch(templates[:8], torch.randn(sum(t.num_weights for t in templates[:8])))  # warm-up
    start = 0
    for b in BATCHES:
        batch = templates[:b]
        p = sum(t.num_weights for t in batch)
        reps = 3 if b <= 1024 else 1
        t_gen = t_batch = 0.0
        for _ in range(reps):
            s = time.perf_counter()
            flat = _flat(gen, specs[:b] if specs else [], p)
            m = time.perf_counter()
            graph = build_batch(batch, flat)
            e = time.perf_counter()
            t_gen, t_batch = t_gen + m - s, t_batch + e - m
        nodes, edges = graph.num_nodes, graph.num_edges
        del graph, flat
        # (b) end to end on new architectures
        new = fresh[start : start + min(b, E2E_MAX)]
        start += len(new)
        s = time.perf_counter()
        e_nets = [space.build(a, C=8, N=1) for a in new]
        e_specs = [gen[1](n) for n in e_nets] if gen is not None else []
        e_templates = [graph_template(n) for n in e_nets]
        build_batch(e_templates, _flat(gen, e_specs, sum(t.num_weights for t in e_templates)))
        t_e2e = time.perf_counter() - s
        line = {
            "bench": "batching", "space": "nb201", "C": 8, "N": 1, "batch": b, "generation": source,
            "batching_cand_per_s": round(b * reps / t_batch),
            "from_prepared_cand_per_s": round(b * reps / (t_gen + t_batch)),
            "end_to_end_cand_per_s": round(len(new) / t_e2e), "nodes": nodes, "edges": edges,
        }  # fmt: skip
        line["threads"] = args.threads
        if len(new) < b:
            line["end_to_end_batch"] = f"{len(new)} (shrunk from {b} to keep the run short)"
        print(json.dumps(line))
        del e_nets, e_specs, e_templates

    if args.workers > 1 and gen is not None:
        del nets
        parallel(space, archs, args.workers)

    nodes = np.array([t.num_nodes for t in templates])
    edges = np.array([t.num_edges for t in templates])
    print(json.dumps({"bench": "graph_size", "nodes_mean": round(float(nodes.mean()), 1), "nodes_max": int(nodes.max()),
                      "edges_mean": round(float(edges.mean()), 1), "edges_max": int(edges.max())}))  # fmt: skip

    from wsnas.kernels._segment import segment_sum
    from wsnas.kernels._segment_ref import segment_sum_ref

    graph = build_batch(templates[:64], torch.randn(sum(t.num_weights for t in templates[:64])))
    msg = torch.randn(graph.num_edges, 32)  # a 32-wide message per edge, aggregated at its destination
    s = time.perf_counter()
    for _ in range(5):
        segment_sum_ref(msg, graph.dst_ptr)
    ref_ms = (time.perf_counter() - s) / 5 * 1e3
    line = {"bench": "segment", "op": "segment_sum", "segments": graph.num_nodes, "rows": graph.num_edges, "F": 32,
            "reference_ms": round(ref_ms, 2), "device": "cuda" if torch.cuda.is_available() else "cpu"}  # fmt: skip
    if torch.cuda.is_available():
        os.environ["WSNAS_KERNELS"] = "triton"
        msg_c, ptr_c = msg.cuda(), graph.dst_ptr.cuda()
        for fn, name in ((segment_sum, "triton_ms"), (segment_sum_ref, "reference_cuda_ms")):
            fn(msg_c, ptr_c)
            torch.cuda.synchronize()
            s = time.perf_counter()
            for _ in range(20):
                fn(msg_c, ptr_c)
            torch.cuda.synchronize()
            line[name] = round((time.perf_counter() - s) / 20 * 1e3, 3)
    else:
        line["triton"] = "not timed: no GPU (the interpreter's speed means nothing)"
    print(json.dumps(line))


if __name__ == "__main__":
    main()
