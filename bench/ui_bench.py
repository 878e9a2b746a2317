"""Dashboard responsiveness on MovieLens 100K, driven by Playwright with Debian's Chromium.

Prints:

- time from the server accepting connections to the first complete page (the Explain tab of a
  user: sentence, attribution bars and paths drawn, no loading spinner left; the fidelity
  curves are computed on demand, with a button); target under 3 s. The server warms up (loads
  the runs, renders one page) before it accepts connections, and Chromium is already running,
  so neither is counted. The server is started ``--starts`` times (default 3), each first page
  in a fresh browser context (empty cache), and the median is reported with every value;
- time from selecting another user (typing the id in the sidebar) to every visible plot of
  the Explain tab being updated; target under 1 s (median of several users);
- the same on the Fairness tab (a page opened there): from typing the id to the user's marker
  being drawn at the user's value on every histogram and nothing loading; target under 1 s;
- the server's memory before, during and after five concurrent sessions.

Runs are cached: ease, fism and diffrec are trained on ml-100k into ``--runs`` (default
``artifacts/ui-bench/runs``) only when that folder has no ml-100k run, and their UMAP maps are
computed before the clock starts. Needs ml-100k under ``$RECLENS_DATA`` (e.g.
``RECLENS_DATA=/work/shared/data``) and ``/usr/bin/chromium``.

    RECLENS_DATA=/work/shared/data .venv/bin/python bench/ui_bench.py

``--parts`` runs only some measurements (``first,explain,fairness,memory``), ``--models`` trains
other models (the first is the one measured), e.g. a reduced run:

    bench/ui_bench.py --parts fairness --models fism --starts 1 --users 3
"""

from __future__ import annotations

import argparse
import statistics
import sys
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests" / "ui"))

from ui_support import CHROMIUM, CHROMIUM_ARGS, Server, start_server  # noqa: E402  as the browser tests

MODELS = ("ease", "fism", "diffrec")
PARTS = ("first", "explain", "fairness", "memory")
# A session nobody is connected to is discarded after 5 s (Bokeh's default: 15 s), so that the
# memory of closed pages is measured soon after; not sooner: the session a page's request
# created must outlive the browser loading that page (over 1 s on this machine), or the page is
# built again when its websocket connects.
SERVER = """
import sys
from app.dashboard.server import make_service, serve
service = make_service(sys.argv[1], "ml-100k")
serve(service, port=int(sys.argv[2]), show=False, check_unused_sessions_milliseconds=500,
      unused_session_lifetime_milliseconds=5000)
"""


def prepare_runs(runs: Path, budget: float, models: tuple[str, ...] = MODELS) -> list[str]:
    """Train the benchmark runs when missing and compute their maps; returns run ids."""
    from app.dashboard.engine_service import EngineService
    from engine import registry
    from engine.pipeline import train_run

    service = EngineService(runs, default_source="ml-100k")
    have = {s.model for s in service.summaries(refresh=True) if s.dataset == "ml-100k"}
    for name in models:
        if name in have or name not in registry.available_models():
            continue
        print(f"training {name} on ml-100k (at most {budget:g} s)...", flush=True)
        train_run(
            "ml-100k", name, device="cpu", out=runs, train_options={"max_seconds": budget},
            load_options={"download": False},
        )  # fmt: skip
    ids = service.run_ids("ml-100k")
    for run_id in ids:
        for kind in ("items", "users"):
            service.projection(run_id, kind)
    return ids


def settled(page, timeout: float = 60.0) -> None:
    """Wait until no Panel loading indicator is left (checked every 20 ms)."""
    page.wait_for_function(
        "() => { const find = (root) => { for (const el of root.querySelectorAll('*')) {"
        " if (el.classList && el.classList.contains('pn-loading')) return true;"
        " if (el.shadowRoot && find(el.shadowRoot)) return true; } return false; };"
        " return !find(document); }",
        timeout=timeout * 1000,
        polling=20,
    )


def sentence_shown(page, user: str, timeout: float = 120.0) -> None:
    """Wait until the explanation's sentence for ``user`` is drawn (checked every 20 ms)."""
    text_shown(page, f"is recommended to user {user} ", timeout)


