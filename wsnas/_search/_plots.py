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

__all__ = ["pareto_plot", "scatter_plot", "progress_plot", "arch_plot", "arch_figure", "write_table"]


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
    """The architecture's graph: nodes by topological layer, named by their id; nodes and edges coloured by
    their op, which a legend below names (so no op name sits on an edge); the title wrapped to fit."""
    return _save(arch_figure(arch, title=title), path)


def arch_figure(arch: Arch, *, title: str = "") -> Any:
    """The figure :func:`arch_plot` saves, laid out (``fig.tight_layout()``): its title, wrapped at the
    architecture string's separators and shrunk if need be, lies inside the figure."""
    import networkx as nx
    from matplotlib.lines import Line2D

    g = nx.DiGraph(arch.graph)  # a copy: the architecture's graph is frozen and must stay untouched
    layer = {v: i for i, gen in enumerate(nx.topological_generations(g)) for v in gen}
    by_layer: dict[int, list] = {}
    for v in g:
        by_layer.setdefault(layer[v], []).append(v)
    skips = any(layer[v] - layer[u] > 1 for u, v in g.edges)  # edges jumping a layer: lone nodes zig-zag
    pos = {}
    for i, nodes in by_layer.items():  # one column per layer
        for k, v in enumerate(nodes):
            y = (k - (len(nodes) - 1) / 2) if len(nodes) > 1 else 0.5 * (-1) ** i if skips else 0.0
            pos[v] = (float(i), float(y))
    node_ops = list(dict.fromkeys(str(d.get("op", "")) for _, d in g.nodes(data=True)))
    edge_ops = list(dict.fromkeys(str(d.get("op", "")) for _, _, d in g.edges(data=True) if d.get("op")))
    colour = {op: _NODE_COLOURS[i % len(_NODE_COLOURS)] for i, op in enumerate(node_ops)}
    colour.update({op: _EDGE_COLOURS[i % len(_EDGE_COLOURS)] for i, op in enumerate(edge_ops)})
    colour["none"] = "#b8b8b8"  # NB201's zero op: no connection, drawn faint and dotted
    style = {op: (":" if op == "none" else "-") for op in edge_ops}
    fig, ax = _figure(7.0, 4.6)
    size = min(600.0, (0.45 * 440.0 / max(1, len(by_layer) - 1)) ** 2)  # area in pt^2: a gap between columns
    nx.draw_networkx_nodes(g, pos, ax=ax, node_color=[colour[str(d.get("op", ""))] for _, d in g.nodes(data=True)],
                           node_size=size)  # fmt: skip
    nx.draw_networkx_labels(g, pos, ax=ax, labels={v: str(v) for v in g}, font_size=8 if size >= 400 else 7)
    for op in [None, *edge_ops]:  # edges without an op (cells with node ops) in black
        edges = [(u, v) for u, v, d in g.edges(data=True) if d.get("op") == op or (op is None and not d.get("op"))]
        if edges:
            nx.draw_networkx_edges(g, pos, ax=ax, edgelist=edges, arrows=True, arrowsize=12, node_size=size,
                                   edge_color="black" if op is None else colour[op], width=1.8,
                                   style=style.get(op, "-"))  # fmt: skip
    handles = [Line2D([], [], ls="", marker="o", ms=9, mfc=colour[op], mec=colour[op], label=op or "node")
               for op in node_ops]  # fmt: skip
    handles += [Line2D([], [], color=colour[op], lw=2, ls=style[op], label=op) for op in edge_ops]
    ax.legend(handles=handles, loc="upper center", bbox_to_anchor=(0.5, -0.02), ncol=min(4, len(handles)),
              fontsize=8, frameon=False)  # fmt: skip
    ax.margins(0.08)
    ax.axis("off")
    _fit_title(fig, ax, title or "best architecture")
    return fig


# light nodes (their black ids stay legible), dark edges
_NODE_COLOURS = ["#f3c969", "#a8d5ba", "#9ecae1", "#f4a6a6", "#cdb4db", "#d9d9d9", "#ffd8b1", "#b5e48c"]
_EDGE_COLOURS = ["#d1495b", "#00798c", "#2e4057", "#8d6cab", "#e08e0b", "#3c8d5a", "#8c564b", "#7f7f7f"]


def _fit_title(fig: Any, ax: Any, text: str, size: float = 10.0, smallest: float = 6.0) -> None:
    """Set ``text`` as ``ax``'s title, wrapped at its separators to the figure's width (a smaller font, down to
    ``smallest``, rather than over three lines), and lay the figure out; narrower lines while it overflows."""
    renderer = fig.canvas.get_renderer()
    chars = 0
    while True:
        chars = chars or int(fig.get_figwidth() * 72 / (0.6 * size))  # about 0.6 em a character
        wrapped = _wrap(text, chars)
        if wrapped.count("\n") > 2 and size > smallest:
            size, chars = max(smallest, size - 1.0), 0
            continue
        title = ax.set_title(wrapped, fontsize=size)
        fig.tight_layout()
        box, frame = title.get_window_extent(renderer), fig.bbox
        if (box.x0 >= frame.x0 and box.x1 <= frame.x1) or chars <= 8:
            return
        chars = max(8, min(chars - 1, int(chars * frame.width / box.width) - 1))


def _wrap(text: str, width: int) -> str:
    """``text`` in lines of at most ``width`` characters, broken after a separator (space ``|`` ``,`` ``;``
    ``/``) where there is one, else anywhere."""
    lines, line = [], ""
    for piece in _pieces(text):
        if line and len(line) + len(piece) > width:
            lines.append(line.rstrip())
            line = ""
        while len(piece) > width:  # a piece longer than a line: cut it
            lines.append(piece[:width])
            piece = piece[width:]
        line += piece
    return "\n".join([*lines, line.rstrip()]) if line else "\n".join(lines)


def _pieces(text: str) -> list[str]:
    """``text`` cut after each separator (space ``|`` ``,`` ``;`` ``/``)."""
    out, cur = [], ""
    for c in text:
        cur += c
        if c in " |,;/":
            out.append(cur)
            cur = ""
    return [*out, cur] if cur else out


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
