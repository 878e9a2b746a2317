"""The dashboard step of ``bench/scale_bench.py``: a server on cached MovieLens-10M-size runs.

Run as a child process by the bench (``python bench/scale_dashboard.py RUNS RUN_ID``), it
starts Chromium, then the dashboard server (which warms up before it accepts connections),
and prints one JSON object: the server's start (warm-up included), the first complete page of
the Explain tab (target under 5 s), each user switch on it until every visible plot is updated
(target under 1 s), the Embeddings tab with all users' and items' maps (above 50,000 points
they are rasterized), and the server's peak resident memory (sampled from /proc every 0.1 s).
The drawing helpers are bench/ui_bench.py's.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests" / "ui"))
sys.path.insert(0, str(ROOT / "bench"))

SERVER = """
import sys
from app.dashboard.server import make_service, serve
service = make_service(sys.argv[1], "synthetic", projection=sys.argv[3])
serve(service, port=int(sys.argv[2]), show=False)
"""
FIRST_PAGE_TARGET_S = 5.0
SWITCH_TARGET_S = 1.0


def test_users(run: Path, n: int) -> list[str]:
    """Raw ids of the first ``n`` users with recommendations in the run (its test users)."""
    import polars as pl

    frame = pl.read_parquet(run / "recommendations.parquet", columns=["user", "raw_id"])
    return frame.unique("user", maintain_order=True)["raw_id"].head(n).to_list()


def dashboard_step(runs: Path, found: dict, args: argparse.Namespace, env: dict, logs: Path):
    """Run this module as a measured child; returns the bench's Step."""
    from scale_bench import Step, json_lines, run_child

    model = args.dashboard_model if args.dashboard_model in found else next(iter(found), None)
    if model is None:
        return Step("dashboard", rc=1, notes=["FAILED: no saved runs to serve"])
    run_id = found[model].relative_to(runs).as_posix()
    command = [sys.executable, str(Path(__file__)), str(runs), run_id]
    command += ["--projection", args.projection, "--switches", str(args.switches)]
    step = run_child("dashboard", command, env, logs / "dashboard.log")
    for values in json_lines(step.output):
        step.notes.append(f"browser tree peak {step.rss_gib:.2f} GiB; RSS below is the server's")
        step.rss_gib = values.pop("server peak GiB")
        step.figures = {k: v for k, v in values.items() if isinstance(v, float)}
        switches = ", ".join(f"{t:.2f}" for t in values["switches"])
        first_ok = values["first page s"] < FIRST_PAGE_TARGET_S
        switch_ok = values["switch median s"] < SWITCH_TARGET_S
        step.notes += [
            f"{model} run; first page {'ok' if first_ok else 'MISSED'} (< 5 s); "
            f"user switch median {'ok' if switch_ok else 'MISSED'} (< 1 s): {switches}",
        ]
    return step


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("runs")
    parser.add_argument("run_id")
    parser.add_argument("--projection", default="pca")
    parser.add_argument("--switches", type=int, default=5)
    args = parser.parse_args()
    from playwright.sync_api import sync_playwright
    from ui_bench import first_page, sentence_shown, settled
    from ui_support import CHROMIUM, CHROMIUM_ARGS, start_server, stop_server

    runs = Path(args.runs)
    users = test_users(runs / args.run_id, args.switches + 1)
    playwright = sync_playwright().start()
    browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
    script = SERVER.replace("sys.argv[3]", repr(args.projection))
    samples: list[float] = []
    sampling = threading.Event()
    out: dict[str, object] = {}
    start = time.perf_counter()
    server = start_server(runs, timeout=1800.0, script=script)
    out["server start s"] = time.perf_counter() - start

    def sample() -> None:
        while not sampling.is_set():
            samples.append(server.rss_mb() / 1024)
            time.sleep(0.1)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    try:
        url = f"{server.url}?run={args.run_id}"
        page, shown, first = first_page(browser, f"{url}&tab=explain&user={users[0]}", users[0])
        out["first page s"], out["sentence s"] = first, shown
        box = page.get_by_placeholder("type a user id")
        times = []
        for user in users[1:]:
            begin = time.perf_counter()
            box.fill(user)
            box.press("Enter")
            sentence_shown(page, user, timeout=120)
            settled(page, timeout=120)
            times.append(time.perf_counter() - begin)
        out["switches"] = times
        out["switch median s"] = statistics.median(times) if times else float("nan")
        page.context.close()
        maps = browser.new_page(viewport={"width": 1500, "height": 1100})
        begin = time.perf_counter()
        maps.goto(f"{url}&tab=embeddings&user={users[0]}", timeout=600_000)
        settled(maps, timeout=600)
        out["embeddings tab s"] = time.perf_counter() - begin
    finally:
        sampling.set()
        sampler.join()
        browser.close()
        playwright.stop()
        stop_server(server)
    out["server peak GiB"] = max(samples) if samples else float("nan")
    print(json.dumps(out), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
