"""Browser test of the Explain tab's fidelity curves: computed on demand, their axes and caption
name the model's quantity (a score for ease), and the path plot's measure selector switches the
deletion and insertion plots to the target's rank, caption included, with no console error."""

from __future__ import annotations

import time

import pytest
from playwright.sync_api import Page, expect
from test_explain_words_ui import item_outside_top_k
from ui_support import CHROMIUM, TIMEOUT, Server, open_page, save_shot

from app.dashboard.shaping import RANK_LABEL

pytestmark = [
    pytest.mark.ui,
    pytest.mark.skipif(CHROMIUM is None, reason="chromium is not installed"),
]


def axis_labels(page: Page) -> list[str]:
    """The axis labels of the Bokeh plots the page shows now (from BokehJS's live views, so a
    figure swapped out of a pane no longer counts)."""
    return page.evaluate(
        """() => [...(window.Bokeh?.index?.all_views() ?? [])]
            .map(v => v.model.axis_label).filter(label => typeof label === "string")"""
    )


def wait_for_labels(page: Page, label: str, count: int, timeout: float = 30.0) -> list[str]:
    """The shown axis labels once ``label`` is among them ``count`` times (or the timeout)."""
    deadline = time.time() + timeout
    labels = axis_labels(page)
    while labels.count(label) < count and time.time() < deadline:
        time.sleep(0.2)
        labels = axis_labels(page)
    return labels


def test_fidelity_curves_follow_the_measure_selector(page: Page, ui_server: Server) -> None:
    run, user, _ = item_outside_top_k(ui_server)
    errors = open_page(page, ui_server, f"?tab=explain&run={run}&user={user}")
    expect(page.locator(".reclens-sentence")).to_be_visible(timeout=TIMEOUT)
    page.get_by_role("button", name="Compute fidelity curves").click()
    captions = page.locator(".reclens-caption")
    output = captions.filter(has_text="Deletion: the target's score (the model's own output")
    expect(output).to_be_visible(timeout=TIMEOUT)
    labels = wait_for_labels(page, "score", 2)
    assert labels.count("score") == 2 and RANK_LABEL not in labels  # deletion and insertion
    page.get_by_role("button", name="rank (comparable across models)").click()
    rank = captions.filter(has_text="Deletion: the target's rank (1 = top, comparable")
    expect(rank).to_be_visible(timeout=TIMEOUT)
    expect(output).to_have_count(0)
    labels = wait_for_labels(page, RANK_LABEL, 3)
    assert labels.count(RANK_LABEL) == 3  # the path plot, deletion and insertion
    assert "score" not in labels
    rank.scroll_into_view_if_needed()
    save_shot(page, "explain-fidelity-rank")
    page.get_by_role("button", name="the model's output").click()
    expect(output).to_be_visible(timeout=TIMEOUT)
    labels = wait_for_labels(page, "score", 2)
    assert labels.count("score") == 2 and RANK_LABEL not in labels
    assert errors == []
