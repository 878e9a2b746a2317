"""Browser tests of the security work: markup payloads never run, and the page and its export
load with every non-local request blocked.

One server subprocess serves a run trained on the markup dataset (user ids, titles and genres
are payloads; see ``tests/markup_data.py``). A test fails when any dialog opens, when an
element a payload would create exists, when the Content-Security-Policy blocks anything the
page needs, or when a resource fails to load.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from urllib.parse import quote

import pytest
from markup_data import MATH_LINK, PAYLOAD, build_markup_runs
from playwright.sync_api import Page, expect
from ui_support import CHROMIUM, Server, start_server, stop_server

pytestmark = [
    pytest.mark.ui,
    pytest.mark.skipif(CHROMIUM is None, reason="chromium is not installed"),
]
TIMEOUT = 90_000
INJECTED = (
    "img[src='x'], b:text-is('Bold'), i[onmouseover], a[href^='javascript'], a[href*='evil'],"
    " mjx-container"
)
"""Elements the payloads would create if they were read as HTML or Markdown, typeset by MathJax
or linkified (Playwright's CSS engine looks inside the components' shadow roots too)."""


@pytest.fixture(scope="module")
def markup_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    runs = build_markup_runs(tmp_path_factory.getbasetemp() / "reclens_markup")
    server = start_server(runs)
    yield server
    stop_server(server)


class Watch:
    """What went wrong in a page: dialogs, CSP violations, failed and foreign requests."""

    def __init__(self, page: Page, server: Server) -> None:
        self.dialogs: list[str] = []
        self.problems: list[str] = []
        self.foreign: list[str] = []
        local = server.url.rstrip("/")

        def route(request_route: object) -> None:
            url = request_route.request.url  # type: ignore[attr-defined]
            if url.startswith((local, "data:", "blob:")):
                request_route.continue_()  # type: ignore[attr-defined]
            else:
                self.foreign.append(url)
                request_route.abort()  # type: ignore[attr-defined]

        page.route("**/*", route)
        page.on("dialog", lambda d: (self.dialogs.append(d.message), d.dismiss()))
        page.on("requestfailed", lambda r: self.problems.append(f"failed {r.url}"))
        page.on(
            "console",
            lambda m: (
                self.problems.append(m.text)
                if m.type == "error" or "Content Security Policy" in m.text
                else None
            ),
        )
        page.on("pageerror", lambda e: self.problems.append(str(e)))

    def clean(self) -> None:
        assert self.dialogs == [] and self.foreign == [] and self.problems == []


def open_page(page: Page, server: Server, query: str) -> Watch:
    watch = Watch(page, server)
    page.set_viewport_size({"width": 1500, "height": 1100})
    page.goto(server.url + query, timeout=TIMEOUT)
    expect(page.get_by_text("Selecting a user or item anywhere")).to_be_visible(timeout=TIMEOUT)
    page.wait_for_load_state("networkidle")
    page.wait_for_timeout(2000)  # the shown tab fills in after the page loads
    return watch


@pytest.mark.parametrize(
    "query",
    [
        "?tab=fairness&user={p}",
        "?tab=explain&user={p}",
        "?tab=explain&run={p}",
        "?tab=explain&item={p}",
        "?tab={p}",
        "?tab=overview&dataset={p}",
        "?tab=embeddings&item=0&user={p}",
        "?tab=explain&item=0&compare={p}",
    ],
)
def test_payload_in_the_address_never_runs(page: Page, markup_server: Server, query: str) -> None:
    watch = open_page(page, markup_server, query.format(p=quote(PAYLOAD)))
    assert page.locator(INJECTED).count() == 0
    watch.clean()


@pytest.mark.parametrize("query", ["?tab=explain&user={p}", "?tab=fairness&user={p}"])
def test_math_and_urls_in_the_address_stay_text(
    page: Page, markup_server: Server, query: str
) -> None:
    watch = open_page(page, markup_server, query.format(p=quote(MATH_LINK)))
    # shown as written (a message quotes the id and may shorten it: a part of it is looked for)
    written = "{javascript:alert(5)}{TeX}$$ at https://evil.example/x"
    assert written in MATH_LINK
    expect(page.get_by_text(written).first).to_be_visible(timeout=TIMEOUT)
    assert page.locator(INJECTED).count() == 0
    watch.clean()


def test_payload_typed_into_the_user_box_and_titles_in_explain(
    page: Page, markup_server: Server
) -> None:
    watch = open_page(page, markup_server, "?tab=explain&user=u1")
    box = page.get_by_placeholder("type a user id")
    box.fill(PAYLOAD)
    box.press("Enter")
    expect(page.get_by_text(f"History of user {PAYLOAD}")).to_be_visible(timeout=TIMEOUT)
    expect(page.get_by_text("Bold").first).to_be_visible(timeout=TIMEOUT)  # titles, as text
    page.get_by_text("What-if: edit this history").click()
    page.wait_for_timeout(2000)
    assert page.locator(INJECTED).count() == 0
    watch.clean()


def test_page_and_export_load_with_foreign_requests_blocked(
    page: Page, markup_server: Server, tmp_path: Path
) -> None:
    watch = open_page(page, markup_server, f"?tab=explain&user={quote(PAYLOAD)}")
    for tab in ("Overview", "Embeddings", "Diffusion", "Fairness & diversity"):
        page.locator(".bk-tab", has_text=tab).first.click()
        page.wait_for_load_state("networkidle")
    page.wait_for_timeout(1500)
    with page.expect_download(timeout=TIMEOUT) as info:
        page.get_by_text("Export this user's views").click()
    exported = tmp_path / "export.html"
    info.value.save_as(exported)
    watch.clean()

    requests: list[str] = []
    offline = page.context.new_page()
    offline.route("**/*", lambda r: (requests.append(r.request.url), r.continue_())
                  if r.request.url.startswith(("file:", "data:", "blob:"))
                  else (requests.append(r.request.url), r.abort()))  # fmt: skip
    dialogs: list[str] = []
    offline.on("dialog", lambda d: (dialogs.append(d.message), d.dismiss()))
    failed: list[str] = []
    offline.on("requestfailed", lambda r: failed.append(r.url))
    offline.goto(exported.as_uri(), timeout=TIMEOUT)
    expect(offline.get_by_text("Recommendations")).to_be_visible(timeout=TIMEOUT)
    offline.wait_for_timeout(2000)
    assert [r for r in requests if not r.startswith(("file:", "data:", "blob:"))] == []
    assert failed == [] and dialogs == []
    assert offline.locator(INJECTED).count() == 0
    assert offline.locator("canvas").count() >= 2
