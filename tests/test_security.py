"""Safe to share: nothing a link, a widget, a dataset file or a run folder holds is rendered as
markup, the server only talks to its own pages, and a broken run never takes it down.

A tiny run is trained on a CSV dataset whose user ids, titles and genres are markup payloads;
pages are built around it with a payload in every URL parameter, and every rendered model of
the page is searched for an element the payload would create. The server tests start the real
server in a subprocess and send forged requests.
"""

from __future__ import annotations

import ast
import html
import json
import re
import socket
from pathlib import Path

import panel as pn
import pytest
from markup_data import GENRE, MATH_LINK, PAYLOAD, TITLE, build_markup_runs

from app.dashboard.app import Page, load_extensions
from app.dashboard.engine_service import EngineService
from app.dashboard.views.common import (
    TextPane,
    error_message,
    escape_text,
    hide_paths,
    md,
)
from data.errors import ReclensError

INJECTED = re.compile(r"<(img|script|b|i|svg|iframe|a)\b", re.IGNORECASE)
"""An element or link that one of the payloads would create if it were read as markup."""
DASHBOARD = Path(__file__).resolve().parents[1] / "app" / "dashboard"


@pytest.fixture(scope="module")
def markup_runs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_markup_runs(tmp_path_factory.getbasetemp() / "reclens_markup")


@pytest.fixture(scope="module")
def service(markup_runs: Path) -> EngineService:
    load_extensions()
    return EngineService(markup_runs, projection_method="pca")


# -- the one escaping place ------------------------------------------------------------------
def test_md_escapes_every_value_and_keeps_the_template() -> None:
    text = md("**User {u}** has {n:,} items", u=PAYLOAD, n=12345)
    rendered = html.unescape(TextPane(text)._transform_object(text)["object"])
    assert "<strong>User " in rendered and "12,345" in rendered
    assert not INJECTED.search(rendered.replace("<strong>", ""))
    assert html.unescape(re.sub(r"<[^>]+>", "", rendered)).strip() == (
        f"User {PAYLOAD} has 12,345 items"
    )


@pytest.mark.parametrize(
    "value", [PAYLOAD, TITLE, GENRE, MATH_LINK, "# head\n- list *em* `code` |a|b|", "a :smile: b"]
)
def test_plain_text_renders_as_exactly_its_text(value: str) -> None:
    rendered = html.unescape(TextPane(value)._transform_object(value)["object"])
    assert not INJECTED.search(rendered)
    shown = html.unescape(re.sub(r"<[^>]+>", "", rendered)).strip()
    assert shown == " ".join(value.splitlines())
    assert escape_text(value).count("<") == 0


def test_text_panes_never_typeset_math() -> None:
    """The browser's MathJax would typeset ``$$...$$`` in a pane's text (a TeX ``\\href`` is a
    link): every text and message pane's model has math disabled."""
    from panel.models.markup import HTML

    from app.dashboard.views.common import MessagePane, markdown

    for pane in (markdown(MATH_LINK), MessagePane(MATH_LINK), TextPane(md("{v}", v=MATH_LINK))):
        models = [m for m in pane.get_root().references() if isinstance(m, HTML)]
        assert models and all(m.disable_math for m in models), type(pane).__name__


def test_no_pane_outside_the_escaping_helpers() -> None:
    """Markdown, HTML and Alert panes are made only in views/common.py, and every ``md``
    template is a literal of the code (values go in as keyword arguments)."""
    offenders = []
    for path in DASHBOARD.rglob("*.py"):
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            pane = isinstance(node, ast.Attribute) and node.attr in {"Markdown", "HTML", "Alert"}
            if pane and path.name != "common.py":
                offenders.append(f"{path.name}:{node.lineno} pn.pane.{node.attr}")
            if (
                isinstance(node, ast.Call)
                and isinstance(node.func, ast.Name)
                and node.func.id == "md"
                and not (node.args and _literal(node.args[0]))
            ):
                offenders.append(f"{path.name}:{node.lineno} md() of a non-literal template")
    assert offenders == []


