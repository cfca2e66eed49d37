"""Replay a careful user's probing of wsnas and count, per category, the probes that held and failed.

    python benchmarks/probe.py            # every category (the signal probes start processes: ~2 min)
    python benchmarks/probe.py --fast     # without the MLflow UI probe

Categories: fuzzed architecture strings (``Arch`` parsing of every space and ``wsnas arch show``: only
wsnas's own errors may come out), tampered predictor files (truncated, flipped bytes, wrong header: always
PredictorFileError), unreadable or garbage files given to every file-taking command (one ``error:`` line,
exit 2), storage damage (torn journal: recovered; empty, garbage, damaged SQLite: refused), NaN tables,
Python API type errors, signals (kill -9 / SIGTERM leave no process behind). Exits 1 when any probe failed.
"""

from __future__ import annotations

import argparse
import csv
import os
import random
import signal
import socket
import sqlite3
import subprocess
import sys
import tempfile
import time
import traceback
import warnings
from collections import Counter
from collections.abc import Callable
from pathlib import Path

from click.testing import CliRunner

import wsnas
from wsnas import WsnasError
from wsnas.cli import main
from wsnas.search_spaces import get_space, space_names

try:
    from wsnas._lifeline import is_alive
except ImportError:  # an older wsnas, probed for comparison

    def is_alive(pid: int) -> bool:
        try:
            stat = Path(f"/proc/{pid}/stat").read_bytes()
        except OSError:
            return False
        return stat[stat.rfind(b")") + 2 : stat.rfind(b")") + 3] not in (b"Z", b"X")


HELD: Counter[str] = Counter()
FAILED: Counter[str] = Counter()
FIRST_FAILURES: dict[str, list[str]] = {}


def record(category: str, ok: bool, what: str) -> None:
    (HELD if ok else FAILED)[category] += 1
    if not ok:
        FIRST_FAILURES.setdefault(category, [])
        if len(FIRST_FAILURES[category]) < 3:
            FIRST_FAILURES[category].append(what)


def raises_own(category: str, what: str, fn: Callable[[], object], allowed: type[BaseException] = WsnasError) -> None:
    """The call either works or raises ``allowed``; anything else is a failed probe."""
    try:
        fn()
    except allowed:
        record(category, True, what)
    except Exception as exc:  # noqa: BLE001 - that is the point of a probe
        record(category, False, f"{what}: {type(exc).__name__}: {exc}"[:300])
    else:
        record(category, True, what)


def cli_one_line(category: str, args: list[str], must_fail: bool = True) -> None:
    result = CliRunner().invoke(main, args, prog_name="wsnas")
    lines = [line for line in result.output.splitlines() if line.strip()]
    crashed = result.exception is not None and not isinstance(result.exception, SystemExit)
    if result.exit_code == 0 and not must_fail:
        record(category, True, " ".join(args))
        return
    ok = result.exit_code == 2 and not crashed and len(lines) == 1 and lines[0].startswith("error: ")
    detail = repr(result.exception) if crashed else result.output[-300:]
    record(category, ok, f"wsnas {' '.join(args)} -> exit {result.exit_code}: {detail}")


# -- fuzzed architecture strings ----------------------------------------------------------------------------
def mutate(text: str, rng: random.Random) -> str:
    alphabet = "|~+=;,()_-:0123456789abcdefghijklmnopqrstuvwxyz \t\n\x00é{}[]\"'"
    s = list(text)
    for _ in range(rng.randint(1, 4)):
        op = rng.randrange(5)
        i = rng.randrange(len(s) + 1)
        if op == 0 and s:
            del s[min(i, len(s) - 1)]
        elif op == 1:
            s.insert(i, rng.choice(alphabet))
        elif op == 2 and s:
            s[min(i, len(s) - 1)] = rng.choice(alphabet)
        elif op == 3:
            s = s[:i]
        else:
            s = s + s[i:]
    return "".join(s)


