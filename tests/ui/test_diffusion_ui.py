"""Browser tests of the Diffusion tab and of its export (pytest-playwright, Debian's Chromium).

The noise control is bounded by the model's T, the Player says which step it shows, and the
exported HTML plays the same walk with no network at all.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from playwright.sync_api import Page, Route, expect
from ui_support import CHROMIUM, TIMEOUT, Server, open_page

pytestmark = [
    pytest.mark.ui,
    pytest.mark.skipif(CHROMIUM is None, reason="chromium is not installed"),
]


def diffrec_run(server: Server) -> tuple[str, str, int]:
    """The diffrec run id, an evaluated user and the model's T (read through the engine)."""
    from app.dashboard.engine_service import EngineService

    service = EngineService(server.runs, projection_method="pca")
    runs = {s.model: service.run_id_of(s.path) for s in service.summaries()}
    if "diffrec" not in runs:
        pytest.skip("no diffrec run")
    loaded = service.load(runs["diffrec"])
    user = str(loaded.users["id"].iloc[int(loaded.split.eval_users("test")[0])])
    return runs["diffrec"], user, int(loaded.opened.model.steps)


def open_diffusion(page: Page, server: Server) -> tuple[list[str], int]:
    """Open the Diffusion tab of the diffrec run; returns the console errors list and T."""
    run, user, steps = diffrec_run(server)
    errors = open_page(page, server, f"?tab=diffusion&run={run}&user={user}")
    expect(page.get_by_text("Top-K at this step")).to_be_visible(timeout=TIMEOUT)
    return errors, steps


def test_noise_control_cannot_exceed_the_models_steps(page: Page, ui_server: Server) -> None:
    errors, steps = open_diffusion(page, ui_server)
    handle = page.locator(".reclens-diffusion-noise .noUi-handle").first
    expect(handle).to_have_attribute("aria-valuemax", re.compile(rf"^{steps}(\.0+)?$"))
    # the default walk starts from the model's own largest noise step
    expect(handle).to_have_attribute("aria-valuenow", re.compile(rf"^{steps}(\.0+)?$"))
    expect(page.get_by_text(f"noised to t = {steps}").first).to_be_visible(timeout=TIMEOUT)
    handle.focus()
    for _ in range(2):
        handle.press("ArrowLeft")
    expect(page.get_by_text(f"noised to t = {steps - 2}").first).to_be_visible(timeout=TIMEOUT)
    for _ in range(3 * steps):  # far past the end: the slider stops at T
        handle.press("ArrowRight")
    expect(handle).to_have_attribute("aria-valuenow", re.compile(rf"^{steps}(\.0+)?$"))
    expect(page.get_by_text(f"noised to t = {steps}").first).to_be_visible(timeout=TIMEOUT)
    expect(page.get_by_text("noise steps must be within")).to_have_count(0)
    assert errors == []


def test_player_shows_its_step(page: Page, ui_server: Server) -> None:
    errors, steps = open_diffusion(page, ui_server)
    words = page.locator(".reclens-diffusion-step")
    expect(words).to_contain_text(f"Step 0 of {steps}", timeout=TIMEOUT)
    player = page.locator(".reclens-diffusion-player")
    expect(player).to_contain_text(f"Step 0 of {steps}", timeout=TIMEOUT)
    player.locator("button.next").click()
    expect(words).to_contain_text(f"Step 1 of {steps}: the x0 prediction", timeout=TIMEOUT)
    expect(player).to_contain_text(f"Step 1 of {steps}", timeout=TIMEOUT)
    player.locator("button.next").click()
    expect(words).to_contain_text(f"Step 2 of {steps}", timeout=TIMEOUT)
    assert errors == []


@pytest.mark.slow
def test_exported_player_plays_offline(page: Page, ui_server: Server, tmp_path: Path) -> None:
    from app.dashboard.app import load_extensions
    from app.dashboard.engine_service import EngineService
    from app.dashboard.export import export_html
    from app.dashboard.state import Selection

    run, user, steps = diffrec_run(ui_server)
    load_extensions()
    service = EngineService(ui_server.runs, projection_method="pca")
    exported = tmp_path / "export.html"
    exported.write_bytes(export_html(service, Selection(run=run, user=user)).getvalue())

    requests: list[str] = []

    def refuse(route: Route) -> None:
        requests.append(route.request.url)
        route.abort()

    page.route(re.compile(r"^https?://"), refuse)
    errors: list[str] = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.set_viewport_size({"width": 1500, "height": 1100})
    page.goto(exported.as_uri(), timeout=TIMEOUT)
    expect(page.get_by_text("Diffusion reverse process")).to_be_visible(timeout=TIMEOUT)
    expect(page.get_by_text("Reverse step (0 = start)")).to_be_visible()
    expect(page.get_by_text(re.compile(r"^step: 0$"))).to_be_visible()
    page.locator("button.next").first.click()  # the Player steps through the embedded frames
    expect(page.get_by_text(re.compile(r"^step: 1$"))).to_be_visible()
    page.locator("button.next").first.click()
    expect(page.get_by_text(re.compile(r"^step: 2$"))).to_be_visible()
    # attribution bars, paths, two fidelity plots, heat strip, top-K bars, curves, map
    assert page.locator("canvas").count() >= 8
    assert requests == [] and errors == []
