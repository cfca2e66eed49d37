"""The benchmarks' own tools: fidelity_report.py (each zoo file against a reference on their common architectures,
and pairs), transfer.py's --zoo parsing (several files of one space), bench_predict.py's --sample and
long_reference.py's report."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"


def _script(name: str):
    spec = importlib.util.spec_from_file_location(f"benchmark_{name}", BENCHMARKS / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _report():
    return _script("fidelity_report")


def _zoo(path: Path, accs: dict[str, float], diverged: tuple[str, ...] = ()) -> Path:
    rows = [{"arch": f"w16:{'k3e1s0-' * (i + 1)}".rstrip("-"), "arch_hash": h, "val_acc": a, "cpu_seconds": 2.0 + i,
             "params": 100 + i, "flops": 1000 - i, "diverged": h in diverged} for i, (h, a) in enumerate(accs.items())]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def test_spearman_against_the_reference_on_common_archs_and_of_pairs(tmp_path, capsys) -> None:
    ref = _zoo(tmp_path / "ref.jsonl", {"a": 0.1, "b": 0.2, "c": 0.3, "d": 0.4, "e": 0.5})
    same = _zoo(tmp_path / "same.jsonl", {"a": 0.0, "b": 0.1, "c": 0.5, "d": 0.6, "z": 0.9})  # z: not in ref
    flipped = _zoo(tmp_path / "flip.jsonl", {"a": 0.5, "b": 0.4, "c": 0.3, "d": 0.2, "e": 0.1}, diverged=("e",))
    _report().main(["--ref", "r", "--zoo", f"r={ref}", "--zoo", f"s={same}", "--zoo", f"f={flipped}",
                    "--pair", "s,f"])  # fmt: skip
    lines = [json.loads(x) for x in capsys.readouterr().out.splitlines() if x.startswith("{")]
    rows = {r["recipe"]: r for r in lines if "recipe" in r}
    assert rows["s"]["n_common"] == 4 and rows["s"]["spearman_vs_ref"] == pytest.approx(1.0)
    assert rows["f"]["n"] == 4 and rows["f"]["spearman_vs_ref"] == pytest.approx(-1.0)  # the diverged one dropped
    pair = next(r for r in lines if "pair" in r)
    assert pair["n_common"] == 4 and pair["spearman"] == pytest.approx(-1.0)
    sizes = lines[-1]["size_spearman"]  # params grow, FLOPs fall, layers grow with the reference's accuracy
    assert sizes["params"] == pytest.approx(1.0) and sizes["flops"] == pytest.approx(-1.0)
    assert sizes["layers"] == pytest.approx(1.0)


def test_a_reference_that_is_no_zoo_name_is_refused(tmp_path, capsys) -> None:
    ref = _zoo(tmp_path / "ref.jsonl", {"a": 0.1, "b": 0.2, "c": 0.3})
    with pytest.raises(SystemExit) as exc:
        _report().main(["--ref", "other", "--zoo", f"r={ref}"])
    assert exc.value.code == 2 and "--ref 'other' is none of the --zoo names ['r']" in capsys.readouterr().err


def test_a_space_may_have_several_zoo_files_and_a_bad_item_is_one_error() -> None:
    parse = _script("transfer").parse_zoos
    assert parse(["nb101=a.jsonl", "macro=b.jsonl,c.jsonl", "macro=d.jsonl"]) == {
        "nb101": ["a.jsonl"], "macro": ["b.jsonl", "c.jsonl", "d.jsonl"]}
    for bad in ("macro", "=a.jsonl", "macro=", "macro=a.jsonl,"):
        with pytest.raises(SystemExit, match=r"^error: --zoo wants SPACE=FILE\[,FILE...\], got"):
            parse([bad])


def test_bench_predict_scores_a_seeded_sample_of_a_space_too_large_to_enumerate(capsys) -> None:
    # the script runs `wsnas predict` on the sample and exits non-zero unless every architecture came back in order
    assert _script("bench_predict").main(["--space", "macro", "--sample", "3", "--seed", "5"]) == 0
    (row,) = [json.loads(x) for x in capsys.readouterr().out.splitlines() if x.startswith("{")]
    assert row["space"] == "macro" and row["n"] == 3 and row["sample"] == 3 and row["wall_s"] > 0


def test_long_reference_ranks_the_held_out_cells_against_the_reference_runs(tmp_path, capsys, cifar_dir) -> None:
    """--report-only: each ranking's Spearman against the reference runs of the shipped predictor's held-out cells
    (here five made-up runs whose accuracies reverse the zoo's labels), and one error line without enough runs."""
    script = _script("long_reference")
    from wsnas.predictors import load
    from wsnas.training import cifar10

    held_out = load("nb201").card["evaluation"]["test_hashes"]
    fp = cifar10(str(cifar_dir), **script.BASE).with_recipe(**script.REFERENCE).fingerprint
    zoo = {r["arch_hash"]: r for r in map(json.loads, script.zoo_path(None).read_text().splitlines())}
    # five reference runs of held-out cells whose accuracies reverse the zoo's order
    runs = [dict(zoo[h], task_fingerprint=fp, val_acc=1.0 - zoo[h]["val_acc"]) for h in held_out if h in zoo][:5]
    out = tmp_path / "ref.jsonl"
    args = ["--data-dir", str(cifar_dir), "--out", str(out)]
    out.write_text("".join(json.dumps(r) + "\n" for r in runs[:2]))
    assert script.main([*args, "--report-only"]) == 2
    assert "error: only 2 held-out cells have a reference run" in capsys.readouterr().err
    out.write_text("".join(json.dumps(r) + "\n" for r in runs))
    assert script.main([*args, "--report-only"]) == 0
    rows = {r["ranking"]: r for r in map(json.loads, capsys.readouterr().out.splitlines())}
    assert {"predictor", "params", "naswot", "zoo label (3 epochs, C=16)"} <= set(rows)
    assert all(r["n"] == 5 for r in rows.values())
    assert rows["zoo label (3 epochs, C=16)"]["spearman_vs_reference"] == pytest.approx(-1.0)
    # --bootstrap: the predictor's paired lead over a ranking that reverses the reference is never negative
    assert script.main([*args, "--report-only", "--bootstrap", "30"]) == 0
    rows = {r["ranking"]: r for r in map(json.loads, capsys.readouterr().out.splitlines())}
    assert "predictor_lead" not in rows["predictor"] and rows["predictor"]["bootstrap_sd"] >= 0
    zoo_row = rows["zoo label (3 epochs, C=16)"]
    assert zoo_row["predictor_lead"] >= 0 and zoo_row["predictor_behind_share"] == 0.0
    # --baselines: zc_gbm and the arch-only GNN fitted on the first B cells of the card's training split
    assert script.main([*args, "--report-only", "--baselines", "3"]) == 2
    assert "error: --baselines wants label budgets in [5, 700] or 'all', got '3'" in capsys.readouterr().err
    assert script.main([*args, "--report-only", "--baselines", "10"]) == 0
    rows = {r["ranking"]: r for r in map(json.loads, capsys.readouterr().out.splitlines())}
    for name in ("zc_gbm, 10 labels", "arch_gnn, 10 labels"):
        assert rows[name]["n"] == 5 and -1.0 <= rows[name]["spearman_vs_reference"] <= 1.0
    # --pretrained: a pretrained predictor (here on made-up targets) fitted on the same 10 cells
    import numpy as np

    from wsnas.predictors import WeightPredictor, save
    from wsnas.search_spaces import NB201

    space = NB201()
    some = [space.sample(np.random.default_rng(i)) for i in range(12)]
    pre = WeightPredictor(space, ensemble=2, seed=0, size={"C": 2, "N": 1})
    pre.pretrain(some, np.random.default_rng(0).normal(size=(12, 2)), ["a", "b"], epochs=1, progress=False)
    save(pre, tmp_path / "pre.safetensors")
    assert script.main([*args, "--report-only", "--pretrained", str(tmp_path / "pre.safetensors")]) == 2
    assert "error: --pretrained goes with --baselines" in capsys.readouterr().err
    with_pre = [*args, "--report-only", "--baselines", "10", "--pretrained"]
    assert script.main([*with_pre, str(tmp_path / "pre.safetensors")]) == 0
    rows = {r["ranking"]: r for r in map(json.loads, capsys.readouterr().out.splitlines())}
    assert rows["pretrained encoder + prior, 10 labels"]["n"] == 5
    (tmp_path / "junk.safetensors").write_bytes(b"not a predictor")
    assert script.main([*with_pre, str(tmp_path / "junk.safetensors")]) == 2
    assert capsys.readouterr().err.startswith("error: ")


def test_long_reference_trains_the_missing_cells_appends_them_and_resumes(tmp_path, capsys, cifar_dir,
                                                                          monkeypatch) -> None:  # fmt: skip
    """The training path, at a tiny recipe in place of the 6-epoch reference: the first 2 held-out cells are
    trained and appended, the report ranks them, and a rerun trains nothing again."""
    script = _script("long_reference")
    monkeypatch.setattr(script, "REFERENCE", {"epochs": 1, "resolution": 8, "subset": 64, "size": {"C": 4, "N": 1}})
    out = tmp_path / "ref.jsonl"
    args = ["--data-dir", str(cifar_dir), "--out", str(out), "--n", "3", "--workers", "1"]
    assert script.main(args) == 0
    captured = capsys.readouterr()
    assert "long_reference: 0 of 3 cells trained, 3 to go" in captured.err
    runs = [json.loads(x) for x in out.read_text().splitlines()]
    from wsnas.predictors import load

    assert [r["arch_hash"] for r in runs] == load("nb201").card["evaluation"]["test_hashes"][:3]
    rows = {r["ranking"]: r for r in map(json.loads, captured.out.splitlines())}
    assert rows["predictor"]["n"] == 3
    assert script.main(args) == 0
    assert "long_reference: 3 of 3 cells trained, 0 to go" in capsys.readouterr().err
    assert len(out.read_text().splitlines()) == 3
