"""A screenshot of what ``wsnas ui`` opens: the latest search's runs table in MLflow, by headless Chromium.

    python benchmarks/mlflow_ui_screenshot.py                          # a small real search in a temp dir
    python benchmarks/mlflow_ui_screenshot.py --output-dir wsnas-runs  # the searches already there

Without --output-dir it first runs a small real search into a temporary folder: ``wsnas search`` over
NB201 with the shipped predictor, 12 evaluations by a table of the project's own zoo
(``predictors/_shipped/zoos/nb201-cifar10-e3c16.jsonl``, accuracy = its val_acc), objectives accuracy and
params, tracked to a SQLite MLflow store there. Then it starts ``wsnas ui`` on a free 127.0.0.1 port,
reads the link it prints once the server answers (the runs table in model-training mode, opening the
saved view of the evaluations: accuracy, predicted, params and FLOPs as columns), opens that link in
Debian's headless ``chromium`` and writes a PNG (default ``benchmarks/results/mlflow-ui.png``). Needs the
``chromium`` package (``apt-get install chromium``); with ``playwright`` (``pip install playwright``, which
drives that Chromium, downloads nothing) it waits for the metric columns to render instead of a fixed
time. Nothing is fetched from a network. Prints one JSON line: the link, the screenshot, its size.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
          "--disable-background-networking", "--disable-component-update", "--disable-sync",
          "--hide-scrollbars"]  # fmt: skip


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wsnas(*args: str) -> list[str]:
    return [sys.executable, "-m", "wsnas.cli", *args]


def small_search(folder: Path, budget: int) -> None:
    """A real tracked search into ``folder`` (see the module docstring)."""
    sys.path.insert(0, str(ROOT / "benchmarks"))
    from search_overhead import make_table

    table = make_table(folder)
    cmd = _wsnas("search", "--space", "nb201", "--evaluator", f"table:{table}:arch:accuracy", "--eval-budget",
                 str(budget), "--objectives", "accuracy,params", "--output-dir", str(folder), "--tracking-uri",
                 f"sqlite:///{folder / 'mlflow.db'}", "--quiet")  # fmt: skip
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)


def start_ui(output_dir: Path, port: int, timeout: float) -> tuple[subprocess.Popen[str], str, float]:
    """``wsnas ui`` on ``port``: the process, the runs link it printed, and the seconds it took to print it."""
    proc = subprocess.Popen(_wsnas("ui", "--output-dir", str(output_dir), "--port", str(port)),
                            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)  # fmt: skip
    start = time.monotonic()
    assert proc.stdout is not None
    for line in proc.stdout:  # the server's own lines go to stderr: stdout holds the links only
        if line.startswith("MLflow UI for"):
            return proc, line.split(": ", 1)[1].strip(), time.monotonic() - start
        if time.monotonic() - start > timeout:
            break
    proc.terminate()
    raise SystemExit(f"wsnas ui printed no link within {timeout} s (exit status {proc.wait()})")


def _playwright_shot(chromium: str, url: str, out: Path, width: int, height: int, wait_ms: int) -> None:
    """Open ``url`` and wait until the metric columns show (Playwright drives the system Chromium)."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=chromium, args=[f for f in _FLAGS if f != "--headless"])
        page = browser.new_page(viewport={"width": width, "height": height})
        page.goto(url)
        with contextlib.suppress(Exception):  # a missing header still gets its screenshot, to look at
            page.locator("[data-testid='sort-header-flops']").first.wait_for(timeout=wait_ms)
        with contextlib.suppress(Exception):  # MLflow 3's assistant panel, open on a first visit: close it
            page.get_by_text("MLflow Assistant").first.wait_for(timeout=3000)
            page.locator("button[aria-label='Close']").last.click(timeout=3000)
        page.wait_for_timeout(1500)
        page.screenshot(path=str(out))
        browser.close()


def _chromium_shot(chromium: str, url: str, out: Path, size: str, wait_ms: int) -> None:
    with tempfile.TemporaryDirectory(prefix="wsnas-chromium-") as profile:
        cmd = [chromium, *_FLAGS, f"--user-data-dir={profile}", f"--window-size={size}",
               f"--virtual-time-budget={wait_ms}", f"--screenshot={out}", url]  # fmt: skip
        subprocess.run(cmd, check=True, capture_output=True, timeout=300)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--output-dir", default=None, help="a run directory with searches (default: a new "
                        "temporary one with a small real search)")  # fmt: skip
    parser.add_argument("--budget", type=int, default=12, help="evaluations of that small search")
    parser.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "mlflow-ui.png"))
    parser.add_argument("--size", default="1900,1000", help="window size WIDTH,HEIGHT")
    parser.add_argument("--wait-ms", type=int, default=30000, help="time the page gets to render")
    parser.add_argument("--timeout", type=float, default=600, help="seconds wsnas ui may take to print its link")
    args = parser.parse_args(argv)

    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if chromium is None:
        raise SystemExit("chromium is not installed (Debian: apt-get install chromium)")
    out = Path(args.out).resolve()
    width, height = (int(v) for v in args.size.split(","))
    with tempfile.TemporaryDirectory(prefix="wsnas-ui-shot-") as tmp:
        if args.output_dir is None:
            output_dir = Path(tmp)
            small_search(output_dir, args.budget)
        else:
            output_dir = Path(args.output_dir)
        proc, url, seconds = start_ui(output_dir, _free_port(), args.timeout)
        try:
            try:
                _playwright_shot(chromium, url, out, width, height, args.wait_ms)
                how = "playwright"
            except ImportError:  # no playwright: Chromium's own headless screenshot after a fixed time
                _chromium_shot(chromium, url, out, args.size, args.wait_ms)
                how = "chromium --screenshot"
        finally:
            proc.send_signal(signal.SIGTERM)
            proc.wait(timeout=60)
    print(json.dumps({"screenshot": str(out), "bytes": out.stat().st_size, "url": url, "link_after_s":
                      round(seconds, 1), "taken_with": how, "output_dir": args.output_dir or "(temporary)",
                      "cpus": os.cpu_count()}))  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
