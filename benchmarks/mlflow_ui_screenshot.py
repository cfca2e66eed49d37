"""A screenshot of the MLflow UI showing a search's runs, taken with headless Chromium.

    python benchmarks/mlflow_ui_screenshot.py --output-dir wsnas-runs [--study NAME] [--out ui.png]

Serves the run directory's tracking store with ``mlflow ui`` on a free 127.0.0.1 port (the command
``wsnas ui`` runs), opens the study's experiment page (its parent run and one child run per evaluation)
in Debian's headless ``chromium`` and writes a PNG. Without --study the experiment with the most runs is
shown. Needs the ``chromium`` package (``apt-get install chromium``); with ``playwright`` installed (``pip
install playwright``, which drives that Chromium) the parent run is expanded so that its child runs show.
Nothing is fetched from a network.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
          "--disable-background-networking", "--disable-component-update", "--disable-sync",
          "--hide-scrollbars"]  # fmt: skip


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait(url: str, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(url, timeout=2) as r:
                if r.status == 200:
                    return
        except OSError:
            time.sleep(0.5)
    raise SystemExit(f"{url} did not answer within {timeout} s")


def _playwright_shot(chromium: str, url: str, parent: str, out: Path, width: int, height: int, wait_ms: int) -> None:
    """With Playwright (``pip install playwright``; it drives the system Chromium, downloads nothing):
    open the runs table, expand the search's parent run so its child runs show, close the side panel."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=chromium, args=[f for f in _FLAGS if f != "--headless"])
        page = browser.new_page(viewport={"width": width, "height": height})
        page.goto(url)
        page.wait_for_timeout(min(wait_ms, 10000))
        name = page.locator(f"text={parent}").last
        box = name.bounding_box()
        if box is not None:  # the expander sits just left of the parent run's name
            page.mouse.click(box["x"] - 28, box["y"] + box["height"] / 2)
            page.wait_for_timeout(1500)
        with contextlib.suppress(Exception):  # MLflow 3's assistant panel, if it is open
            page.mouse.click(width - 37, 35)
            page.wait_for_timeout(800)
        page.screenshot(path=str(out))
        browser.close()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--output-dir", default="wsnas-runs", help="the searches' run directory")
    parser.add_argument("--study", default=None, help="the study (experiment) to show")
    parser.add_argument("--out", default="mlflow-ui.png")
    parser.add_argument("--size", default="1900,1000", help="window size WIDTH,HEIGHT")
    parser.add_argument("--wait-ms", type=int, default=20000, help="virtual time the page gets to render")
    args = parser.parse_args(argv)

    from mlflow.tracking import MlflowClient

    from wsnas.cli._track import ui_command_line

    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if chromium is None:
        raise SystemExit("chromium is not installed (Debian: apt-get install chromium)")
    db = Path(args.output_dir).resolve() / "mlflow.db"
    if not db.is_file():
        raise SystemExit(f"no tracking store at {db}: run `wsnas search --output-dir {args.output_dir}` first")
    store = f"sqlite:///{db}"
    client = MlflowClient(store)
    experiments = [e for e in client.search_experiments() if e.name != "Default"]
    if args.study:
        experiments = [e for e in experiments if e.name == args.study]
    if not experiments:
        raise SystemExit(f"no experiment {args.study or ''} in {store}")
    counts = {e.experiment_id: len(client.search_runs([e.experiment_id], max_results=1000)) for e in experiments}
    exp = max(experiments, key=lambda e: counts[e.experiment_id])
    port = _free_port()
    server = subprocess.Popen(ui_command_line(store, port), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        _wait(f"http://127.0.0.1:{port}/health", 120)
        url = f"http://127.0.0.1:{port}/#/experiments/{exp.experiment_id}/runs"
        out = Path(args.out).resolve()
        width, height = (int(v) for v in args.size.split(","))
        try:
            _playwright_shot(chromium, url, exp.name, out, width, height, args.wait_ms)
        except ImportError:  # no playwright: a plain headless screenshot (the parent run collapsed)
            with tempfile.TemporaryDirectory(prefix="wsnas-chromium-") as profile:
                cmd = [chromium, *_FLAGS, f"--user-data-dir={profile}", f"--window-size={args.size}",
                       f"--virtual-time-budget={args.wait_ms}", f"--screenshot={out}", url]  # fmt: skip
                subprocess.run(cmd, check=True, capture_output=True, timeout=180)
    finally:
        server.terminate()
        server.wait(timeout=30)
    print(json.dumps({"screenshot": str(out), "bytes": out.stat().st_size, "url": url, "experiment": exp.name,
                      "runs": counts[exp.experiment_id]}))  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
