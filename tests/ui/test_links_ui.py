"""Browser tests of the page address: it follows the view and a copied link reopens it.

The address is read from the browser (``location.search``) and from Playwright's own record of
the page URL, which follows the browser's history entries.
"""

from __future__ import annotations

import re
from urllib.parse import parse_qsl, quote_plus, urlsplit

import pytest
from playwright.sync_api import Page, expect
from ui_support import CHROMIUM, TIMEOUT, Server, open_page

pytestmark = [
    pytest.mark.ui,
    pytest.mark.skipif(CHROMIUM is None, reason="chromium is not installed"),
]
TAB_LABELS = {
    "overview": "Overview",
    "embeddings": "Embeddings",
    "explain": "Explain",
    "diffusion": "Diffusion",
    "fairness": "Fairness & diversity",
}


def runs_and_users(server: Server) -> tuple[dict[str, str], list[str], list[str]]:
    """Model -> run id, the run ids newest first and three evaluated users (via the engine)."""
    from app.dashboard.engine_service import EngineService

    service = EngineService(server.runs, projection_method="pca")
    runs = {s.model: service.run_id_of(s.path) for s in service.summaries()}
    loaded = service.load(runs.get("ease") or next(iter(runs.values())))
    users = [str(loaded.users["id"].iloc[int(u)]) for u in loaded.split.eval_users("test")[:3]]
    return runs, service.run_ids(), users


def address(page: Page) -> dict[str, str]:
    """The query of the browser's current address."""
    return dict(parse_qsl(urlsplit(page.evaluate("location.href")).query))


def wait_for_query(page: Page, **expected: str) -> dict[str, str]:
    """Wait until the address has every ``expected`` field, in the browser and in Playwright's
    record of the page URL; returns the whole query."""
    page.wait_for_function(
        "(want) => { const q = new URLSearchParams(location.search);"
        " return Object.entries(want).every(([k, v]) => q.get(k) === v); }",
        arg=expected,
        timeout=TIMEOUT,
    )
    for key, value in expected.items():
        expect(page).to_have_url(re.compile(rf"[?&]{key}={re.escape(quote_plus(value))}(&|$)"))
    return address(page)


def tab_header(page: Page, tab: str):  # noqa: ANN201 - a Playwright Locator
    return page.locator(".bk-tab").filter(has_text=re.compile(rf"^{TAB_LABELS[tab]}$"))


def expect_active(page: Page, tab: str) -> None:
    expect(page.locator(".bk-tab.bk-active")).to_have_text(TAB_LABELS[tab], timeout=TIMEOUT)


def pick_user(page: Page, user: str) -> None:
    box = page.get_by_placeholder("type a user id")
    box.fill(user)
    box.press("Enter")


def sidebar_run(page: Page) -> str:
    """The label of the run chosen in the sidebar's Run select."""
    select = page.locator(".bk-input-group", has_text="Run (model)").locator("select")
    return select.evaluate("s => s.options[s.selectedIndex].text")


def test_run_is_in_the_url_from_the_first_load(page: Page, ui_server: Server) -> None:
    _, newest_first, _ = runs_and_users(ui_server)
    errors = open_page(page, ui_server)
    query = wait_for_query(page, run=newest_first[0], tab="overview")
    assert query["dataset"] == "synthetic"
    assert query["user"]
    assert errors == []


def test_url_follows_a_sequence_of_tab_clicks(page: Page, ui_server: Server) -> None:
    _, newest_first, _ = runs_and_users(ui_server)
    open_page(page, ui_server)
    wait_for_query(page, run=newest_first[0], tab="overview")
    for tab in ("explain", "fairness", "embeddings"):
        tab_header(page, tab).click()
        expect_active(page, tab)
        query = wait_for_query(page, tab=tab, run=newest_first[0])
        assert query["tab"] == tab
    wait_for_query(page, tab="embeddings")


