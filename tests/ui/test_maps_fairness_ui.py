"""Browser tests of the maps' colourings and the Fairness tab opened from a link (Playwright
with Debian's Chromium, on the small synthetic runs of ``conftest.ui_server``).

The map checks read the Bokeh models the page draws (``Bokeh.index``: the views attached to
the page and visible): each map's main glyph, its colour mapper, its legends and colour bars.
"""

from __future__ import annotations

import time

import pytest
from playwright.sync_api import Page, expect
from ui_support import CHROMIUM, TIMEOUT, Server, open_page

from app.dashboard.plots.embeddings import category_labels, is_categorical

pytestmark = [
    pytest.mark.ui,
    pytest.mark.slow,
    pytest.mark.skipif(CHROMIUM is None, reason="chromium is not installed"),
]
MAPS_JS = """() => {
  const plots = {};
  for (const view of Bokeh.index.all_views()) {
    const m = view.model;
    const kind = m.constructor.__name__;
    if (!(kind === 'Figure' || kind === 'Plot') || !m.title) continue;
    if (!view.el || !view.el.isConnected || !view.el.getClientRects().length) continue;
    const title = m.title.text;
    if (title !== 'Items' && title !== 'Users') continue;
    const info = {mapper: null, values: [], legend: [], bars: [], bar_matches: false};
    let main = null;
    for (const r of m.renderers) {
      if (r.glyph && r.glyph.fill_color && r.glyph.fill_color.transform) main = r;
    }
    if (main) {
      const spec = main.glyph.fill_color;
      info.mapper = spec.transform.constructor.__name__;
      info.values = [...new Set(main.data_source.data[spec.field])].map(String);
    }
    for (const a of [...m.right, ...m.center, ...m.left, ...m.above, ...m.below]) {
      const name = a.constructor.__name__;
      if (name === 'Legend') {
        for (const it of a.items) {
          const lab = it.label;
          if (lab && lab.field !== undefined) {
            for (const v of new Set(it.renderers[0].data_source.data[lab.field]))
              info.legend.push(String(v));
          } else if (lab) { info.legend.push(String(lab.value)); }
        }
      }
      if (name === 'ColorBar') {
        info.bars.push(a.title);
        if (main && a.color_mapper === main.glyph.fill_color.transform) info.bar_matches = true;
      }
    }
    plots[title] = info;
  }
  return plots;
}"""


MARKERS_JS = """() => { const xs = [];
  for (const view of Bokeh.index.all_views()) { const m = view.model;
    if (m.constructor.__name__ !== 'GlyphRenderer' || !m.glyph) continue;
    if (m.glyph.constructor.__name__ !== 'VSpan') continue;
    const plot = view.parent;
    if (!plot || !plot.el || !plot.el.isConnected || !plot.el.getClientRects().length) continue;
    for (const x of m.data_source.data[m.glyph.x.field] || []) xs.push(x); }
  return xs.sort((a, b) => a - b); }"""


def marker_values(service: object, run: str, user: str) -> list[float]:
    """The values the Fairness tab marks for ``user`` (top-10), sorted."""
    from app.dashboard import fairness_data
    from app.dashboard.views.fairness import USER_METRICS

    frame = fairness_data.per_user(service, run, 10)  # type: ignore[arg-type]
    row = frame.set_index("raw_id").loc[user]
    values = [float(row[m]) for m in USER_METRICS if m in frame.columns]
    return sorted(v for v in values if v == v)


def wait_for_markers(page: Page, wanted: list[float], seconds: float = 60) -> None:
    """Poll until the visible user markers sit at ``wanted``."""
    deadline = time.time() + seconds
    got: list[float] = []
    while time.time() < deadline:
        got = page.evaluate(MARKERS_JS)
        if got == pytest.approx(wanted, rel=1e-9, abs=1e-12):
            return
        time.sleep(0.3)
    raise AssertionError(f"markers at {got}, expected {wanted}")


def runs_and_users(server: Server) -> tuple[str, list[str], object]:
    """The ease run id, its evaluated users and the engine service (as the server sees it)."""
    from app.dashboard.engine_service import EngineService

    service = EngineService(server.runs, projection_method="pca")
    run = next(
        service.run_id_of(s.path) for s in service.summaries() if s.model == "ease"
    )  # fmt: skip
    loaded = service.load(run)
    users = [str(loaded.users["id"].iloc[int(u)]) for u in loaded.split.eval_users("test")[:5]]
    return run, users, service