def probe_arch_strings(n: int) -> None:
    rng = random.Random(0)
    import numpy as np

    spaces = [get_space(name) for name in space_names()]
    seeds = {sp.name: [sp.to_string(sp.sample(np.random.default_rng(i))) for i in range(5)] for sp in spaces}
    extra = ["", " ", "|", "||", "\x00", "a" * 10000, "None", "{}", "[]", "é"]
    for k in range(n):
        sp = spaces[k % len(spaces)]
        text = extra[k] if k < len(extra) else mutate(rng.choice(seeds[sp.name]), rng)
        raises_own("arch strings", f"{sp.name}: {text!r}", lambda sp=sp, text=text: sp.from_string(text))
    for k in range(40):  # through the command too
        sp = spaces[k % len(spaces)]
        text = mutate(rng.choice(seeds[sp.name]), rng)
        if text.startswith("-"):
            text = "x" + text
        cli_one_line("arch strings", ["arch", "show", sp.name, text], must_fail=False)


# -- tampered predictor files -------------------------------------------------------------------------------
def probe_predictor_files(tmp: Path) -> None:
    from wsnas.predictors import EncoderConfig, WeightPredictor, load

    pred = WeightPredictor(get_space("nb201"), encoder=EncoderConfig(hidden=8, layers=1), ensemble=1,
                           size={"C": 2, "N": 1}, seed=0, device="cpu")  # fmt: skip
    from wsnas.training import sample_distinct

    archs = sample_distinct(get_space("nb201"), 8, 0)
    pred.fit(archs, [float(i) for i in range(8)], epochs=1, batch_size=8, progress=False)
    good = Path(pred.save(tmp / "good.safetensors"))
    data = good.read_bytes()
    rng = random.Random(1)
    variants: dict[str, bytes] = {"empty": b"", "wrong header": b"\xff" * 8 + data[8:], "pickle": b"\x80\x04K\x01."}
    for cut in (1, 7, 8, 100, len(data) // 2, len(data) - 1):
        variants[f"truncated at {cut}"] = data[:cut]
    for k in range(30):
        flipped = bytearray(data)
        for _ in range(rng.randint(1, 5)):
            i = rng.randrange(len(flipped))
            flipped[i] ^= 1 << rng.randrange(8)
        variants[f"flipped bytes #{k}"] = bytes(flipped)
    for name, blob in variants.items():
        path = tmp / f"tampered-{abs(hash(name))}.safetensors"
        path.write_bytes(blob)
        raises_own("predictor files", name, lambda p=path: load(p), allowed=wsnas.PredictorFileError)
    raises_own("predictor files", "a folder", lambda: load(tmp), allowed=wsnas.PredictorFileError)
    cli_one_line("predictor files", ["predict", "--space", "nb201", "--predictor", str(tmp / "nothing.st"),
                                     "--input", str(good), "--output", "-"])  # fmt: skip


# -- garbage and unreadable files to every file-taking command -----------------------------------------------
def probe_files(tmp: Path, table: Path) -> None:
    garbage = tmp / "garbage.bin"
    garbage.write_bytes(bytes(range(256)) * 8)
    folder = tmp / "a-folder"
    folder.mkdir()
    under_file = garbage / "below-a-file"  # ENOTDIR
    read_only = Path("/sys/wsnas-probe")  # no process may create files there, root included
    out = str(tmp / "runs")
    for bad in (garbage, folder, under_file):
        b = str(bad)
        cases = [
            ["zoo", "show", b],
            ["predictor", "train", "--zoo", b, "--out", str(tmp / "p.st")],
            ["predictor", "eval", "--zoo", b],
            ["predict", "--space", "nb201", "--predictor", b, "--input", str(table), "--output", "-"],
            ["search", "--evaluator", f"table:{b}:arch:acc", "--predictor", "none", "--eval-budget", "1",
             "--output-dir", out, "--quiet"],
            ["search", "--storage", f"journal:{b}", "--evaluator", f"table:{table}:arch:acc", "--predictor", "none",
             "--eval-budget", "1", "--output-dir", out, "--quiet"],
            ["search", "--storage", f"sqlite:///{b}", "--evaluator", f"table:{table}:arch:acc", "--predictor",
             "none", "--eval-budget", "1", "--output-dir", out, "--quiet"],
            ["worker", "--study", "s", "--storage", f"sqlite:///{b}", "--output-dir", out, "--quiet"],
            ["track", "sync", "--study", "s", "--storage", f"journal:{b}", "--output-dir", out, "--tracking-uri",
             f"sqlite:///{tmp / 'mlflow.db'}"],
        ]  # fmt: skip
        for args in cases:
            cli_one_line("file arguments", args)
    cli_one_line("file arguments", ["zoo", "build", "--space", "nb201", "--task", "synthetic", "--n", "1", "--seed",
                                    "0", "--workers", "1", "--quiet", "--out", str(read_only / "z.jsonl")])  # fmt: skip
    cli_one_line("file arguments", ["search", "--evaluator", f"table:{table}:arch:acc", "--predictor", "none",
                                    "--eval-budget", "1", "--output-dir", str(read_only), "--quiet"])  # fmt: skip
    cli_one_line("file arguments", ["predict", "--space", "nb201", "--predictor", "nb201", "--input", str(table),
                                    "--output", str(read_only / "o.csv")])  # fmt: skip
    for args in (["search", "--foo"], ["nosuch"], ["zoo", "show"], ["zoo", "show", str(table), "--top", "-2"],
                 ["search", "--sampler"], ["zoo", "build", "--optimizer", "x"]):  # fmt: skip
        cli_one_line("file arguments", args)


# -- storage damage ------------------------------------------------------------------------------------------
def _table(path: Path, values: list[float]) -> Path:
    from wsnas.training import sample_distinct

    nb201 = get_space("nb201")
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["arch", "acc"])
        for arch, v in zip(sample_distinct(nb201, len(values), 0), values):
            w.writerow([nb201.to_string(arch), v])
    return path


