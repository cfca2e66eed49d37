"""The search's pictures and tables: real PNG and CSV files, the architecture left untouched."""

from __future__ import annotations

import csv

import numpy as np

from wsnas._search._plots import arch_plot, pareto_plot, progress_plot, scatter_plot, write_table
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
