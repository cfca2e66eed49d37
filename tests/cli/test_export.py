"""``wsnas export`` and :func:`wsnas.export`: the files, reloading them with and without wsnas, trained
weights, a search summary as the source, and one-line errors."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

import wsnas
from wsnas.search_spaces import get_space
from wsnas.testing import assert_one_line_error as _one_line_error
from wsnas.testing import run_cli as _cli

ARCH = "|nor_conv_3x3~0|+|nor_conv_1x1~0|avg_pool_3x3~1|+|skip_connect~0|none~1|nor_conv_3x3~2|"
TINY = ("-s", "C=4", "-s", "N=1")


def _rebuild(folder: Path) -> torch.nn.Module:
    """``load()`` of the export's own ``rebuild.py``, imported from the folder."""
    spec = importlib.util.spec_from_file_location(f"rebuild_{abs(hash(str(folder)))}", folder / "rebuild.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.load()


def test_export_reloads_through_wsnas_and_in_plain_pytorch(tmp_path) -> None:
    out = tmp_path / "winner"
    res = wsnas.export("nb201", ARCH, out, size={"C": 4, "N": 1}, seed=3)
    assert set(res.files) == {"state", "arch", "rebuild", "torchscript", "torch_export"}
    assert sorted(p.name for p in out.iterdir()) == ["arch.json", "model.pt2", "model.safetensors", "model.ts",
                                                     "rebuild.py"]  # fmt: skip
    doc = json.loads((out / "arch.json").read_text())
    assert doc["space"] == "nb201" and doc["arch"] == ARCH and doc["build_kwargs"] == {"C": 4, "N": 1}
    assert doc["weights"] == "generated" and doc["seed"] == 3 and doc["params"] == res.params > 0
    assert doc["input_shape"] == [3, 32, 32] and doc["num_classes"] == 10 and doc["versions"]["torch"]
    assert get_space("nb201").from_json(doc["arch_json"]) == get_space("nb201").from_string(ARCH)

    x = torch.randn(5, 3, 32, 32, generator=torch.Generator().manual_seed(0))  # [5, 3, 32, 32]
    with torch.no_grad():
        want = res.module(x)  # [5, 10]
        assert torch.equal(_rebuild(out)(x), want)
    torch.save(x, tmp_path / "x.pt")
    script = textwrap.dedent(f"""
        import sys, torch
        x = torch.load({str(tmp_path / 'x.pt')!r}, weights_only=True)
        with torch.no_grad():
            ts = torch.jit.load({str(out / 'model.ts')!r})(x)
            pt2 = torch.export.load({str(out / 'model.pt2')!r}).module()(x)
        assert "wsnas" not in sys.modules, sorted(m for m in sys.modules if m.startswith("wsnas"))
        torch.save({{"ts": ts, "pt2": pt2}}, {str(tmp_path / 'y.pt')!r})
    """)  # fmt: skip
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, cwd=tmp_path, timeout=300)
    assert done.returncode == 0, done.stderr
    got = torch.load(tmp_path / "y.pt", weights_only=True)
    torch.testing.assert_close(got["ts"], want, rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(got["pt2"], want, rtol=1e-4, atol=1e-5)

    again = wsnas.export("nb201", ARCH, out, size={"C": 4, "N": 1}, weights=out / "model.safetensors", overwrite=True,
                         torchscript=False, torch_export=False)  # fmt: skip
    assert again.weights == "given" and not (out / "model.ts").exists() and not (out / "model.pt2").exists()
    with torch.no_grad():
        assert torch.equal(again.module(x), want)


def test_cli_trained_weights_differ_from_generated(tmp_path) -> None:
    base = ["export", "--space", "nb201", "--arch", ARCH, *TINY, "--task", "synthetic", "--seed", "1",
            "--no-torchscript", "--no-torch-export", "--json"]  # fmt: skip
    gen = _cli(*base, "--out", str(tmp_path / "gen"))
    assert gen.exit_code == 0, gen.output
    trained = _cli(*base, "--out", str(tmp_path / "trained"), "--weights", "trained", "--epochs", "1")
    assert trained.exit_code == 0, trained.output
    g, t = json.loads(gen.stdout), json.loads(trained.stdout)
    assert g["num_classes"] == t["num_classes"] == 4 and t["input_shape"] == [3, 8, 8] and g["params"] == t["params"]
    assert g["weights"] == "generated" and t["weights"] == "trained" and 0.0 <= t["val_acc"] <= 1.0
    assert "rebuild.py" in t["load"]
    before, after = (
        load_file(tmp_path / "gen" / "model.safetensors"),
        load_file(tmp_path / "trained" / "model.safetensors"),
    )
    assert before.keys() == after.keys()
    assert any(not torch.equal(before[k], after[k]) for k in before if before[k].is_floating_point())
    doc = json.loads((tmp_path / "trained" / "arch.json").read_text())
    assert doc["task"]["name"] == "synthetic" and doc["task"]["epochs"] == 1
    assert doc["training"]["task"] == "synthetic" and len(doc["training"]["val_acc_curve"]) == 1
    x = torch.randn(2, 3, 8, 8)
    with torch.no_grad():
        assert _rebuild(tmp_path / "trained")(x).shape == (2, 4)


def test_cli_exports_the_best_of_a_search_summary(tmp_path) -> None:
    space = get_space("nb201")

    def convs(arch) -> float:  # noqa: ANN001
        return space.ops(arch).count("nor_conv_3x3") / 6

    result = wsnas.search("nb201", evaluator=convs, eval_budget=2, predictor=None, seed=0, output_dir=tmp_path / "run",
                          progress=False, tracking=False)  # fmt: skip
    summary = tmp_path / "run" / f"{result.study_name}.json"
    assert summary.is_file() and result.best is not None
    out = _cli("export", "--from-results", str(summary), "--out", str(tmp_path / "best"), *TINY, "--no-torch-export")
    assert out.exit_code == 0, out.output
    assert result.best.arch in out.stdout and "torch.jit.load(" in out.stdout and "model.ts" in out.stdout
    doc = json.loads((tmp_path / "best" / "arch.json").read_text())
    assert doc["space"] == "nb201" and doc["arch"] == result.best.arch
    record = wsnas.export(space, result.best, tmp_path / "record", size={"C": 4, "N": 1}, torchscript=False,
                          torch_export=False)  # fmt: skip
    assert record.arch == result.best.arch  # the Python call takes the search record itself


def test_cli_bad_input_is_one_line(tmp_path) -> None:
    full = tmp_path / "full"
    full.mkdir()
    (full / "keep.txt").write_text("mine")
    out = str(tmp_path / "out")
    _one_line_error(_cli("export", "--space", "nb999", "--arch", ARCH, "--out", out), "unknown search space 'nb999'")
    _one_line_error(_cli("export", "--space", "nb201", "--arch", "|bad|", "--out", out), "NB201 string")
    _one_line_error(_cli("export", "--space", "nb201", "--arch", ARCH, "--out", str(full)), "is not empty")
    assert [p.name for p in full.iterdir()] == ["keep.txt"]
    _one_line_error(_cli("export", "--from-results", str(tmp_path / "nope.json"), "--out", out), "does not exist")
    _one_line_error(_cli("export", "--out", out), "--arch STRING")
    _one_line_error(_cli("export", "--arch", ARCH, "--out", out), "--arch needs --space")
    _one_line_error(_cli("export", "--space", "nb201", "--arch", ARCH, "--out", out, "--weights", "trained"),
                    "--weights trained needs --task")  # fmt: skip
    _one_line_error(_cli("export", "--space", "nb201", "--arch", ARCH, "--out", out, "-s", "C=0"),
                    "nb201 cannot be built with size")  # fmt: skip
    _one_line_error(_cli("export", "--space", "nb201", "--arch", ARCH, "--out", out, "--weights", "w.bin"),
                    "no such file")  # fmt: skip
    _one_line_error(_cli("export", "--space", "nb201", "--arch", ARCH, "--out", out, "--task", "imagenet"),
                    "unknown task 'imagenet'")  # fmt: skip
    not_summary = tmp_path / "other.json"
    not_summary.write_text('{"arch": 1}')
    _one_line_error(_cli("export", "--from-results", str(not_summary), "--out", out), "has no 'best'")
    assert not Path(out).exists()


def test_python_export_refuses_a_full_folder(tmp_path) -> None:
    (tmp_path / "x").write_text("")
    with pytest.raises(wsnas.ExportError, match="is not empty"):
        wsnas.export("nb201", ARCH, tmp_path)
    with pytest.raises(wsnas.InvalidArchitecture):
        wsnas.export("nb201", 42, tmp_path / "new")


def test_a_program_that_computes_something_else_is_refused() -> None:
    from wsnas.training._export import _check_same

    net = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(12, 3)).eval()
    x = torch.randn(2, 3, 2, 2)
    with torch.no_grad():
        logits = net(x)
        _check_same("copy", net, net, x, logits)
        with pytest.raises(wsnas.ExportError, match="the shifted does not compute what the network does"):
            _check_same("shifted", lambda t: net(t) + 1, net, x, logits)
        with pytest.raises(wsnas.ExportError, match="the baked fails on a batch of 3"):
            _check_same("baked", lambda t: net(t.view(2, 3, 2, 2)), net, x, logits)
