"""Browser tests of the dashboard (pytest-playwright with Debian's Chromium).

One server subprocess serves a small synthetic runs folder for the whole module. Screenshots of
the five tabs go to ``test-results/screenshots/``.
"""

from __future__ import annotations

import re
import time

import pytest
from playwright.sync_api import Browser, Page, expect
from ui_support import CHROMIUM, TIMEOUT, Server, open_page, save_shot

pytestmark = [
    pytest.mark.ui,
    pytest.mark.skipif(CHROMIUM is None, reason="chromium is not installed"),
]


def users_and_runs(server: Server) -> tuple[list[str], str]:
    """Two evaluated users and the diffrec run id (read through the engine, like the server)."""
    from app.dashboard.engine_service import EngineService

    service = EngineService(server.runs, projection_method="pca")
    runs = {s.model: service.run_id_of(s.path) for s in service.summaries()}
    loaded = service.load(runs.get("ease") or next(iter(runs.values())))
    users = [str(loaded.users["id"].iloc[int(u)]) for u in loaded.split.eval_users("test")[:10]]
    return users, runs.get("diffrec", "")


def test_page_loads_without_console_errors(page: Page, ui_server: Server) -> None:
    errors = open_page(page, ui_server)
    expect(page.get_by_text("Leaderboard")).to_be_visible(timeout=TIMEOUT)
    expect(page.get_by_text("gather 80% of all")).to_be_visible(timeout=TIMEOUT)
    assert page.locator("canvas").count() >= 2
    page.wait_for_load_state("networkidle")
    save_shot(page, "overview")
    assert errors == []


def test_picking_a_user_fills_explain(page: Page, ui_server: Server) -> None:
    users, _ = users_and_runs(ui_server)
    errors = open_page(page, ui_server, f"?tab=explain&user={users[0]}")
    expect(page.get_by_text(f"is recommended to user {users[0]}")).to_be_visible(timeout=TIMEOUT)
    box = page.get_by_placeholder("type a user id")
    box.fill(users[1])
    box.press("Enter")
    expect(page.get_by_text(f"is recommended to user {users[1]}")).to_be_visible(timeout=TIMEOUT)
    expect(page.get_by_text("pushed the recommendation up")).to_be_visible()
    assert page.locator("canvas").count() >= 2  # attribution bars and path curves are drawn
    assert f"user={users[1]}" in page.url
    # The fidelity curves are computed on demand: none are drawn until the button is pressed.
    expect(page.get_by_text("a faithful explanation drops it fast")).to_be_hidden()
    canvases = page.locator("canvas").count()
    page.get_by_role("button", name="Compute fidelity curves").click()
    expect(page.get_by_text("a faithful explanation drops it fast")).to_be_visible(timeout=TIMEOUT)
    expect(page.get_by_text("Fidelity of spinrec")).to_be_visible(timeout=TIMEOUT)
    deadline = time.time() + 30
    while page.locator("canvas").count() < canvases + 2 and time.time() < deadline:
        time.sleep(0.2)
    assert page.locator("canvas").count() >= canvases + 2  # deletion and insertion plots
    time.sleep(1)
    save_shot(page, "explain")
    assert errors == []


def test_diffusion_player_advances(page: Page, ui_server: Server) -> None:
    users, diffrec = users_and_runs(ui_server)
    if not diffrec:
        pytest.skip("no diffrec run")
    errors = open_page(page, ui_server, f"?tab=diffusion&run={diffrec}&user={users[0]}")
    expect(page.get_by_text("Top-K at this step")).to_be_visible(timeout=TIMEOUT)
    new_cells = page.locator(".tabulator-cell", has_text=re.compile(r"^new$"))
    page.locator("button.next").first.click()  # step 0 is the start state: nothing ranked
    expect(new_cells).to_have_count(10, timeout=TIMEOUT)  # step 1: every item is new
    page.locator("button.next").first.click()
    expect(new_cells).not_to_have_count(10, timeout=TIMEOUT)
    time.sleep(1)
    save_shot(page, "diffusion")
    assert errors == []


def test_url_restores_view(page: Page, ui_server: Server) -> None:
    users, _ = users_and_runs(ui_server)
    open_page(page, ui_server, f"?tab=fairness&user={users[2]}")
    expect(page.get_by_text(f"User {users[2]} against all evaluated users")).to_be_visible(
        timeout=TIMEOUT
    )
    time.sleep(1)
    save_shot(page, "fairness")
    errors = open_page(page, ui_server, f"?tab=embeddings&user={users[2]}&item=3")
    expect(page.get_by_text("Nearest to")).to_be_visible(timeout=TIMEOUT)
    time.sleep(1)
    save_shot(page, "embeddings")
    assert errors == []


def test_unknown_user_shows_friendly_message(page: Page, ui_server: Server) -> None:
    open_page(page, ui_server, "?tab=explain&user=no-such-user")
    expect(page.get_by_text("'no-such-user' is not in dataset").first).to_be_visible(
        timeout=TIMEOUT
    )
    expect(page.get_by_text("Traceback")).to_have_count(0)


def five_sessions(browser: Browser, server: Server, users: list[str]) -> float:
    """Open the Explain tab of each user at once (one browser context each), check that each
    page shows its own user, close them; returns the largest server memory seen (MiB)."""
    contexts = [browser.new_context() for _ in users]
    pages = [c.new_page() for c in contexts]
    for page, user in zip(pages, users, strict=True):
        open_page(page, server, f"?tab=explain&user={user}")
    peak = server.rss_mb()
    for page, user in zip(pages, users, strict=True):
        expect(page.get_by_text(f"is recommended to user {user}")).to_be_visible(timeout=TIMEOUT)
        expect(page.get_by_text(f"History of user {user}")).to_be_visible()
        peak = max(peak, server.rss_mb())
    for context in contexts:
        context.close()
    return peak


def settled_rss(server: Server, below: float, seconds: float = 30.0) -> float:
    """The server's resident memory once it is under ``below`` MiB, or after ``seconds``."""
    deadline = time.time() + seconds
    rss = server.rss_mb()
    while rss > below and time.time() < deadline:
        time.sleep(1)
        rss = server.rss_mb()
    return rss


def test_five_sessions_get_their_own_views_and_memory_returns(
    browser: Browser, ui_server: Server
) -> None:
    users, _ = users_and_runs(ui_server)
    before = ui_server.rss_mb()
    peak = five_sessions(browser, ui_server, users[:5])
    after = settled_rss(ui_server, below=before + 10)
    # Two more rounds, five other users then the first five again: nothing accumulates from
    # one visit to the next.
    peak_2 = five_sessions(browser, ui_server, users[5:10])
    after_2 = settled_rss(ui_server, below=after + 5)
    peak_again = five_sessions(browser, ui_server, users[:5])
    after_again = settled_rss(ui_server, below=after_2 + 5)
    print(
        f"server RSS: before {before:.0f} MiB; five sessions peak {peak:.0f}, after {after:.0f};"
        f" five more peak {peak_2:.0f}, after {after_2:.0f}; the first five again peak"
        f" {peak_again:.0f}, after {after_again:.0f} MiB"
    )
    # The closed pages are freed, but Python's allocator keeps part of the room five
    # concurrent pages took (about 15 MiB here, in whichever round first needs it) and reuses
    # it: near the start after each round, and no growth from one round to the next.
    assert after <= before + 25, (before, peak, after)
    assert after_2 <= before + 25, (before, peak_2, after_2)
    assert after_again <= after_2 + 8, (after_2, peak_again, after_again)
