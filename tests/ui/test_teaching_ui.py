"""Browser test of the Diffusion tab's 2-D teaching diffusion (pytest-playwright, Chromium).

A server of its own, with an empty ``$RECLENS_HOME`` (no saved toy models) and fewer training
iterations: the page shows a progress bar while the toy model trains, then the Player and the
particles, drawn with equal units on both axes.

What the page showed while training is recorded in the page itself (:data:`RECORDER`, polling
every 50 ms), so the check does not depend on Playwright polling at the right moment: on a busy
machine the page may load after most of the training, and the message shows only briefly.
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
    open_page,
    save_shot,
    start_server,
    stop_server,
)

pytestmark = [
    pytest.mark.ui,
    pytest.mark.skipif(CHROMIUM is None, reason="chromium is not installed"),
]
TIMEOUT = 180_000
ITERS = 1500
SCRIPT = SERVER_SCRIPT.replace(
    "from app.dashboard.server import make_service, serve",
    f"from app.dashboard.server import make_service, serve\n"
    f"from app.dashboard import teaching\nteaching.TOY_ITERS = {ITERS}",
)
FIGURE = """() => {
  const view = Bokeh.index.query_one((v) => v.model.title != null
    && typeof v.model.title.text === "string" && v.model.title.text.startsWith("DDIM step"));
  if (view == null || view.frame == null) return null;
  const box = view.el.getBoundingClientRect();
  const {x_range, y_range} = view.model;
  return [view.frame.bbox.width, view.frame.bbox.height, x_range.start, x_range.end,
          y_range.start, y_range.end, box.width, box.height];
}"""
"""The teaching plot as drawn: its frame's size in pixels, its ranges, its element's size."""
RECORDER = """
window.__shown = new Set();
setInterval(() => {
  const roots = [document];
  for (let i = 0; i < roots.length; i++) {
    for (const el of roots[i].querySelectorAll("*")) {
      if (el.shadowRoot) roots.push(el.shadowRoot);
      if (el.tagName === "PROGRESS" && el.checkVisibility()) window.__shown.add("progress");
      if (el.tagName === "P" && el.checkVisibility()) {
        const m = /Training the toy model on (\\S+)/.exec(el.textContent);
        if (m) window.__shown.add("training " + m[1]);
      }
    }
  }
}, 50);
"""
"""Records in ``window.__shown`` what was visible at any 50 ms tick: ``progress`` (a progress
bar) and ``training <shape>`` (the training message), through every shadow root."""


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
    page.add_init_script(RECORDER)
    errors = open_page(page, fresh_server, "?tab=diffusion", timeout=TIMEOUT)
    expect(page.get_by_text(f"{ITERS:,} iterations in")).to_be_visible(timeout=TIMEOUT)
    expect(page.get_by_text("Training the toy model on moons")).to_have_count(0)
    assert page.evaluate("[...window.__shown].sort()") == ["progress", "training moons"]
    page.wait_for_function(f"({FIGURE})() !== null", timeout=TIMEOUT)
    width, height, x0, x1, y0, y1, outer_width, outer_height = page.evaluate(FIGURE)
    assert width / height == pytest.approx((x1 - x0) / (y1 - y0), rel=0.02)
    assert width <= outer_width < width + 250 and height <= outer_height < height + 150
    page.get_by_text(f"{ITERS:,} iterations in").scroll_into_view_if_needed()
    save_shot(page, "teaching-diffusion")
    # a trained model is kept: another shape trains, coming back to the moons does not
    page.evaluate("window.__shown.clear()")
    page.get_by_role("combobox").filter(has_text="moons").select_option("circle")
    page.wait_for_function("window.__shown.has('training circle')", timeout=TIMEOUT)
    expect(page.get_by_text(f"{ITERS:,} iterations in")).to_be_visible(timeout=TIMEOUT)
    expect(page.get_by_text("Training the toy model")).to_have_count(0)
    page.evaluate("window.__shown.clear()")
    page.get_by_role("combobox").filter(has_text="circle").select_option("moons")
    expect(page.get_by_text(f"{ITERS:,} iterations in")).to_be_visible(timeout=TIMEOUT)
    page.wait_for_timeout(1000)  # any training message would show within this second
    expect(page.get_by_text("Training the toy model")).to_have_count(0)
    assert page.evaluate("[...window.__shown]") == []
    assert errors == []