def matches(info: dict | None, column: str, frame) -> bool:
    """Whether a map's drawn state (from :data:`MAPS_JS`) shows ``column``: for categories,
    exactly its labels, each in the legend, and no colour bar; for numbers, a colour bar named
    after it whose mapper is the glyph's."""
    if not info or not info["mapper"]:
        return False
    if is_categorical(frame[column]):
        wanted = set(category_labels(frame[column]))
        return (
            info["mapper"] == "CategoricalColorMapper"
            and set(info["values"]) == wanted
            and wanted <= set(info["legend"])
            and not info["bars"]
        )
    return info["bars"] == [column] and info["bar_matches"]


def wait_for_map(page: Page, title: str, column: str, frame, seconds: float = 60) -> dict:
    """Poll the page until map ``title`` shows ``column``; returns its last drawn state."""
    deadline = time.time() + seconds
    info: dict = {}
    while time.time() < deadline:
        info = page.evaluate(MAPS_JS).get(title, {})
        if matches(info, column, frame):
            return info
        time.sleep(0.3)
    raise AssertionError(f"the {title} map does not show {column} with its key: {info}")


def test_every_map_colouring_has_a_matching_legend_or_colour_bar(
    page: Page, ui_server: Server
) -> None:
    run, users, service = runs_and_users(ui_server)
    errors = open_page(page, ui_server, f"?tab=embeddings&run={run}&user={users[0]}")
    frames = {"Items": service.item_map(run), "Users": service.user_map(run)}
    selects = {
        "Items": page.locator("select:has(option[value='popularity'])").first,
        "Users": page.locator("select:has(option[value='activity'])").first,
    }
    wait_for_map(page, "Items", "genre", frames["Items"], seconds=TIMEOUT / 1000)
    wait_for_map(page, "Users", "activity", frames["Users"])
    seen = {}
    for title, select in selects.items():
        options = select.locator("option").evaluate_all("els => els.map(e => e.value)")
        assert len(options) >= 2
        # every colouring, then back to the first: each change must bring its own key
        for column in [*options[1:], options[0]]:
            select.select_option(column)
            info = wait_for_map(page, title, column, frames[title])
            seen[(title, column)] = "legend" if info["mapper"].startswith("Categorical") else "bar"
    assert "legend" in seen.values() and "bar" in seen.values()
    assert seen[("Items", "popularity")] == "bar"
    assert errors == []


def test_fairness_link_has_a_working_metric_selector(page: Page, ui_server: Server) -> None:
    run, users, service = runs_and_users(ui_server)
    errors = open_page(page, ui_server, f"?tab=fairness&run={run}&user={users[1]}")
    expect(page.get_by_text(f"User {users[1]} against all evaluated users")).to_be_visible(
        timeout=TIMEOUT
    )
    metric = page.locator("select:has(option[value='NDCG@10'])").first
    options = metric.locator("option").evaluate_all("els => els.map(e => e.value)")
    assert len(options) >= 5
    assert "Recall@10" in options and "Average recommendation popularity" in options
    expect(page.get_by_text("Mean NDCG@10 of each user group")).to_be_visible(timeout=TIMEOUT)
    metric.select_option("Average recommendation popularity")
    expect(
        page.get_by_text("Mean Average recommendation popularity of each user group")
    ).to_be_visible(timeout=TIMEOUT)
    groups = page.locator("select:has(option[value='activity'])").first
    assert "zip" not in groups.locator("option").evaluate_all("els => els.map(e => e.value)")
    # a user switch moves every marker to the new user's values and keeps the selector working
    wait_for_markers(page, marker_values(service, run, users[1]))
    box = page.get_by_placeholder("type a user id")
    box.fill(users[2])
    box.press("Enter")
    expect(page.get_by_text(f"User {users[2]} against all evaluated users")).to_be_visible(
        timeout=TIMEOUT
    )
    wait_for_markers(page, marker_values(service, run, users[2]))
    metric.select_option("Recall@10")
    expect(page.get_by_text("Mean Recall@10 of each user group")).to_be_visible(timeout=TIMEOUT)
    assert errors == []