def _literal(node: ast.expr) -> bool:
    """A string literal, or literals joined with ``+`` and ``a if c else b``."""
    if isinstance(node, ast.Constant):
        return isinstance(node.value, str)
    if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Add):
        return _literal(node.left) and _literal(node.right)
    if isinstance(node, ast.IfExp):
        return _literal(node.body) and _literal(node.orelse)
    return False


def test_page_messages_hide_server_paths() -> None:
    err = ReclensError("no run in /srv/reclens/runs/x; see ~/.cache/reclens/y or run 'a/b'")
    text, kind = error_message(err)
    assert kind == "warning" and "/srv" not in text and ".cache" not in text and "'a/b'" in text
    assert hide_paths("http://127.0.0.1:5006/a/b") == "http://127.0.0.1:5006/a/b"


# -- pages built with payloads ---------------------------------------------------------------
def _rendered_markup(page: Page) -> list[str]:
    """The HTML every rendered model of ``page`` would put in the browser: Markdown and Alert
    panes (their text, unescaped once as the browser does), MultiChoice option labels (which
    Choices.js renders as HTML) and Tabulator column titles."""
    from bokeh.document import Document
    from bokeh.models import MultiChoice

    doc = Document()
    page.template()
    for name in list(page.views):
        page.view(name)
    roots = [page.tabs.get_root(doc)]
    for widget in (page.compare, page.user_input, page.title_input, page.message):
        roots.append(widget.get_root(doc))
    out = []
    for root in roots:
        for model in root.references():
            if hasattr(model, "text") and isinstance(model.text, str):
                out.append(html.unescape(model.text))
            if isinstance(model, MultiChoice):
                out += [str(o[1] if isinstance(o, tuple) else o) for o in model.options]
            if type(model).__name__ == "DataTabulator":
                out += [str(c.title) for c in model.columns]
    return out


@pytest.mark.parametrize("field", ["user", "run", "item", "tab", "dataset"])
@pytest.mark.parametrize("payload", [PAYLOAD, MATH_LINK])
def test_payload_in_each_url_parameter_is_text(
    service: EngineService, field: str, payload: str
) -> None:
    run = service.run_ids()[0]
    args = {"run": run, "tab": "explain", field: payload}
    for tab in ("explain", "fairness", "embeddings", "overview"):
        args["tab"] = payload if field == "tab" else tab
        page = Page(service, args)
        page.view(tab)
        markup = _rendered_markup(page)
        assert not [m for m in markup if INJECTED.search(m)], (field, tab)
        page.dispose()


def test_titles_genres_and_ids_from_the_dataset_are_text(service: EngineService) -> None:
    run = service.run_ids()[0]
    loaded = service.load(run)
    target = str(loaded.items["id"].iloc[0])
    page = Page(service, {"run": run, "user": PAYLOAD, "item": target, "tab": "explain"})
    explain = page.view("explain")
    explain.refresh()
    page.state.compare = [run]
    explain.whatif = True
    page.view("embeddings").neighbours_panel()
    markup = _rendered_markup(page)
    assert any("Bold" in m for m in markup)  # the titles are shown...
    assert not [m for m in markup if INJECTED.search(m)]  # ...as text
    # The what-if editor lists titles as they are, in Bokeh widgets that draw option labels as
    # text nodes (MultiSelect, AutocompleteInput), never in Choices.js (which reads HTML).
    editor = explain._editor
    assert any(TITLE in label for label in editor._add.options)
    assert editor._layout.select(pn.widgets.MultiChoice) == []
    assert {type(w) for w in editor._layout.select(pn.widgets.Widget)} >= {
        pn.widgets.MultiSelect,
        pn.widgets.AutocompleteInput,
    }
    page.dispose()


def test_export_shows_markup_as_text(service: EngineService) -> None:
    from app.dashboard.export import export_html
    from app.dashboard.state import Selection

    run = service.run_ids()[0]
    state = Selection(run=run, user=PAYLOAD, k=10)
    data = export_html(service, state).getvalue().decode("utf-8")
    assert "Bold" in data  # the titles are in the file...
    for payload in (PAYLOAD, TITLE, GENRE, "</script>", "<b>Bold"):
        assert payload.lower() not in data.replace("</script>\n", "").lower() or (
            payload == "</script>"
        )
    # ...only as escaped text: no raw payload, not even inside the embedded JSON
    assert PAYLOAD not in data and TITLE not in data and GENRE not in data