def text_shown(page, text: str, timeout: float = 120.0) -> None:
    """Wait until a visible text node containing ``text`` is drawn, in the page or any shadow
    root (checked every 20 ms).

    Playwright's own text wait polls at widening intervals, up to 500 ms, which alone added up
    to half a second to a measurement.
    """
    page.wait_for_function(
        "(text) => { const find = (root) => { for (const el of root.querySelectorAll('*')) {"
        " if (el.shadowRoot && find(el.shadowRoot)) return true;"
        " for (const n of el.childNodes) { if (n.nodeType === 3 && n.textContent.includes(text)"
        " && el.getClientRects().length) return true; } } return false; };"
        " return find(document); }",
        arg=text,
        timeout=timeout * 1000,
        polling=20,
    )


MARKERS_JS = """(wanted) => { const xs = [];
 for (const view of Bokeh.index.all_views()) { const m = view.model;
   if (m.constructor.__name__ !== 'GlyphRenderer' || !m.glyph) continue;
   if (m.glyph.constructor.__name__ !== 'VSpan') continue;
   const plot = view.parent;
   if (!plot || !plot.el || !plot.el.isConnected || !plot.el.getClientRects().length) continue;
   for (const x of m.data_source.data[m.glyph.x.field] || []) xs.push(x); }
 xs.sort((a, b) => a - b);
 return xs.length === wanted.length
   && xs.every((x, i) => Math.abs(x - wanted[i]) <= 1e-9 * Math.max(1, Math.abs(x))); }"""


def markers_shown(page, values: list[float], timeout: float = 60.0) -> None:
    """Wait until the Fairness tab's visible user markers sit exactly at ``values`` (checked
    every 20 ms)."""
    page.wait_for_function(MARKERS_JS, arg=sorted(values), timeout=timeout * 1000, polling=20)


def fairness_values(runs: Path, run: str, users: list[str]) -> dict[str, list[float]]:
    """Per user, the values the Fairness tab marks on its histograms (read through the same
    tables the server uses)."""
    from app.dashboard import fairness_data
    from app.dashboard.engine_service import EngineService
    from app.dashboard.views.fairness import USER_METRICS

    frame = fairness_data.per_user(EngineService(runs, default_source="ml-100k"), run, 10)
    rows = frame.set_index("raw_id")
    shown = [m for m in USER_METRICS if m in frame.columns]
    out = {}
    for user in users:
        values = [float(rows.loc[user, m]) for m in shown]
        out[user] = [v for v in values if v == v]  # a NaN draws no marker
    return out


def fairness_switch(browser, server: Server, runs: Path, run: str, users: list[str]) -> None:
    """Open the Fairness tab of ``users[0]``, then time each switch to the next user."""
    values = fairness_values(runs, run, users)
    page = browser.new_page(viewport={"width": 1500, "height": 1100})
    try:
        page.goto(f"{server.url}?run={run}&tab=fairness&user={users[0]}", timeout=120_000)
        markers_shown(page, values[users[0]], timeout=120)
        settled(page)
        times = []
        box = page.get_by_placeholder("type a user id")
        for user in users[1:]:
            start = time.perf_counter()
            box.fill(user)
            box.press("Enter")
            markers_shown(page, values[user])
            settled(page)
            times.append(time.perf_counter() - start)
        print(
            "Fairness tab: select another user -> every histogram's marker moved: median "
            f"{statistics.median(times):.2f} s, max {max(times):.2f} s over {len(times)} users "
            f"(target < 1 s); each: {', '.join(f'{t:.2f}' for t in times)}", flush=True,
        )  # fmt: skip
    finally:
        page.context.close()


def stop(server: Server) -> None:
    """Stop a dashboard server subprocess."""
    server.process.terminate()
    server.process.wait(timeout=30)


