"""Take the README's screenshots of the five tabs on MovieLens 100K.

Uses the runs of the UI bench (ease, fism and diffrec on ml-100k, trained into ``--runs`` when
missing), serves them and saves one PNG per tab into ``docs/screenshots/``. Needs ml-100k under
``$RECLENS_DATA`` and ``/usr/bin/chromium``.

    RECLENS_DATA=/work/shared/data .venv/bin/python docs/screenshots.py
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))
sys.path.insert(0, str(ROOT / "tests" / "ui"))

from ui_bench import SERVER, prepare_runs, settled, stop, text_shown  # noqa: E402
from ui_support import CHROMIUM, CHROMIUM_ARGS, start_server  # noqa: E402

OUT = ROOT / "docs" / "screenshots"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", default=str(ROOT / "artifacts" / "ui-bench" / "runs"))
    parser.add_argument("--user", default="", help="user to show (default: the first evaluated)")
    args = parser.parse_args()
    if CHROMIUM is None:
        print("screenshots: chromium not found")
        return 1
    from playwright.sync_api import sync_playwright

    from app.dashboard.engine_service import EngineService

    runs = Path(args.runs)
    ids = prepare_runs(runs, budget=30.0)
    by_model = {run.split("/")[-1].split("-")[0]: run for run in ids}
    loaded = EngineService(runs, default_source="ml-100k").load(by_model["fism"])
    user = args.user or str(loaded.users["id"].iloc[int(loaded.split.eval_users("test")[0])])
    item = str(loaded.items["id"].iloc[0])
    shots = {  # each tab's address and a text that is drawn once its content is
        "overview": (f"?run={by_model['fism']}&tab=overview", "Leaderboard"),
        "embeddings": (
            f"?run={by_model['fism']}&tab=embeddings&user={user}&item={item}",
            "(cosine of item embeddings)",
        ),
        "explain": (
            f"?run={by_model['fism']}&tab=explain&user={user}",
            f"is recommended to user {user} ",
        ),
        "diffusion": (
            f"?run={by_model['diffrec']}&tab=diffusion&user={user}",
            "how the recommendation emerges",
        ),
        "fairness": (
            f"?run={by_model['fism']}&tab=fairness&user={user}",
            "against all evaluated users",
        ),
    }
    server = start_server(runs, script=SERVER)
    OUT.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            for name, (query, text) in shots.items():
                page = browser.new_page(viewport={"width": 1500, "height": 1100})
                page.goto(f"{server.url}{query}", timeout=120_000)
                text_shown(page, text)  # the page is drawn (the load event comes before it)
                page.wait_for_load_state("networkidle")
                settled(page)
                if name == "diffusion":
                    for _ in range(3):
                        page.locator("button.next").first.click()
                time.sleep(2)  # plots finish drawing
                page.screenshot(path=str(OUT / f"{name}.png"))
                print(f"saved {OUT / f'{name}.png'}")
                page.close()
        finally:
            browser.close()
            stop(server)
    return 0


if __name__ == "__main__":
    sys.exit(main())