def _search(table: Path, out: Path, **kw: object) -> object:
    return wsnas.search("nb201", evaluator=wsnas.TableEvaluator(table, "arch", "acc"), predictor=None,
                        output_dir=out, tracking=False, progress=False, **{"eval_budget": 2, **kw})  # fmt: skip


def probe_storage(tmp: Path) -> None:
    table = _table(tmp / "t.csv", [0.1, 0.2, 0.3, 0.4, 0.5, 0.6])
    journal = tmp / "j.log"
    _search(table, tmp / "o1", storage=f"journal:{journal}", study_name="s")
    with open(journal, "ab") as f:
        f.write(b'{"op_code": 5, "wor')
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            res = _search(table, tmp / "o1", storage=f"journal:{journal}", study_name="s", eval_budget=4)
            res2 = _search(table, tmp / "o1", storage=f"journal:{journal}", study_name="s", eval_budget=4)
        record("storage damage", len(res.history) == 4 == len(res2.history), "torn journal tail recovered")
    except Exception as exc:  # noqa: BLE001
        record("storage damage", False, f"torn journal: {type(exc).__name__}: {exc}")
    empty = tmp / "o2" / "search.db"
    empty.parent.mkdir()
    empty.write_bytes(b"")
    raises_own("storage damage", "empty search.db", lambda: _search(table, tmp / "o2"), allowed=wsnas.StorageError)
    record("storage damage", empty.stat().st_size == 0, "empty search.db left as it was")
    garbage = tmp / "garbage.db"
    garbage.write_bytes(os.urandom(8192))
    raises_own("storage damage", "garbage db", lambda: _search(table, tmp / "o3", storage=f"sqlite:///{garbage}"),
               allowed=wsnas.StorageError)  # fmt: skip
    _search(table, tmp / "o4")
    db = tmp / "o4" / "search.db"
    data = bytearray(db.read_bytes())
    for p in range(1, len(data) // 4096):
        data[p * 4096 : (p + 1) * 4096] = os.urandom(4096)
    db.write_bytes(bytes(data))

    def damaged() -> None:
        try:
            _search(table, tmp / "o4")
        except wsnas.StorageError as exc:
            if "damaged" not in str(exc) or str(db) not in str(exc):
                raise AssertionError(f"the message does not say damaged and where: {exc}") from None
            raise

    raises_own("storage damage", "overwritten pages", damaged, allowed=wsnas.StorageError)


# -- NaN tables and API types ------------------------------------------------------------------------------
def probe_tables_and_api(tmp: Path) -> None:
    from wsnas import predictors

    nan_all = _table(tmp / "nan.csv", [float("nan"), float("inf"), float("nan")])
    raises_own("nan tables", "all non-finite", lambda: wsnas.TableEvaluator(nan_all, "arch", "acc"),
               allowed=wsnas.EvaluatorError)  # fmt: skip
    some = _table(tmp / "some.csv", [0.1, float("nan"), 0.3, float("-inf")])
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        ev = wsnas.TableEvaluator(some, "arch", "acc", space="nb201")
    record("nan tables", len(ev) == 2 and any("non-finite" in str(w.message) for w in caught), "rows left out")
    cli_one_line("nan tables", ["search", "--evaluator", f"table:{nan_all}:arch:acc", "--predictor", "none",
                                "--eval-budget", "2", "--output-dir", str(tmp / "o"), "--quiet"])  # fmt: skip
    calls: list[tuple[str, Callable[[], object]]] = [
        ("search(5)", lambda: wsnas.search(5, predictor=None, eval_budget=0, tracking=False, output_dir=tmp / "x")),
        ("search(None)", lambda: wsnas.search(None, predictor=None, tracking=False, output_dir=tmp / "x")),
        ("load(None)", lambda: predictors.load(None)),
        ("load(123)", lambda: predictors.load(123)),
        ("load(models:/nope/1)", lambda: predictors.load("models:/nope/1")),
        ("TableEvaluator(None)", lambda: wsnas.TableEvaluator(None, "arch", "acc")),
        ("TableEvaluator(cols None)", lambda: wsnas.TableEvaluator(some, None, None)),
        ("stale_after=-5", lambda: _search(some, tmp / "y", stale_after=-5)),
        ("eval_budget=-1", lambda: _search(some, tmp / "y", eval_budget=-1)),
        ("get_space(3)", lambda: get_space(3)),
    ]
    cwd = os.getcwd()
    os.chdir(tmp)
    try:
        for what, fn in calls:
            raises_own("api types", what, fn)
    finally:
        os.chdir(cwd)
    record("api types", not (tmp / "mlflow.db").exists(), "models:/ look-up created no mlflow.db")


# -- signals -----------------------------------------------------------------------------------------------
def _descendants(pid: int) -> set[int]:
    tree: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                stat = Path(f"/proc/{entry}/stat").read_bytes()
            except OSError:
                continue
            tree.setdefault(int(stat[stat.rfind(b")") + 2 :].split()[1]), []).append(int(entry))
    found, todo = set(), [pid]
    while todo:
        for child in tree.get(todo.pop(), []):
            if child not in found:
                found.add(child)
                todo.append(child)
    return found


def _wsnas(args: list[str], cwd: Path) -> subprocess.Popen:
    code = "import sys; from wsnas.cli import main; sys.exit(main(prog_name='wsnas'))"
    return subprocess.Popen([sys.executable, "-c", code, *args], cwd=cwd, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, text=True)  # fmt: skip


def _signal_probe(what: str, args: list[str], cwd: Path, ready: Callable[[set[int]], bool], sig: int) -> None:
    proc = _wsnas(args, cwd)
    seen: set[int] = set()
    try:
        deadline = time.monotonic() + 180
        while time.monotonic() < deadline and proc.poll() is None:
            seen |= _descendants(proc.pid)
            if ready(seen):
                break
            time.sleep(0.3)
        time.sleep(1.0)
        seen |= _descendants(proc.pid)
        proc.send_signal(sig)
        proc.wait(timeout=60)
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline and any(is_alive(p) for p in seen):
            time.sleep(0.2)
        left = sorted(p for p in seen if is_alive(p))
        record("signals", bool(seen) and not left, f"{what}: children {sorted(seen)}, left {left}")
    finally:
        for p in seen:
            if is_alive(p):
                os.kill(p, signal.SIGKILL)
        proc.kill()


def probe_signals(tmp: Path, with_ui: bool) -> None:
    zoo = ["zoo", "build", "--space", "nb201", "--task", "synthetic", "--n", "40", "--seed", "0", "--workers", "2",
           "--out", str(tmp / "z.jsonl"), "--quiet"]  # fmt: skip
    _signal_probe("kill -9 of zoo build", zoo, tmp, lambda seen: len(seen) >= 4, signal.SIGKILL)
    if not with_ui:
        return
    store = tmp / "mlflow.db"
    sqlite3.connect(store).close()
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]

    def listening(seen: set[int]) -> bool:
        with socket.socket() as s:
            return s.connect_ex(("127.0.0.1", port)) == 0

    for sig, name in ((signal.SIGTERM, "SIGTERM"), (signal.SIGKILL, "kill -9")):
        ui = ["ui", "--tracking-uri", f"sqlite:///{store}", "--port", str(port)]
        _signal_probe(f"{name} of wsnas ui", ui, tmp, listening, sig)
        time.sleep(1.0)
        record("signals", not listening(set()), f"port {port} closed after {name} of wsnas ui")


