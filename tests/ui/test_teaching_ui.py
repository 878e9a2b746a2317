"""Browser test of the Diffusion tab's 2-D teaching diffusion (pytest-playwright, Chromium).

A server of its own, with an empty ``$RECLENS_HOME`` (no saved toy models) and fewer training
iterations: the page shows a progress bar while the toy model trains, then the Player and the
particles, drawn with equal units on both axes.
"""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest
from playwright.sync_api import Page, expect
from ui_support import (
    CHROMIUM,
    SERVER_SCRIPT,
    Server,
    build_runs,
    save_shot,
    start_server,
    stop_server,
)

pytestmark = [
    pytest.mark.ui,
    pytest.mark.skipif(CHROMIUM is None, reason="chromium is not installed"),
]
TIMEOUT = 180_000
ITERS = 300
SCRIPT = SERVER_SCRIPT.replace(
    "from app.dashboard.server import make_service, serve",
    f"from app.dashboard.server import make_service, serve\n"
    f"from app.dashboard import teaching\nteaching.TOY_ITERS = {ITERS}",
)
FIGURE = """() => {
  for (const doc of Bokeh.documents)
    for (const m of doc.all_models)
      if (m.title && typeof m.title.text === "string" && m.title.text.startsWith("DDIM step"))
        return [m.frame_width, m.frame_height, m.x_range.start, m.x_range.end,
                m.y_range.start, m.y_range.end];
  return null;
}"""


@pytest.fixture(scope="module")
def fresh_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    runs = build_runs(tmp_path_factory.getbasetemp() / "reclens_ui")
    before = os.environ.get("RECLENS_HOME")
    os.environ["RECLENS_HOME"] = str(tmp_path_factory.mktemp("teaching-home"))
    try:
        server = start_server(runs, script=SCRIPT)
    finally:
        if before is None:
            del os.environ["RECLENS_HOME"]
        else:
            os.environ["RECLENS_HOME"] = before
    yield server
    stop_server(server)


def test_training_shows_progress_then_round_particles(page: Page, fresh_server: Server) -> None:
    errors: list[str] = []
    page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.set_viewport_size({"width": 1500, "height": 1100})
    page.goto(f"{fresh_server.url}?tab=diffusion", timeout=TIMEOUT)
    expect(page.get_by_text("Training the toy model on moons")).to_be_visible(timeout=TIMEOUT)
    expect(page.locator("progress").first).to_be_visible(timeout=TIMEOUT)
    expect(page.get_by_text(f"{ITERS} iterations in")).to_be_visible(timeout=TIMEOUT)
    expect(page.get_by_text("Training the toy model on moons")).to_have_count(0)
    page.wait_for_function(f"({FIGURE})() !== null", timeout=TIMEOUT)
    width, height, x0, x1, y0, y1 = page.evaluate(FIGURE)
    assert width / height == pytest.approx((x1 - x0) / (y1 - y0), rel=0.02)
    page.get_by_text(f"{ITERS} iterations in").scroll_into_view_if_needed()
    save_shot(page, "teaching-diffusion")
    # a trained model is kept: another shape trains, coming back to the moons does not
    page.get_by_role("combobox").filter(has_text="moons").select_option("circle")
    expect(page.get_by_text("Training the toy model on circle")).to_be_visible(timeout=TIMEOUT)
    expect(page.get_by_text(f"{ITERS} iterations in")).to_be_visible(timeout=TIMEOUT)
    page.get_by_role("combobox").filter(has_text="circle").select_option("moons")
    expect(page.get_by_text(f"{ITERS} iterations in")).to_be_visible(timeout=TIMEOUT)
    expect(page.get_by_text("Training the toy model")).to_have_count(0)
    assert errors == []
