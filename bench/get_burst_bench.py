"""What a burst of plain GET requests costs the sessions already open (MovieLens 100K).

Every plain ``GET /`` makes the Bokeh server create a session and build a whole page on its one
thread before any websocket exists, so a burst of them (a link pasted in a chat, a crawler, a
reload storm) delays every open session. Prints, with every value:

- one GET alone (the time to build and render one page);
- a user switch in an open Explain page (typing a user id; until the explanation's sentence
  and every plot are updated) with the server idle;
- the same while ``--burst`` (default 30) GETs arrive at once, and how long the burst took.

Uses the UI bench's runs (trained when missing) and server; needs ml-100k under
``$RECLENS_DATA`` and ``/usr/bin/chromium``.

    RECLENS_DATA=/work/shared/data .venv/bin/python bench/get_burst_bench.py --runs DIR
"""

from __future__ import annotations

import argparse
import statistics
import threading
import time
import urllib.request
from pathlib import Path

from ui_bench import (
    CHROMIUM,
    CHROMIUM_ARGS,
    ROOT,
    SERVER,
    first_page,
    prepare_runs,
    sentence_shown,
    settled,
    start_server,
    stop,
)


def fetch(url: str, out: list[float]) -> None:
    """GET ``url`` (read the whole answer); appends the seconds it took to ``out``."""
    start = time.perf_counter()
    with urllib.request.urlopen(url, timeout=600) as resp:
        resp.read()
    out.append(time.perf_counter() - start)


def switch(page, user: str) -> float:
    """Seconds from typing ``user`` in the sidebar to the Explain tab being updated."""
    start = time.perf_counter()
    box = page.get_by_placeholder("type a user id")
    box.fill(user)
    box.press("Enter")
    sentence_shown(page, user, timeout=600)
    settled(page, timeout=600)
    return time.perf_counter() - start


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", default=str(ROOT / "artifacts" / "ui-bench" / "runs"))
    parser.add_argument("--burst", type=int, default=30, help="GETs sent at once")
    parser.add_argument("--rounds", type=int, default=2, help="bursts (one switch in each)")
    args = parser.parse_args()
    if CHROMIUM is None:
        print("get_burst_bench: chromium not found; skipped")
        return 0
    from playwright.sync_api import sync_playwright

    from app.dashboard.engine_service import EngineService

    runs = Path(args.runs)
    ids = prepare_runs(runs, 30.0)
    ease = next(i for i in ids if "/ease-" in i)
    loaded = EngineService(runs, default_source="ml-100k").load(ease)
    users = [str(loaded.users["id"].iloc[int(u)]) for u in loaded.split.eval_users("test")]
    playwright = sync_playwright().start()
    browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
    server = start_server(runs, script=SERVER)
    try:
        url = f"{server.url}?run={ease}&tab=explain"
        page, _, _ = first_page(browser, f"{url}&user={users[0]}", users[0])
        alone: list[float] = []
        for user in users[1:4]:
            fetch(f"{url}&user={user}", alone)
        print(
            f"one GET alone (page built and rendered): median {statistics.median(alone):.2f} s; "
            f"each: {', '.join(f'{t:.2f}' for t in alone)}"
        )
        idle = [switch(page, user) for user in users[4:8]]
        print(
            f"user switch, server idle: median {statistics.median(idle):.2f} s; each: "
            f"{', '.join(f'{t:.2f}' for t in idle)}"
        )
        during, bursts, latencies = [], [], []
        for r in range(args.rounds):
            times: list[float] = []
            threads = [
                threading.Thread(target=fetch, args=(f"{url}&user={users[20 + k]}", times))
                for k in range(args.burst)
            ]
            start = time.perf_counter()
            for thread in threads:
                thread.start()
            time.sleep(0.2)  # the burst has arrived
            during.append(switch(page, users[10 + r]))
            for thread in threads:
                thread.join()
            bursts.append(time.perf_counter() - start)
            latencies += times
        print(
            f"user switch during a burst of {args.burst} GETs: "
            f"{', '.join(f'{t:.2f}' for t in during)} s (idle median "
            f"{statistics.median(idle):.2f} s); each burst took "
            f"{', '.join(f'{t:.1f}' for t in bursts)} s; GET latency in the bursts: median "
            f"{statistics.median(latencies):.2f} s, max {max(latencies):.2f} s"
        )
    finally:
        browser.close()
        playwright.stop()
        stop(server)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