def _change_and_check(page: Page, tab: str, runs: dict[str, str], users: list[str]) -> None:
    """Use a control of ``tab`` and check that the view follows."""
    if tab == "overview":
        select = page.locator(".bk-input-group", has_text="Run (model)").locator("select")
        labels = select.locator("option").all_inner_texts()
        other = next(label for label in labels if runs["ease"] in label)
        select.select_option(label=other)
        wait_for_query(page, run=runs["ease"])
        expect(page.get_by_text(re.compile(r"Validation curve of ease"))).to_be_visible(
            timeout=TIMEOUT
        )
    elif tab == "explain":
        pick_user(page, users[1])
        expect(page.get_by_text(f"Top-10 for user {users[1]}")).to_be_visible(timeout=TIMEOUT)
        wait_for_query(page, user=users[1], tab=tab)
    elif tab == "fairness":
        pick_user(page, users[1])
        expect(page.get_by_text(f"User {users[1]} against all evaluated users")).to_be_visible(
            timeout=TIMEOUT
        )
        wait_for_query(page, user=users[1], tab=tab)
    elif tab == "embeddings":
        expect(page.get_by_text("Nearest to \u201cThe Knight of the North\u201d")).to_be_visible(
            timeout=TIMEOUT
        )  # item=1 from the link
        box = page.get_by_role("textbox", name="Find an item by title")
        box.press_sequentially("Scarlet Capt", delay=50)
        page.get_by_text("Scarlet Captain [2]", exact=True).click()
        expect(page.get_by_text("Nearest to \u201cScarlet Captain\u201d")).to_be_visible(
            timeout=TIMEOUT
        )
        wait_for_query(page, item="2", tab=tab)
    else:
        expect(page.get_by_text(re.compile(r"^Step 0 of \d+:"))).to_be_visible(timeout=TIMEOUT)
        page.locator("button.next").first.click()
        page.locator("button.next").first.click()
        expect(page.get_by_text(re.compile(r"^Step 2 of \d+:"))).to_be_visible(timeout=TIMEOUT)


@pytest.mark.parametrize("tab", list(TAB_LABELS))
def test_a_link_reopens_its_tab_with_working_controls(
    page: Page, ui_server: Server, tab: str
) -> None:
    runs, _, users = runs_and_users(ui_server)
    if "diffrec" not in runs or "ease" not in runs:
        pytest.skip("needs the ease and diffrec runs")
    run = runs["diffrec"]
    errors = open_page(page, ui_server, f"?tab={tab}&run={run}&user={users[0]}&item=1")
    expect_active(page, tab)
    wait_for_query(page, tab=tab, run=run, user=users[0], item="1")
    assert "diffrec" in sidebar_run(page)
    _change_and_check(page, tab, runs, users)
    expect(page.get_by_text("Traceback")).to_have_count(0)
    assert errors == []


def test_a_bad_run_falls_back_once_and_everywhere(page: Page, ui_server: Server) -> None:
    runs, newest_first, users = runs_and_users(ui_server)
    newest = newest_first[0]
    model = next(m for m, r in runs.items() if r == newest)
    open_page(page, ui_server, f"?tab=explain&run=no-such-run&user={users[0]}")
    message = page.get_by_text(re.compile("is not in the runs folder"))
    expect(message.first).to_be_visible(timeout=TIMEOUT)
    expect(page.get_by_text(f"Top-10 for user {users[0]} ({model})")).to_be_visible(timeout=TIMEOUT)
    expect(message).to_have_count(1)
    expect(message).to_contain_text("no-such-run")
    assert newest in sidebar_run(page)
    query = wait_for_query(page, run=newest, tab="explain", user=users[0])
    assert "no-such-run" not in query.values()
    # the fallback holds on another tab too: no panel says the URL's run does not exist
    tab_header(page, "fairness").click()
    expect(page.get_by_text(f"User {users[0]} against all evaluated users")).to_be_visible(
        timeout=TIMEOUT
    )
    expect(message).to_have_count(1)
    wait_for_query(page, run=newest, tab="fairness")
