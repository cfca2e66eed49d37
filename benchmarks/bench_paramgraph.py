"""Parameter-graph batching speed for NB201 (C=8, N=1), graph sizes, and segment kernel vs reference.

Prints JSON lines. Run: ``python benchmarks/bench_paramgraph.py`` (about a minute on 2 CPU cores).

* ``templates``: tracing each distinct architecture once (module build + fx trace), the cold cost;
* ``batching``: candidates/s for generation + ``build_batch`` of distinct random architectures whose
  templates are cached (the search loop's steady state), per batch size; generation is
  ``wsnas._weights.generate`` when it imports, else a ``torch.randn`` stand-in (the line says which);
* ``graph_size``: nodes and edges per candidate (mean, max);
* ``segment``: segment_sum reference time on a batch, and the Triton kernel vs reference where it runs.
"""

from __future__ import annotations

import json
import os
import time

import numpy as np
import torch

from wsnas._paramgraph import build_batch
from wsnas._trace import graph_template
from wsnas.search_spaces import NB201

BATCHES = (64, 256, 1024, 4096)


def _generator():  # noqa: ANN202
    try:
        from wsnas._weights import generate, weight_spec  # written by another engineer
    except Exception:
        return None
    return generate, weight_spec


def main() -> None:
    torch.set_num_threads(min(2, os.cpu_count() or 1))
    space = NB201()
    rng = np.random.default_rng(0)
    seen: dict[str, object] = {}
    while len(seen) < max(BATCHES):
        arch = space.sample(rng)
        seen.setdefault(space.to_string(arch), arch)
    archs = list(seen.values())

    t0 = time.perf_counter()
    nets = [space.build(a, C=8, N=1) for a in archs]
    t1 = time.perf_counter()
    templates = [graph_template(n) for n in nets]
    t2 = time.perf_counter()
    print(json.dumps({"bench": "templates", "archs": len(archs), "build_ms": round((t1 - t0) / len(archs) * 1e3, 2),
                      "trace_ms": round((t2 - t1) / len(archs) * 1e3, 2)}))  # fmt: skip

    gen = _generator()
    source = "torch.randn stand-in" if gen is None else "wsnas._weights.generate"
    specs = [gen[1](n) for n in nets] if gen is not None else None
    build_batch(templates[:8], torch.randn(sum(t.num_weights for t in templates[:8])))  # warm-up
    for b in BATCHES:
        batch = templates[:b]
        p = sum(t.num_weights for t in batch)
        reps = 3 if b <= 1024 else 1
        t_gen = t_batch = 0.0
        for _ in range(reps):
            s = time.perf_counter()
            flat = torch.randn(p) if gen is None else gen[0](specs[:b], list(range(b))).flat
            m = time.perf_counter()
            graph = build_batch(batch, flat)
            e = time.perf_counter()
            t_gen, t_batch = t_gen + m - s, t_batch + e - m
        print(json.dumps({
            "bench": "batching", "space": "nb201", "C": 8, "N": 1, "batch": b, "generation": source,
            "batching_cand_per_s": round(b * reps / t_batch),
            "gen_plus_batching_cand_per_s": round(b * reps / (t_gen + t_batch)),
            "nodes": graph.num_nodes, "edges": graph.num_edges,
        }))  # fmt: skip
        del graph, flat

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
