"""The layout shows the architecture (docs/architecture.md), read from the source with ``ast``:

* the module import graph has no cycle: every import counts, at module level or inside a function, and
  the names a package loads lazily (its ``_LAZY`` map) count as its imports; only imports under
  ``if TYPE_CHECKING:`` do not (they never run);
* data flows down: each part of wsnas imports only parts below it (:data:`LAYERS`);
* a private module (``_name``) is imported only from inside the package that holds it; the ground
  modules of wsnas (``wsnas._arch``, ``wsnas._errors``, ...) are shared by every part;
* ``wsnas/`` has at most 12 modules of its own besides its subpackages, and no file is over 500 lines.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
#: import name -> folder (pyproject.toml's package-dir)
FOLDERS = {
    "wsnas": ROOT / "wsnas",
    "wsnas.search_spaces": ROOT / "search_spaces",
    "wsnas.predictors": ROOT / "predictors",
    "wsnas.kernels": ROOT / "kernels",
}
#: the parts of wsnas from the bottom up; a module may import its own part and the parts below it
LAYERS = (
    "ground",  # the modules directly in wsnas/: Arch, canonical form, errors, version, netstats, atomic writes
    "wsnas.kernels",
    "wsnas.encoding",
    "wsnas.search_spaces",
    "wsnas.training",
    "wsnas.predictors",
    "wsnas._search",
    "wsnas.cli",
    "wsnas.testing",  # test kits for the whole stack: a space's contract, the command in-process
    "wsnas",  # the package itself: the public names, loaded lazily from the parts
)
MAX_GROUND_MODULES = 12
MAX_LINES = 500


def modules() -> dict[str, Path]:
    """Every module of the package, by import name."""
    out: dict[str, Path] = {}
    for package, folder in FOLDERS.items():
        for path in sorted(folder.rglob("*.py")):
            parts = [package, *path.relative_to(folder).with_suffix("").parts]
            if parts[-1] == "__init__":
                parts.pop()
            out[".".join(parts)] = path
    return out


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _nodes(tree: ast.AST) -> Iterator[ast.AST]:
    """Every node of ``tree`` except the bodies of ``if TYPE_CHECKING:`` blocks."""
    stack = [tree]
    while stack:
        node = stack.pop()
        yield node
        if isinstance(node, ast.If) and _is_type_checking(node.test):
            stack.extend(node.orelse)
            continue
        stack.extend(ast.iter_child_nodes(node))


def imports(name: str, path: Path, known: set[str]) -> set[str]:
    """The modules of ``known`` that module ``name`` (file ``path``) imports."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    out: set[str] = set()
    for node in _nodes(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            out |= {a.name for a in node.names if a.name in known}
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = ".".join(package.split(".")[: len(package.split(".")) - node.level + 1])
                base = f"{base}.{node.module}" if node.module else base
            else:
                base = node.module or ""
            for a in node.names:
                sub = f"{base}.{a.name}"
                if sub in known:
                    out.add(sub)
                elif base in known:
                    out.add(base)
        elif isinstance(node, (ast.Assign, ast.AnnAssign)):  # a package's lazily loaded names
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            if any(isinstance(t, ast.Name) and t.id == "_LAZY" for t in targets) and node.value is not None:
                out |= {c.value for c in ast.walk(node.value) if isinstance(c, ast.Constant) and c.value in known}
    out.discard(name)
    return out


def graph() -> dict[str, set[str]]:
    mods = modules()
    return {name: imports(name, path, set(mods)) for name, path in mods.items()}


def find_cycle(edges: dict[str, set[str]]) -> list[str] | None:
    """One import cycle of ``edges`` (``[a, b, ..., a]``), or ``None``."""
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        path.append(node)
        for nxt in sorted(edges.get(node, ())):
            if state.get(nxt) == 1:
                return path[path.index(nxt) :] + [nxt]
            if nxt not in state and (found := visit(nxt)):
                return found
        path.pop()
        state[node] = 2
        return None

    for node in sorted(edges):
        if node not in state and (found := visit(node)):
            return found
    return None


def layer(name: str) -> str:
    """The part of wsnas that module ``name`` belongs to (see :data:`LAYERS`)."""
    for part in sorted(LAYERS[1:-1], key=len, reverse=True):
        if name == part or name.startswith(part + "."):
            return part
    return "wsnas" if name == "wsnas" else "ground"


def owner(name: str) -> str | None:
    """The package whose private module ``name`` is (the parent of its last ``_private`` part), or None."""
    parts = name.split(".")
    private = [i for i, p in enumerate(parts) if p.startswith("_") and not p.startswith("__")]
    return ".".join(parts[: private[-1]]) if private else None


def test_the_module_import_graph_has_no_cycle() -> None:
    edges = graph()
    assert len(edges) > 60 and "wsnas.encoding._trace" in edges["wsnas.encoding"]  # the graph is read
    cycle = find_cycle(edges)
    assert cycle is None, "import cycle: " + " -> ".join(cycle or [])


def test_the_cycle_finder_finds_a_cycle_and_the_reader_sees_every_kind_of_import(tmp_path: Path) -> None:
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set(), "c": {"a", "b"}}) is None
    source = tmp_path / "m.py"
    source.write_text(
        "from typing import TYPE_CHECKING\nimport p.x\nfrom . import y\nfrom .z import f\n"
        "if TYPE_CHECKING:\n    import p.hidden\nelse:\n    import p.other\n"
        "def g():\n    from p.w import h\n_LAZY = {'n': 'p.v'}\n"
    )
    known = {"p", "p.x", "p.y", "p.z", "p.w", "p.v", "p.hidden", "p.other"}
    assert imports("p.m", source, known) == {"p.x", "p.y", "p.z", "p.w", "p.v", "p.other"}


def test_data_flows_down() -> None:
    rank = {part: i for i, part in enumerate(LAYERS)}
    upward = sorted(
        f"{a} ({layer(a)}) imports {b} ({layer(b)})"
        for a, targets in graph().items()
        for b in targets
        if rank[layer(b)] > rank[layer(a)]
    )
    assert not upward, "imports against the data flow:\n" + "\n".join(upward)


def test_private_modules_are_imported_only_inside_their_package() -> None:
    outside = sorted(
        f"{a} imports {b}, private to {owner(b)}"
        for a, targets in graph().items()
        for b in targets
        if owner(b) is not None and not (a == owner(b) or a.startswith(f"{owner(b)}."))
    )
    assert not outside, "private modules imported from outside their package:\n" + "\n".join(outside)


def test_wsnas_has_a_few_ground_modules_and_no_file_is_long() -> None:
    ground = sorted(p.name for p in (ROOT / "wsnas").glob("*.py"))
    assert len(ground) <= MAX_GROUND_MODULES, f"{len(ground)} modules directly in wsnas/: {ground}"
    files = [p for folder in (*FOLDERS.values(), ROOT / "tests", ROOT / "benchmarks") for p in folder.rglob("*.py")]
    long = sorted(f"{p.relative_to(ROOT)}: {n} lines" for p in files
                  if (n := len(p.read_text(encoding="utf-8").splitlines())) > MAX_LINES)  # fmt: skip
    assert not long, f"files over {MAX_LINES} lines:\n" + "\n".join(long)
