"""The server's walls: which requests reach the dashboard, and the headers of every answer.

:class:`Wall` is checked before any handler runs (:func:`install` wraps the Tornado
application's routing), on every HTTP request and websocket upgrade:

* ``Host`` must be one of the served addresses (``address:port``, plus the loopback names on
  loopback): a page of a foreign site whose name was rebound to this machine's address (DNS
  rebinding) sends its own name and is refused.
* A websocket upgrade that carries an ``Origin`` must come from one of those addresses too,
  whatever ``Sec-Fetch-Site`` says (Tornado and Bokeh skip their origin allowlist when fetch
  metadata claims the request is same-origin). Browsers always send ``Origin`` on a websocket;
  a client without one (Bokeh's Python client) is not a browser page and cannot be a
  cross-site attack.
* With an access token (required when the server listens beyond loopback), the request must
  carry it: as ``?token=...`` once (the answer then sets an HttpOnly cookie) or as that cookie.

Every HTTP answer carries a Content-Security-Policy that allows scripts, styles, images, fonts
and connections from the server's own origin only and no framing (``frame-ancestors 'none'``,
``X-Frame-Options: DENY``).
"""

from __future__ import annotations

import hmac
import ipaddress
import socket
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import tornado.web
from tornado.httputil import HTTPServerRequest

TOKEN_PARAM = "token"
TOKEN_COOKIE = "reclens_token"
CONTENT_SECURITY_POLICY = "; ".join(
    (
        "default-src 'self'",
        # Bokeh renders each document with an inline <script> (the document's JSON and the
        # call that embeds it); its renderer compiles code from strings (EvalError without
        # 'unsafe-eval': nothing is drawn), and Panel loads its module shim as a blob: script.
        "script-src 'self' 'unsafe-inline' 'unsafe-eval' blob:",
        # Bokeh and Panel style their components with inline <style> elements and style
        # attributes (in shadow roots), which CSP counts as inline styles.
        "style-src 'self' 'unsafe-inline'",
        # Toolbar icons and the canvas' saved images are data: and blob: URLs.
        "img-src 'self' data: blob:",
        "font-src 'self' data:",
        "connect-src 'self'",
        "object-src 'none'",
        "base-uri 'self'",
        "form-action 'self'",
        "frame-ancestors 'none'",
    )
)
SECURITY_HEADERS: dict[str, str] = {
    "Content-Security-Policy": CONTENT_SECURITY_POLICY,
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
}


def is_loopback(address: str) -> bool:
    """Whether ``address`` (an IP address or ``localhost``) only reaches this machine."""
    if address == "localhost":
        return True
    try:
        return ipaddress.ip_address(address).is_loopback
    except ValueError:
        return False


def served_hosts(address: str, port: int) -> list[str]:
    """The ``host:port`` values a browser sends for this server: the bound address, the
    loopback names on loopback, and this machine's names and IPv4 addresses when bound to all
    interfaces (``0.0.0.0``)."""
    names = {address}
    if is_loopback(address):
        names |= {"127.0.0.1", "localhost"}
    if address in ("0.0.0.0", ""):
        names |= {"127.0.0.1", "localhost", *_machine_names()}
    hosts = {f"{name}:{port}".lower() for name in names if name}
    return sorted(hosts)


def _machine_names() -> set[str]:
    """This machine's host names and the IPv4 addresses they resolve to."""
    names = {socket.gethostname(), socket.getfqdn()}
    for name in list(names):
        try:
            for info in socket.getaddrinfo(name, None, socket.AF_INET):
                names.add(str(info[4][0]))
        except OSError:
            continue
    return names


@dataclass(frozen=True)
class Wall:
    """Which requests the server answers: ``hosts`` (lower-case ``host:port``) and an optional
    access ``token``."""

    hosts: frozenset[str]
    token: str | None = None

    @classmethod
    def for_address(cls, address: str, port: int, token: str | None = None) -> Wall:
        """The wall of a server bound to ``address:port``."""
        return cls(frozenset(served_hosts(address, port)), token or None)

    def refusal(self, request: HTTPServerRequest) -> str | None:
        """Why ``request`` is refused, or None when it may reach the dashboard."""
        host = request.headers.get("Host", "").strip().lower()
        if host not in self.hosts:
            return "this server does not answer for that host name"
        if request.headers.get("Upgrade", "").lower() == "websocket":
            origin = request.headers.get("Origin")
            if origin is not None and _origin_host(origin) not in self.hosts:
                return "websocket connections are only accepted from the dashboard's own pages"
        if self.token is not None and not self.has_token(request):
            return "an access token is required: open the address printed by reclens serve"
        return None

    def has_token(self, request: HTTPServerRequest) -> bool:
        """Whether ``request`` carries the token (query parameter or cookie)."""
        return self.token is not None and any(_same(v, self.token) for v in _token_values(request))

    def query_token(self, request: HTTPServerRequest) -> bool:
        """Whether ``request`` carries the token as a query parameter (so its answer sets the
        cookie)."""
        values = request.query_arguments.get(TOKEN_PARAM, [])
        return self.token is not None and any(
            _same(v.decode("utf-8", "replace"), self.token) for v in values
        )


def _same(given: str, token: str) -> bool:
    """Constant-time comparison of a supplied token with the server's."""
    return hmac.compare_digest(given.encode("utf-8"), token.encode("utf-8"))


def _origin_host(origin: str) -> str:
    parts = urlsplit(origin.strip())
    if parts.scheme not in ("http", "https") or not parts.netloc:
        return ""
    return parts.netloc.lower()


def _token_values(request: HTTPServerRequest) -> Iterable[str]:
    for value in request.query_arguments.get(TOKEN_PARAM, []):
        yield value.decode("utf-8", "replace")
    try:
        cookie = request.cookies.get(TOKEN_COOKIE)
    except Exception:  # noqa: BLE001 - a malformed Cookie header carries no token
        cookie = None
    if cookie is not None:
        yield cookie.value


class Refused(tornado.web.RequestHandler):
    """Answers 403 with a one-line reason (to any method)."""

    def initialize(self, reason: str) -> None:
        self.reason = reason

    def prepare(self) -> None:
        self.set_status(403)
        self.set_header("Content-Type", "text/plain; charset=utf-8")
        self.finish(f"403 Forbidden: {self.reason}\n")


def install(app: tornado.web.Application, wall: Wall) -> None:
    """Put ``wall`` in front of every handler of ``app`` and the security headers on every
    answer."""
    find_handler = app.find_handler

    def guarded_find_handler(request: HTTPServerRequest, **kwargs: Any) -> Any:
        reason = wall.refusal(request)
        if reason is not None:
            return app.get_handler_delegate(request, Refused, {"reason": reason})
        return find_handler(request, **kwargs)

    app.find_handler = guarded_find_handler  # type: ignore[method-assign]

    class Headers(tornado.web.OutputTransform):
        """Adds :data:`SECURITY_HEADERS` (and the token cookie) to an answer."""

        def __init__(self, request: HTTPServerRequest) -> None:
            super().__init__(request)
            self.set_cookie = wall.query_token(request)

        def transform_first_chunk(
            self, status_code: int, headers: Any, chunk: bytes, finishing: bool
        ) -> tuple[int, Any, bytes]:
            for name, value in SECURITY_HEADERS.items():
                headers[name] = value
            if self.set_cookie:
                headers.add(
                    "Set-Cookie",
                    f"{TOKEN_COOKIE}={wall.token}; Path=/; HttpOnly; SameSite=Strict",
                )
            return status_code, headers, chunk

    app.transforms.append(Headers)
