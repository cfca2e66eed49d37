"""The pictures and tables a search leaves behind (PNG via matplotlib's Agg backend, CSV).

Each function takes plain data and a path, writes one file and returns its path; nothing here knows
MLflow or Optuna, so the same files serve the run directory and the MLflow parent run.
"""

from __future__ import annotations

import csv
import math
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from wsnas._atomic import atomic_path

if TYPE_CHECKING:
    from wsnas._arch import Arch

__all__ = ["pareto_plot", "scatter_plot", "progress_plot", "arch_plot", "write_table"]


def _figure(width: float = 6.0, height: float = 4.5) -> Any:
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    return plt.subplots(figsize=(width, height), dpi=110)


def _save(fig: Any, path: str | os.PathLike[str]) -> Path:
    import matplotlib.pyplot as plt

    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.tight_layout()
    with atomic_path(out) as tmp:
        fig.savefig(tmp, format="png")
    plt.close(fig)
    return out


def pareto_plot(
    points: Sequence[Mapping[str, float]], front: Sequence[bool], x: str, y: str, path: str | os.PathLike[str]
) -> Path:
    """Every evaluated point on objectives ``x`` and ``y``, the Pareto front highlighted and joined."""
    fig, ax = _figure()
    xs = [float(p[x]) for p in points]
    ys = [float(p[y]) for p in points]
    ax.scatter(xs, ys, s=18, c="#9aa5b1", label="evaluated")
    fx = sorted((a, b) for a, b, f in zip(xs, ys, front) if f)
    if fx:
        ax.plot([a for a, _ in fx], [b for _, b in fx], "o-", c="#d1495b", ms=5, label="Pareto front")
    ax.set_xlabel(x)
    ax.set_ylabel(y)
    ax.set_title("Pareto front")
    ax.legend(loc="best")
    return _save(fig, path)


def scatter_plot(
    predicted: Sequence[float], measured: Sequence[float], path: str | os.PathLike[str], *, title: str = ""
) -> Path:
    """Predicted score against measured value, one point per real evaluation, Spearman in the title."""
    from scipy.stats import spearmanr

    fig, ax = _figure(5.0, 4.5)
    ax.scatter(predicted, measured, s=20, c="#00798c")
    rho = float(spearmanr(predicted, measured).statistic) if len(predicted) >= 3 else math.nan
    ax.set_xlabel("predicted")
    ax.set_ylabel("measured")
    ax.set_title(f"{title or 'predicted vs measured'} (Spearman {rho:.3f})" if math.isfinite(rho) else title)
    return _save(fig, path)


def progress_plot(values: Sequence[float], path: str | os.PathLike[str], *, label: str = "accuracy") -> Path:
    """Each real evaluation's value in order and the best so far."""
    fig, ax = _figure(6.0, 4.0)
    steps = list(range(1, len(values) + 1))
    best, run = [], -math.inf
    for v in values:
        run = max(run, v) if math.isfinite(v) else run
        best.append(run if math.isfinite(run) else math.nan)
    ax.plot(steps, values, "o", c="#9aa5b1", ms=4, label=label)
    ax.step(steps, best, where="post", c="#d1495b", label="best so far")
    ax.set_xlabel("real evaluation")
    ax.set_ylabel(label)
    ax.legend(loc="lower right")
    return _save(fig, path)


def arch_plot(arch: Arch, path: str | os.PathLike[str], *, title: str = "") -> Path:
    """The architecture's graph: nodes by topological layer, labelled with their op, edges with theirs."""
    import networkx as nx

    g = nx.DiGraph(arch.graph)  # a copy: the architecture's graph is frozen and must stay untouched
    for i, gen in enumerate(nx.topological_generations(g)):
        for v in gen:
            g.nodes[v]["_layer"] = i
    by_layer: dict[int, list] = {}
    for v, d in g.nodes(data=True):
        by_layer.setdefault(d["_layer"], []).append(v)
    pos = {}
    for layer, nodes in by_layer.items():  # one column per layer; lone nodes zig-zag so skip edges stay apart
        for i, v in enumerate(nodes):
            y = (i - (len(nodes) - 1) / 2) if len(nodes) > 1 else 0.5 * (-1) ** layer
            pos[v] = (float(layer), float(y))
    fig, ax = _figure(7.0, 4.0)
    nx.draw_networkx_nodes(g, pos, ax=ax, node_color="#edae49", node_size=900)
    nx.draw_networkx_labels(g, pos, ax=ax, labels={v: f"{v}\n{d.get('op', '')}" for v, d in g.nodes(data=True)},
                            font_size=7)  # fmt: skip
    nx.draw_networkx_edges(g, pos, ax=ax, arrows=True, arrowsize=12, node_size=900)
    labels = {(u, v): d["op"] for u, v, d in g.edges(data=True) if d.get("op")}
    if labels:
        nx.draw_networkx_edge_labels(g, pos, ax=ax, edge_labels=labels, font_size=6)
    ax.set_title(title or "best architecture")
    ax.axis("off")
    return _save(fig, path)


def write_table(rows: Sequence[Mapping[str, Any]], path: str | os.PathLike[str]) -> Path:
    """Rows as CSV with the union of their keys as the header (first-seen order)."""
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    columns: list[str] = []
    for r in rows:
        columns.extend(k for k in r if k not in columns)
    with atomic_path(out) as tmp, tmp.open("w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, fieldnames=columns)
        writer.writeheader()
        writer.writerows(rows)
    return out
