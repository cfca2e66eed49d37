"""``wsnas spaces`` and ``wsnas arch show``, and their one-line errors."""

from __future__ import annotations

import json

from click.testing import CliRunner

from wsnas.cli import main
from wsnas.testing import assert_one_line_error as _one_line_error

EXAMPLE = "|nor_conv_3x3~0|+|nor_conv_3x3~0|avg_pool_3x3~1|+|skip_connect~0|nor_conv_3x3~1|skip_connect~2|"


def run(*args: str):
    return CliRunner().invoke(main, list(args))


def test_spaces_lists_nb201_with_its_size() -> None:
    result = run("spaces")
    assert result.exit_code == 0, result.output
    line = next(line for line in result.output.splitlines() if line.startswith("nb201"))
    assert "15,625" in line
    rows = json.loads(run("spaces", "--json").output)
    assert {"name": "nb201", "size": 15625}.items() <= next(r for r in rows if r["name"] == "nb201").items()


def test_arch_show_prints_params_flops_and_graph() -> None:
    result = run("arch", "show", "nb201", EXAMPLE, "-s", "C=8", "-s", "N=1")
    assert result.exit_code == 0, result.output
    assert "params  " in result.output and "FLOPs   " in result.output
    assert "edge 1 -> 2: avg_pool_3x3" in result.output
    doc = json.loads(run("arch", "show", "nb201", EXAMPLE, "--json").output)
    assert doc["string"] == EXAMPLE and doc["params"] == 802_426 and doc["flops"] > 0


def test_errors_are_one_line_and_non_zero() -> None:
    _one_line_error(run("arch", "show", "nb201", "|nope~0|"), "node groups")
    _one_line_error(run("arch", "show", "nb999", EXAMPLE), "unknown search space 'nb999'; known spaces: nb201")
    _one_line_error(run("arch", "show", "nb201", EXAMPLE, "-s", "C=0"), "C must be an int >= 1, got 0")
    _one_line_error(run("arch", "show", "nb201", EXAMPLE, "-s", "X=1"), "unexpected keyword argument 'X'")
    _one_line_error(run("arch", "show", "nb201", EXAMPLE, "-s", "C"), "--size expects KEY=VALUE")