# -- the server's walls ----------------------------------------------------------------------
@pytest.fixture(scope="module")
def served(service: EngineService) -> object:
    """The dashboard served in a thread of this process: ``(port, token)`` per server, one
    open and one with an access token."""
    from app.dashboard.server import free_port, serve

    servers = {}
    for token in (None, "s3cret-token"):
        port = free_port()
        thread = serve(service, port=port, threaded=True, warm=False, token=token)
        _wait_for(port)
        servers[token] = (port, thread)
    yield {token: port for token, (port, _) in servers.items()}
    for _, thread in servers.values():
        thread.stop()


def _wait_for(port: int, timeout: float = 30.0) -> None:
    import time

    deadline = time.time() + timeout
    while time.time() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError("server did not start")


def _get(port: int, path: str = "/", **headers: str) -> tuple[int, dict[str, str], str]:
    """GET ``path`` with exactly these headers (``Host`` defaults to the served address)."""
    import http.client

    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    conn.putrequest("GET", path, skip_host=True, skip_accept_encoding=True)
    headers = {"Host": f"127.0.0.1:{port}", **headers}
    for name, value in headers.items():
        conn.putheader(name.replace("_", "-"), value)
    conn.endheaders()
    resp = conn.getresponse()
    body = resp.read().decode("utf-8", "replace")
    conn.close()
    return resp.status, {k.lower(): v for k, v in resp.getheaders()}, body


def _upgrade(port: int, host: str, origin: str | None, protocol: str = "bokeh") -> int:
    """The status of a websocket upgrade of ``/ws`` with a forged ``Sec-Fetch-Site``."""
    lines = [
        "GET /ws HTTP/1.1",
        f"Host: {host}",
        "Upgrade: websocket",
        "Connection: Upgrade",
        "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==",
        "Sec-WebSocket-Version: 13",
        f"Sec-WebSocket-Protocol: {protocol}",
        "Sec-Fetch-Site: same-origin",
        "Sec-Fetch-Mode: websocket",
    ]
    if origin is not None:
        lines.append(f"Origin: {origin}")
    with socket.create_connection(("127.0.0.1", port), timeout=60) as sock:
        sock.sendall(("\r\n".join(lines) + "\r\n\r\n").encode())
        status = sock.recv(4096).split(b"\r\n", 1)[0].decode()
    return int(status.split()[1])


def _session_token(port: int) -> str:
    status, _, body = _get(port, "/?tab=overview")
    assert status == 200
    match = re.search(r'\\?"token\\?":\s*\\?"([^"\\]+)', body)
    assert match, "no session token in the page"
    return match.group(1)


def test_forged_websocket_and_rebound_host_are_refused(served: dict) -> None:
    port = served[None]
    own = f"127.0.0.1:{port}"
    token = _session_token(port)
    protocol = f"bokeh, {token}"
    assert _upgrade(port, own, f"http://{own}", protocol) == 101  # the page's own websocket
    assert _upgrade(port, own, "http://evil.example", protocol) == 403
    assert _upgrade(port, own, "null", protocol) == 403
    rebound = f"evil.example:{port}"
    assert _upgrade(port, rebound, f"http://{rebound}", protocol) == 403  # DNS rebinding
    assert _get(port, "/", Host=rebound)[0] == 403
    assert _get(port, "/static/js/bokeh.min.js", Host=rebound)[0] == 403
    assert _get(port, "/", Host=f"localhost:{port}")[0] == 200


