"""The search's pictures and tables: real PNG and CSV files, the architecture left untouched, an architecture's
picture whose title fits and whose texts do not overlap."""

from __future__ import annotations

import csv

import numpy as np
import pytest

from wsnas._search._plots import arch_figure, arch_plot, pareto_plot, progress_plot, scatter_plot, write_table
from wsnas.search_spaces import get_space
from wsnas.training import sample_distinct

PNG = b"\x89PNG\r\n\x1a\n"


def test_every_plot_is_a_png_and_the_table_a_csv(tmp_path) -> None:
    rng = np.random.default_rng(0)
    pts = [{"accuracy": float(a), "params": float(p)} for a, p in rng.random((12, 2))]
    front = [i % 3 == 0 for i in range(12)]
    files = [
        pareto_plot(pts, front, "params", "accuracy", tmp_path / "pareto.png"),
        scatter_plot(rng.random(10).tolist(), rng.random(10).tolist(), tmp_path / "scatter.png"),
        progress_plot([0.2, 0.5, float("nan"), 0.4, 0.7], tmp_path / "progress.png"),
    ]
    for space_name in ("nb201", "nb101", "graph"):
        space = get_space(space_name)
        arch = sample_distinct(space, 1, 0)[0]
        before = (arch.hash, space.to_string(arch))
        files.append(arch_plot(arch, tmp_path / f"{space_name}.png"))
        assert (arch.hash, space.to_string(arch)) == before and "_layer" not in str(arch.to_json())
    for f in files:
        data = f.read_bytes()
        assert data.startswith(PNG) and len(data) > 5000, f
    rows = [{"rank": 1, "arch": "a"}, {"rank": 2, "arch": "b", "note": "x,y"}]
    with write_table(rows, tmp_path / "top.csv").open(newline="") as f:
        back = list(csv.DictReader(f))
    assert back == [{"rank": "1", "arch": "a", "note": ""}, {"rank": "2", "arch": "b", "note": "x,y"}]


@pytest.mark.parametrize(
    ("space_name", "title"),
    [("nb201", ""), ("nb101", ""), ("macro", ""), ("nb201", "W" * 200), ("graph", "a|b," * 80)],
)
def test_arch_picture_title_fits_and_no_text_overlaps(space_name: str, title: str, tmp_path) -> None:
    space = get_space(space_name)
    arch = max(sample_distinct(space, 12, 1), key=lambda a: len(space.to_string(a)))  # the longest string
    fig = arch_figure(arch, title=title or f"best: {space.to_string(arch)}")
    fig.canvas.draw()  # positions as saved
    renderer = fig.canvas.get_renderer()
    frame = fig.bbox
    ax = fig.axes[0]
    texts = [ax.title, *ax.texts, *ax.get_legend().get_texts()]
    assert {t.get_text() for t in ax.texts} == {str(v) for v in arch.graph}  # the nodes' ids, no op on an edge
    boxes = [t.get_window_extent(renderer) for t in texts if t.get_text()]
    for t, box in zip(texts, boxes):  # every text inside the figure: no clipped title, no clipped legend
        assert frame.x0 <= box.x0 and box.x1 <= frame.x1 and frame.y0 <= box.y0 and box.y1 <= frame.y1, t.get_text()
    for i, a in enumerate(boxes):
        for j in range(i + 1, len(boxes)):
            assert not a.overlaps(boxes[j]), (texts[i].get_text(), texts[j].get_text())
    ops = {d["op"] for _, _, d in arch.graph.edges(data=True) if d.get("op")}
    ops |= {d["op"] for _, d in arch.graph.nodes(data=True)}
    assert {t.get_text() for t in ax.get_legend().get_texts()} == ops  # the legend names every op once
    data = arch_plot(arch, tmp_path / "a.png", title=title).read_bytes()
    assert data.startswith(PNG) and len(data) > 5000
