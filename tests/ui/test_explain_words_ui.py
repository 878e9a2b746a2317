"""Browser test of the Explain tab's words: a link asking to explain an item outside the top-K
opens a page whose sentence says the item is not in the top-K, at the rank the engine gives it,
and never that it "is recommended"; the path curves switch to the target's rank."""

from __future__ import annotations

import time

import pytest
from playwright.sync_api import Page, expect
from ui_support import CHROMIUM, TIMEOUT, Server, open_page, save_shot

from app.dashboard.sentence import ordinal
from app.dashboard.shaping import RANK_LABEL

pytestmark = [
    pytest.mark.ui,
    pytest.mark.skipif(CHROMIUM is None, reason="chromium is not installed"),
]
RANK = 25
"""The asked item's rank in the user's list (outside the default top-10)."""


def item_outside_top_k(server: Server) -> tuple[str, str, str]:
    """An ease run, an evaluated user and the item at :data:`RANK` of that user's list (read
    through the engine service, as the server reads it)."""
    from app.dashboard.engine_service import EngineService

    service = EngineService(server.runs, projection_method="pca")
    run = next(service.run_id_of(s.path) for s in service.summaries() if s.model == "ease")
    loaded = service.load(run)
    user = str(loaded.users["id"].iloc[int(loaded.split.eval_users("test")[0])])
    recs = service.recommend(run, user, RANK)
    return run, user, str(recs["id"].iloc[RANK - 1])


def axis_labels(page: Page) -> list[str]:
    """The axis labels of every Bokeh plot in the page (read from Bokeh's documents)."""
    return page.evaluate(
        """() => (window.Bokeh?.documents ?? []).flatMap(doc => [...doc.all_models])
            .map(m => m.axis_label).filter(label => typeof label === "string")"""
    )


def test_item_outside_the_top_k_is_said_to_be_outside(page: Page, ui_server: Server) -> None:
    run, user, item = item_outside_top_k(ui_server)
    errors = open_page(page, ui_server, f"?tab=explain&run={run}&user={user}&item={item}")
    sentence = page.locator(".reclens-sentence")
    expect(sentence).to_contain_text(
        f"is not in user {user}'s top-10 by ease: it ranks {ordinal(RANK)} of the",
        timeout=TIMEOUT,
    )
    expect(sentence).to_contain_text("items it can recommend (score ")
    expect(sentence).not_to_contain_text("is recommended")
    expect(page.get_by_text("the target's score", exact=False).first).to_be_visible()
    assert RANK_LABEL not in axis_labels(page)
    page.get_by_role("button", name="rank (comparable across models)").click()
    deadline = time.time() + 30
    while RANK_LABEL not in axis_labels(page) and time.time() < deadline:
        time.sleep(0.2)
    assert RANK_LABEL in axis_labels(page)  # the path plot's y axis now shows the rank
    save_shot(page, "explain-outside-top-k")
    assert errors == []
