"""Helpers every view shares: captions, friendly error panes, guarded rendering, CSV export."""

from __future__ import annotations

import functools
import io
import logging
import time
import traceback
from collections.abc import Callable
from typing import Any

import holoviews as hv
import pandas as pd
import panel as pn
import param

from app.dashboard.engine_service import EngineService
from app.dashboard.state import Selection
from data.errors import ReclensError

log = logging.getLogger("reclens.dashboard")


def caption(text: str) -> pn.pane.Markdown:
    """The one-line caption under a plot: what it shows and how to read it."""
    return pn.pane.Markdown(text, css_classes=["reclens-caption"], margin=(0, 10, 12, 10))


def friendly(message: str, kind: str = "warning") -> pn.pane.Alert:
    """A friendly message box in the page."""
    return pn.pane.Alert(message, alert_type=kind, margin=(5, 10), sizing_mode="stretch_width")


def error_pane(err: BaseException) -> pn.pane.Alert:
    """A message box for an exception: its one-line message for a RecLens error, else a generic
    message (the traceback goes to the server log, never to the browser)."""
    if isinstance(err, ReclensError):
        return friendly(str(err))
    log.error("dashboard error: %s", "".join(traceback.format_exception(err)))
    return friendly(
        f"Something went wrong while drawing this part ({type(err).__name__}). The server log has "
        "the details; try another selection or reload the page.",
        "danger",
    )


def guarded(method: Callable[..., Any]) -> Callable[..., Any]:
    """Wrap a render method so any exception becomes a friendly message pane."""

    @functools.wraps(method)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        start = time.perf_counter()
        try:
            return method(*args, **kwargs)
        except Exception as err:  # noqa: BLE001 - turned into a message pane
            return error_pane(err)
        finally:
            log.debug("%s took %.3f s", method.__qualname__, time.perf_counter() - start)

    return wrapper


def no_selection(what: str) -> pn.pane.Alert:
    """The message shown before something is selected."""
    return friendly(what, "info")


def csv_download(frame_fn: Callable[[], pd.DataFrame], filename: str, label: str = "CSV") -> Any:
    """A :class:`pn.widgets.FileDownload` that writes ``frame_fn()`` as CSV when clicked."""

    def make() -> io.StringIO:
        try:
            frame = frame_fn()
        except Exception as err:  # noqa: BLE001 - a download must not crash the session
            log.warning("CSV export failed: %s", err)
            frame = pd.DataFrame({"error": [str(err)]})
        buffer = io.StringIO()
        frame.to_csv(buffer, index=False)
        buffer.seek(0)
        return buffer

    return pn.widgets.FileDownload(
        callback=make,
        filename=filename,
        label=f"\u2b07 {label}",
        color="light",
        width=130,
        margin=(5, 10),
    )


def live(method: Callable[..., Any]) -> pn.viewable.Viewable:
    """A panel that re-renders ``method`` when its dependencies change, lazily: a tab that is
    not shown is not recomputed until it is shown (with a loading indicator meanwhile)."""
    return pn.panel(method, lazy=True, loading_indicator=True)


def hv_pane(obj: Any, height: int | None = None) -> pn.pane.HoloViews:
    """A HoloViews pane that stretches to the width of its container."""
    kwargs: dict[str, Any] = {"sizing_mode": "stretch_width", "linked_axes": False}
    if height is not None:
        kwargs["min_height"] = height
    return pn.pane.HoloViews(obj, **kwargs)


class TabView(pn.viewable.Viewer):
    """Base of every tab: the shared selection and the engine service."""

    state = param.ClassSelector(class_=Selection, doc="The page's shared selection.")
    service = param.ClassSelector(class_=EngineService, doc="The server's engine service.")

    def dispose(self) -> None:
        """Drop per-session caches (called when the browser session closes)."""
        for name in list(vars(self)):
            if name.startswith("_cache"):
                vars(self)[name].clear()


def empty_element(message: str) -> hv.Text:
    """A blank plot area with a centred message (for plots with nothing to draw)."""
    return hv.Text(0.5, 0.5, message).opts(
        xaxis=None, yaxis=None, toolbar=None, responsive=True, height=200
    )