def main_() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--fast", action="store_true", help="Skip the MLflow UI signal probes.")
    parser.add_argument("--strings", type=int, default=1200, help="Fuzzed architecture strings.")
    opts = parser.parse_args()
    os.environ.setdefault("WSNAS_TRACKING", "0")
    os.environ.pop("MLFLOW_TRACKING_URI", None)
    warnings.simplefilter("ignore")
    with tempfile.TemporaryDirectory(prefix="wsnas-probe-") as name:
        tmp = Path(name)
        table = _table(tmp / "table.csv", [0.1, 0.2, 0.3, 0.4])
        steps = [
            ("arch strings", lambda: probe_arch_strings(opts.strings)),
            ("predictor files", lambda: probe_predictor_files(_mk(tmp / "pf"))),
            ("file arguments", lambda: probe_files(_mk(tmp / "fa"), table)),
            ("storage damage", lambda: probe_storage(_mk(tmp / "sd"))),
            ("nan tables + api types", lambda: probe_tables_and_api(_mk(tmp / "ta"))),
            ("signals", lambda: probe_signals(_mk(tmp / "sg"), not opts.fast)),
        ]
        for label, step in steps:
            t0 = time.monotonic()
            try:
                step()
            except Exception:  # noqa: BLE001 - a probe step that crashes is a failure of its category
                record(label.split(" + ")[0], False, traceback.format_exc()[-500:])
            print(f"[{time.monotonic() - t0:6.1f} s] {label}", file=sys.stderr)
    width = max(len(c) for c in HELD | FAILED)
    print(f"{'category':<{width}}  held  failed")
    for category in sorted(HELD | FAILED):
        print(f"{category:<{width}}  {HELD[category]:>4}  {FAILED[category]:>6}")
    print(f"{'all':<{width}}  {sum(HELD.values()):>4}  {sum(FAILED.values()):>6}")
    for category, failures in FIRST_FAILURES.items():
        for f in failures:
            print(f"FAILED {category}: {f}")
    return 1 if FAILED else 0


def _mk(path: Path) -> Path:
    path.mkdir(parents=True, exist_ok=True)
    return path


if __name__ == "__main__":
    sys.exit(main_())