def first_page(browser, url: str, user: str) -> tuple[object, float, float]:
    """Open ``url`` in a fresh browser context; returns the page, the seconds until the
    explanation's sentence is shown and until the page is complete (nothing loading)."""
    ready = time.perf_counter()
    page = browser.new_page(viewport={"width": 1500, "height": 1100})
    page.goto(url, timeout=120_000)
    sentence_shown(page, user)
    shown = time.perf_counter() - ready
    settled(page)
    return page, shown, time.perf_counter() - ready


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", default=str(ROOT / "artifacts" / "ui-bench" / "runs"))
    parser.add_argument("--budget", type=float, default=30.0, help="training seconds per model")
    parser.add_argument("--users", type=int, default=5, help="user switches measured")
    parser.add_argument(
        "--starts", type=int, default=3, help="server starts, each timed to its first page"
    )
    parser.add_argument(
        "--parts", default=",".join(PARTS), help=f"measurements to run, of {','.join(PARTS)}"
    )
    parser.add_argument(
        "--models", default=",".join(MODELS), help="models to train; the first is measured"
    )
    args = parser.parse_args()
    parts = {p.strip() for p in args.parts.split(",") if p.strip()}
    models = tuple(m.strip() for m in args.models.split(",") if m.strip())
    if not parts <= set(PARTS) or not models:
        print(f"ui_bench: --parts takes {', '.join(PARTS)}; --models at least one model")
        return 2
    if CHROMIUM is None:
        print("ui_bench: chromium not found; skipped")
        return 0
    from data.errors import ReclensError

    runs = Path(args.runs)
    try:
        ids = prepare_runs(runs, args.budget, models)
    except ReclensError as err:
        print(f"ui_bench: skipped ({err})")
        return 0
    from playwright.sync_api import sync_playwright

    from app.dashboard.engine_service import EngineService

    service = EngineService(runs, default_source="ml-100k")
    ease = next(
        service.run_id_of(s.path) for s in service.summaries()
        if s.dataset == "ml-100k" and s.model == models[0] and service.run_id_of(s.path) in ids
    )  # fmt: skip
    loaded = service.load(ease)
    users = [str(loaded.users["id"].iloc[int(u)]) for u in loaded.split.eval_users("test")]
    # Chromium starts before any server: its own start-up is not counted.
    playwright = sync_playwright().start()
    browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
    servers: list[Server] = []
    try:
        firsts: list[float] = []
        page = None
        for start in range(args.starts if "first" in parts else 1):
            if servers:  # the previous server and its page go first
                page.context.close()
                stop(servers.pop())
            server = start_server(runs, script=SERVER)
            servers.append(server)
            url = f"{server.url}?run={ease}&tab=explain"
            if not parts & {"first", "explain"}:
                break
            page, shown, first = first_page(browser, f"{url}&user={users[start]}", users[start])
            firsts.append(first)
            print(
                f"  server start {start + 1}: first complete page {first:.2f} s (sentence shown "
                f"after {shown:.2f} s)", flush=True,
            )  # fmt: skip
        if "first" in parts:
            print(
                f"first complete page (Explain, ml-100k): median {statistics.median(firsts):.2f} "
                f"s over {len(firsts)} server starts, max {max(firsts):.2f} s (target < 3 s)"
            )
        if "explain" in parts:
            explain_switch(page, users[args.starts : args.starts + args.users])
        if "fairness" in parts:
            first = args.starts + args.users
            fairness_switch(browser, server, runs, ease, users[first : first + args.users + 1])
        if "memory" in parts:
            memory(browser, server, url, users[10:15])
    finally:
        browser.close()
        playwright.stop()
        for server in servers:
            stop(server)
    return 0


def explain_switch(page, users: list[str]) -> None:
    """Time each switch to the next of ``users`` on the open Explain page."""
    times, sentences = [], []
    box = page.get_by_placeholder("type a user id")
    for user in users:
        start = time.perf_counter()
        box.fill(user)
        box.press("Enter")
        sentence_shown(page, user, timeout=60)
        sentences.append(time.perf_counter() - start)
        settled(page)
        times.append(time.perf_counter() - start)
    print(
        "select another user -> all visible plots updated: median "
        f"{statistics.median(times):.2f} s, max {max(times):.2f} s over {len(times)} "
        f"users (target < 1 s); each: {', '.join(f'{t:.2f}' for t in times)}; sentence "
        f"shown after {', '.join(f'{t:.2f}' for t in sentences)} s"
    )


def memory(browser, server: Server, url: str, users: list[str]) -> None:
    """The server's memory before, during and after one session per user, all at once."""
    before = server.rss_mb()
    samples = [before]
    sampling = threading.Event()
    sampling.set()

    def sample() -> None:
        while sampling.is_set():
            samples.append(server.rss_mb())
            time.sleep(0.05)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    contexts = [browser.new_context() for _ in range(5)]
    for context, user in zip(contexts, users, strict=True):
        context.new_page().goto(f"{url}&user={user}", timeout=120_000)
    for context, user in zip(contexts, users, strict=True):
        sentence_shown(context.pages[0], user)
        settled(context.pages[0])
    time.sleep(1)
    sampling.clear()
    sampler.join()
    peak = max(samples)
    for context in contexts:
        context.close()
    time.sleep(10)
    after = server.rss_mb()
    print(
        f"server memory: {before:.0f} MiB before 5 sessions, peak {peak:.0f} MiB with them, "
        f"{after:.0f} MiB 10 s after they closed"
    )


if __name__ == "__main__":
    sys.exit(main())
