"""Helpers of the browser tests: Chromium location, a small runs folder, a server subprocess."""

from __future__ import annotations

import shutil
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from playwright.sync_api import Page

CHROMIUM = shutil.which("chromium") or (
    "/usr/bin/chromium" if Path("/usr/bin/chromium").exists() else None
)
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--disable-quic",
]
DATA = {"n_users": 200, "n_items": 150, "n_interactions": 4000}
SCREENSHOTS = Path(__file__).resolve().parents[2] / "test-results" / "screenshots"
# Sessions nobody is connected to are discarded after 5 s (see bench/ui_bench.py's SERVER).
SERVER_SCRIPT = """
import sys, torch
from app.dashboard.server import make_service, serve
runs, port = sys.argv[1], int(sys.argv[2])
service = make_service(runs, "synthetic", projection="pca")
print("ready to serve", flush=True)
serve(
    service, port=port, show=False, check_unused_sessions_milliseconds=500,
    unused_session_lifetime_milliseconds=5000,
)
"""


@dataclass
class Server:
    """A running dashboard: its URL, process and runs folder."""

    url: str
    process: subprocess.Popen
    runs: Path

    def rss_mb(self) -> float:
        """Resident memory of the server process in MiB (from /proc)."""
        for line in Path(f"/proc/{self.process.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
        return float("nan")


def build_runs(root: Path) -> Path:
    """Train tiny ease and diffrec runs on the small synthetic dataset into ``root/runs``."""
    from engine import registry
    from engine.pipeline import train_run

    runs = root / "runs"
    if not (runs / ".ready").exists():
        available = set(registry.available_models())
        for name in ("ease", "diffrec"):
            if name in available:
                train_run("synthetic", name, device="cpu", epochs=2, out=runs, load_options=DATA)
        (runs / ".ready").write_text("ok")
    return runs


def start_server(runs: Path, timeout: float = 120.0, script: str = SERVER_SCRIPT) -> Server:
    """Start ``script`` (``serve`` on the small synthetic runs by default; it gets the runs
    folder and a free port) in a subprocess and wait until it answers."""
    from app.dashboard.server import free_port

    port = free_port()
    log = open(runs.parent / f"server-{port}.log", "w")  # noqa: SIM115 - closed with the process
    process = subprocess.Popen(
        [sys.executable, "-c", script, str(runs), str(port)],
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{port}/"
    deadline = time.time() + timeout
    while time.time() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"dashboard server exited early; see {log.name}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=2):
                break
        except OSError:
            time.sleep(0.05)
    else:
        process.kill()
        raise RuntimeError("dashboard server did not start in time")
    return Server(url=url, process=process, runs=runs)


def save_shot(page: object, name: str) -> Path:
    """Save a full-window screenshot as ``test-results/screenshots/<name>.png``.

    The folder is created at each call: pytest-playwright empties ``test-results`` when any
    pytest session starts.
    """
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    path = SCREENSHOTS / f"{name}.png"
    page.screenshot(path=str(path))  # type: ignore[attr-defined]
    return path


def stop_server(server: Server, timeout: float = 20.0) -> None:
    """Terminate a server subprocess, killing it when it does not exit within ``timeout``."""
    server.process.terminate()
    try:
        server.process.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        server.process.kill()


TIMEOUT = 90_000
"""Milliseconds a browser test waits for the page (the shared 2-core machine can be slow)."""


def open_page(page: Page, server: Server, query: str = "", timeout: int = TIMEOUT) -> list[str]:
    """Open the dashboard with ``query`` (waiting at most ``timeout`` ms); returns the list the
    console errors go to."""
    errors: list[str] = []
    page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.set_viewport_size({"width": 1500, "height": 1100})
    page.goto(server.url + query, timeout=timeout)
    return errors
