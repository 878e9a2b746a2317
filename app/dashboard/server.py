"""Start the dashboard server: one engine service per process, one page per browser session."""

from __future__ import annotations

import ctypes
import ctypes.util
import gc
import logging
import socket
import time
from pathlib import Path
from typing import Any

import panel as pn
import torch
from panel.io.resources import LOCAL_DIST
from panel.io.server import StoppableThread, get_server
from tornado.ioloop import IOLoop

from app.dashboard.app import Page, create_app, load_extensions
from app.dashboard.engine_service import EngineService
from app.dashboard.security import Wall, install, served_hosts
from app.dashboard.views.common import friendly
from engine.executor import BackendOptions

log = logging.getLogger("reclens.dashboard")

DEFAULT_ADDRESS = "127.0.0.1"
DEFAULT_PORT = 5006
RELEASE_DELAY_S = 1.0
"""Seconds after a session closes before its memory is collected (its page must be unreachable)."""
MAX_UNCONNECTED = 8
"""Full pages built whose browser has not connected yet beyond which a plain GET gets a short
"busy" page: every GET builds its page on the server's one thread before any websocket exists,
and a burst of 30 stalled the open sessions for 30 s or more."""


def origins(address: str, port: int) -> list[str]:
    """Websocket origins the server accepts: the ``host:port`` values of the served address
    (see :func:`app.dashboard.security.served_hosts`)."""
    return served_hosts(address, port)


def free_port(address: str = DEFAULT_ADDRESS) -> int:
    """A TCP port that is free on ``address`` right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((address, 0))
        return int(sock.getsockname()[1])


def serve(
    service: EngineService,
    port: int = DEFAULT_PORT,
    address: str = DEFAULT_ADDRESS,
    show: bool = False,
    threaded: bool = False,
    warm: bool = True,
    token: str | None = None,
    **kwargs: Any,
) -> Any:
    """Serve the dashboard on ``address:port`` (blocking unless ``threaded``).

    Each browser session gets its own page built by :func:`create_app` around the shared
    ``service``. Every request passes the :class:`~app.dashboard.security.Wall` first (served
    host names, websocket origins, the access ``token`` when given) and every answer carries
    the security headers. With ``threaded`` the server runs in a background thread and the
    :class:`StoppableThread` is returned. With ``warm`` (default) the process loads the runs
    and renders one page before it accepts connections (see :func:`warm_up`).
    """
    load_extensions()
    # Many small tensor ops from several sessions: one intra-op thread each avoids the
    # oversubscription that makes torch many times slower on a busy 2-core machine.
    torch.set_num_threads(1)
    if warm:
        seconds = warm_up(service)
        log.info("warmed up in %.1f s", seconds)
    # What exists now (modules, loaded runs, caches) lives as long as the process: moved out of
    # the collector's sight, a full collection no longer walks half a million objects (0.2 to
    # 0.4 s, which used to land in the middle of a page being built).
    gc.collect()
    gc.freeze()

    unconnected: set[int] = set()

    def page() -> None:
        # The page is attached to the session's document here rather than by Panel so that one
        # freeze recomputes the document's model graph once instead of once per template root
        # (0.4 s instead of 0.6 s for the ml-100k Explain page).
        doc = pn.state.curdoc
        # Every stylesheet from this server, also those of components made before the page's
        # HTML is rendered (Panel points those at its CDN until then).
        doc._template_variables["dist_url"] = LOCAL_DIST
        key = id(doc)
        if len(unconnected) >= MAX_UNCONNECTED:
            log.info("%d pages wait for their browser: a busy page instead", len(unconnected))
            busy_page().server_doc(doc, title="RecLens")
            return
        unconnected.add(key)
        pn.state.onload(lambda: unconnected.discard(key))
        pn.state.on_session_destroyed(lambda _ctx: unconnected.discard(key))
        view = create_app(service)
        start = time.perf_counter()
        with doc.models.freeze():
            view.server_doc(doc, title="RecLens")
        log.debug("page attached to its document in %.3f s", time.perf_counter() - start)
        loop = IOLoop.current()
        pn.state.on_session_destroyed(lambda _ctx: loop.call_later(RELEASE_DELAY_S, release_memory))

    wall = Wall.for_address(address, port, token)
    options = dict(
        port=port,
        address=address,
        websocket_origin=origins(address, port),
        show=show,
        title="RecLens",
        start=False,
        **kwargs,
    )

    def start(loop: IOLoop | None = None) -> Any:
        server = get_server(page, loop=loop, **options)
        install(server._tornado, wall)
        server.start()
        try:
            server.io_loop.start()
        finally:
            service.jobs.close()  # no training child outlives the server
        return server

    if threaded:
        loop = IOLoop(make_current=False)
        thread = StoppableThread(target=start, io_loop=loop, kwargs={"loop": loop})
        thread.start()
        return thread
    return start()


def busy_page() -> pn.viewable.Viewable:
    """The short page served while too many pages wait for their browser to connect."""
    return friendly(
        "RecLens is busy building pages for other visitors; reload this page in a moment.",
        "info",
    )


def _malloc_trim() -> Any:
    """glibc's ``malloc_trim`` (None on other C libraries)."""
    name = ctypes.util.find_library("c")
    try:
        return ctypes.CDLL(name).malloc_trim if name else None
    except (OSError, AttributeError):
        return None


_MALLOC_TRIM = _malloc_trim()


def release_memory() -> None:
    """Collect the objects of closed sessions and give the freed heap back to the system.

    A closed page is a large cycle of Panel, Bokeh and HoloViews objects, so only the cyclic
    collector frees it; glibc then keeps the freed blocks in its arenas unless asked to return
    them, and the server's resident memory would stay at its peak after every visit.
    """
    gc.collect()
    if _MALLOC_TRIM is not None:
        _MALLOC_TRIM(0)


def warm_up(service: EngineService, limit: int = 8) -> float:
    """Prepare the process before it accepts connections; returns the seconds it took.

    Loads the listed runs (newest first, at most ``limit``; they share one dataset, so all but
    the first are quick) and builds and renders one throw-away Explain page, so that the first
    visitor waits neither for a run to load nor for the first-use imports of Panel, HoloViews
    and Bokeh. A failure here is logged and only costs the first visitor that time.
    """
    from bokeh.document import Document

    start = time.perf_counter()
    try:
        ids = service.run_ids()[:limit]
        for run_id in ids:
            service.load(run_id)
        if ids:
            page = Page(service, {"run": ids[0], "tab": "explain"})
            page.template()
            page.tabs.get_root(Document())
            page.dispose()
    except Exception:  # noqa: BLE001 - the server still starts; the first page is just slower
        log.exception("warm-up failed")
    return time.perf_counter() - start


def make_service(
    runs: str | Path | None,
    dataset: str = "synthetic",
    projection: str = "umap",
    backend: BackendOptions | None = None,
    **data_options: Any,
) -> EngineService:
    """The engine service over ``runs`` (default: the engine's runs folder); ``backend``: where
    fidelity evaluations started from the page run (default: in the server's process)."""
    if runs is None:
        from engine.runs import runs_root

        runs = runs_root()
    return EngineService(
        runs,
        default_source=dataset,
        data_options=data_options,
        projection_method=projection,
        backend=backend,
    )