def test_every_answer_forbids_framing_and_foreign_sources(served: dict) -> None:
    port = served[None]
    for path in ("/", "/static/js/bokeh.min.js", "/no-such-page"):
        _, headers, _ = _get(port, path)
        csp = headers["content-security-policy"]
        assert headers["x-frame-options"] == "DENY"
        assert "frame-ancestors 'none'" in csp
        for directive in ("script-src", "style-src", "connect-src", "default-src"):
            sources = re.search(rf"{directive} ([^;]*)", csp).group(1).split()
            assert sources[0] == "'self'" and not [s for s in sources if "." in s or "*" in s]
    status, headers, _ = _get(port, "/", Host="evil.example")
    assert status == 403 and headers["x-frame-options"] == "DENY"


def test_access_token_is_required_then_kept_in_a_cookie(served: dict) -> None:
    port = served["s3cret-token"]
    status, _, body = _get(port, "/")
    assert status == 403 and "token" in body and body[-1] == "\n" and body.count("\n") == 1
    assert _get(port, "/?token=wrong")[0] == 403
    assert _get(port, "/static/js/bokeh.min.js")[0] == 403
    status, headers, _ = _get(port, "/?token=s3cret-token&tab=overview")
    assert status == 200
    cookie = headers["set-cookie"].split(";")[0]
    assert "HttpOnly" in headers["set-cookie"] and cookie == "reclens_token=s3cret-token"
    assert _get(port, "/static/js/bokeh.min.js", Cookie=cookie)[0] == 200
    assert _get(port, "/", Cookie="reclens_token=other")[0] == 403


# -- broken run folders ----------------------------------------------------------------------
def test_broken_run_folders_are_listed_apart_and_the_rest_served(
    markup_runs: Path, tmp_path: Path
) -> None:
    import shutil

    from app.dashboard.server import free_port, serve

    runs = tmp_path / "runs"
    shutil.copytree(markup_runs, runs)
    good = next(p.parent for p in runs.rglob(".complete"))
    bogus = good.parent / "bogus-run"
    bogus.mkdir()
    (bogus / ".complete").write_text("{}")
    (bogus / "config.json").write_text(json.dumps({"model": 5, "dataset": "x"}))
    nested = good.parent / "nested-run"
    nested.mkdir()
    (nested / ".complete").write_text("[" * 100_000)
    (nested / "config.json").write_text("[" * 100_000 + "]" * 100_000)
    tampered = good.parent / "tampered-run"
    shutil.copytree(good, tampered)
    model = tampered / "model.safetensors"
    data = bytearray(model.read_bytes())
    data[-1] ^= 0xFF
    model.write_bytes(bytes(data))

    load_extensions()
    service = EngineService(runs, projection_method="pca")
    assert len(service.run_ids()) == 1
    broken = dict(service.catalogue.broken())
    assert set(broken) == {
        f"{good.parent.name}/{n}" for n in ("bogus-run", "nested-run", "tampered-run")
    }
    assert "model.safetensors" in broken[f"{good.parent.name}/tampered-run"]
    assert all(str(tmp_path) not in why for why in broken.values())
    page = Page(service, {"tab": "overview"})
    note = page.view("overview")._broken
    assert note.visible and "3 broken run folder(s)" in note.object
    assert "tampered-run" in note.object and str(tmp_path) not in note.object

    port = free_port()
    thread = serve(service, port=port, threaded=True, warm=True)
    try:
        _wait_for(port)
        status, _, body = _get(port, "/?tab=overview")
        assert status == 200 and "RecLens" in body
    finally:
        thread.stop()


def test_a_burst_of_plain_gets_builds_a_bounded_number_of_pages(service: EngineService) -> None:
    """GETs whose browser never connects: beyond MAX_UNCONNECTED full pages, a busy page."""
    from app.dashboard.server import MAX_UNCONNECTED, free_port, serve

    port = free_port()
    thread = serve(service, port=port, threaded=True, warm=False)
    try:
        _wait_for(port)
        bodies = [_get(port, "/?tab=overview")[2] for _ in range(MAX_UNCONNECTED + 2)]
    finally:
        thread.stop()
    # The page's document travels over the websocket: the HTML of the busy page is the short
    # one without the template's resources.
    sizes = [len(body) for body in bodies]
    assert min(sizes[:MAX_UNCONNECTED]) > 2 * max(sizes[MAX_UNCONNECTED:])
