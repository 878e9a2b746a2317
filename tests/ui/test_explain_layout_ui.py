"""Browser tests of the Explain tab's layout: the what-if editor is a searchable list of bounded
height, and the top-K and Compare tables keep every column in view.

A laptop-sized window (1280 x 800): the tables share the tab's width with the history.
"""

from __future__ import annotations

import pytest
from playwright.sync_api import Locator, Page, expect
from ui_support import CHROMIUM, Server, save_shot

pytestmark = [
    pytest.mark.ui,
    pytest.mark.skipif(CHROMIUM is None, reason="chromium is not installed"),
]
TIMEOUT = 90_000
VIEWPORT = {"width": 1280, "height": 800}
MAX_LIST_HEIGHT = 300
"""The history list's pixels at most, whatever the history's length (it scrolls)."""


def longest_history(server: Server) -> tuple[str, list[str], dict[str, str]]:
    """The evaluated user with the longest history, their history titles, and run ids by model
    (read through the engine, like the server)."""
    from app.dashboard.engine_service import EngineService

    service = EngineService(server.runs, projection_method="pca")
    runs = {s.model: service.run_id_of(s.path) for s in service.summaries()}
    run = runs.get("ease") or next(iter(runs.values()))
    loaded = service.load(run)
    users = [str(loaded.users["id"].iloc[int(u)]) for u in loaded.split.eval_users("test")[:40]]
    histories = {u: service.history_table(run, u)["title"].tolist() for u in users}
    user = max(users, key=lambda u: len(histories[u]))
    return user, histories[user], runs


def open_explain(page: Page, server: Server, query: str) -> list[str]:
    """Open the Explain tab with ``query`` in a laptop-sized window; returns console errors."""
    errors: list[str] = []
    page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.set_viewport_size(VIEWPORT)
    page.goto(server.url + "?tab=explain&" + query, timeout=TIMEOUT)
    expect(page.get_by_text("Top-10 for user").first).to_be_visible(timeout=TIMEOUT)
    return errors


def header(table: Locator, field: str) -> Locator:
    return table.locator(f'.tabulator-col[tabulator-field="{field}"]')


def assert_columns_in_view(page: Page, table: Locator, fields: list[str]) -> None:
    """Every header of ``fields`` lies inside the table's box, and the table inside the window."""
    box = table.bounding_box()
    assert box is not None
    assert box["x"] >= 0 and box["x"] + box["width"] <= VIEWPORT["width"] + 1
    for field in fields:
        cell = header(table, field).bounding_box()
        assert cell is not None, field
        assert cell["width"] >= 30, field  # wide enough to read its title
        assert box["x"] - 1 <= cell["x"], field
        assert cell["x"] + cell["width"] <= box["x"] + box["width"] + 1, field


def test_whatif_editor_is_a_searchable_list_of_bounded_height(
    page: Page, ui_server: Server
) -> None:
    user, titles, _ = longest_history(ui_server)
    errors = open_explain(page, ui_server, f"user={user}")
    expect(page.get_by_text(f"(training part): {len(titles)} items").first).to_be_visible()
    page.get_by_role("button", name="What-if").click()
    search = page.get_by_placeholder("search the history by title")
    expect(search).to_be_visible(timeout=TIMEOUT)
    listing = page.get_by_role("listbox")
    options = listing.locator("option")
    expect(options).to_have_count(len(titles), timeout=TIMEOUT)
    box = listing.bounding_box()
    assert box is not None and box["height"] <= MAX_LIST_HEIGHT
    # Typing filters the list to the titles that contain the text.
    word = max(titles[0].split(), key=len)[:4]
    expected = [t for t in titles if word.lower() in t.lower()]
    search.press_sequentially(word, delay=30)
    expect(options).to_have_count(len(expected), timeout=TIMEOUT)
    assert all(word.lower() in o.lower() for o in options.all_inner_texts())
    # Removing a selected item shortens the edited history by one.
    listing.select_option(index=0)
    page.get_by_role("button", name="Remove selected").click()
    expect(page.get_by_text(f"(training part): {len(titles) - 1} items").first).to_be_visible(
        timeout=TIMEOUT
    )
    expect(page.get_by_text("1 removed, 0 added")).to_be_visible(timeout=TIMEOUT)
    save_shot(page, "explain-whatif")
    assert errors == []


def test_topk_table_shows_score_and_hit_columns(page: Page, ui_server: Server) -> None:
    user, _, _ = longest_history(ui_server)
    errors = open_explain(page, ui_server, f"user={user}")
    table = page.locator(".tabulator").filter(has=page.locator('[tabulator-field="score"]'))
    expect(header(table, "hit")).to_be_visible(timeout=TIMEOUT)
    assert_columns_in_view(page, table, ["rank", "title", "score", "hit"])
    assert errors == []


def test_compare_table_shows_every_run(page: Page, ui_server: Server) -> None:
    user, _, runs = longest_history(ui_server)
    if len(runs) < 2:
        pytest.skip("needs two runs")
    first, *others = runs.values()
    errors = open_explain(page, ui_server, f"user={user}&run={first}")
    typed = page.locator(".choices__input--cloned").first
    for run in others:
        typed.click()
        typed.fill(run.rsplit("/", 1)[-1][:8])
        typed.press("Enter")
    expect(page.get_by_text("Same user, several runs")).to_be_visible(timeout=TIMEOUT)
    table = page.locator(".tabulator").filter(has=page.locator('[tabulator-field="overlap"]'))
    expect(header(table, "overlap")).to_be_visible(timeout=TIMEOUT)
    fields = table.locator(".tabulator-col[tabulator-field]")
    names = [f.get_attribute("tabulator-field") or "" for f in fields.all() if f.is_visible()]
    assert len(names) == 2 + len(runs)  # rank, one column per run, overlap
    table.scroll_into_view_if_needed()
    assert_columns_in_view(page, table, names)
    expect(page.get_by_text(f"in how many of the {len(runs)} lists")).to_be_visible()
    assert errors == []
