"""Helpers every view shares: captions, friendly error panes, guarded rendering, CSV export."""

from __future__ import annotations

import functools
import io
import logging
import time
import traceback
from collections.abc import Callable
from typing import Any

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


def error_message(err: BaseException) -> tuple[str, str]:
    """The text and alert kind shown for an exception: its one-line message for a RecLens error,
    else a generic message (the traceback goes to the server log, never to the browser)."""
    if isinstance(err, ReclensError):
        return str(err), "warning"
    log.error("dashboard error: %s", "".join(traceback.format_exception(err)))
    return (
        f"Something went wrong while drawing this part ({type(err).__name__}). The server log has "
        "the details; try another selection or reload the page.",
        "danger",
    )


def error_pane(err: BaseException) -> pn.pane.Alert:
    """A message box for an exception (see :func:`error_message`)."""
    return friendly(*error_message(err))


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


class Slot:
    """A stable part of the page that is updated in place instead of rebuilt.

    ``layout`` holds ``body`` (a column of the given components) and a message box;
    :meth:`show` shows the body, :meth:`say` and :meth:`fail` the message box instead. Only
    changed properties travel to the browser, never new components.
    """

    def __init__(self, *content: Any) -> None:
        self.body = pn.Column(*content, sizing_mode="stretch_width", margin=0)
        self.message = pn.pane.Alert(
            "", alert_type="info", visible=False, margin=(5, 10), sizing_mode="stretch_width"
        )
        self.layout = pn.Column(self.body, self.message, sizing_mode="stretch_width", margin=0)

    def show(self) -> None:
        """Show the body, hide the message."""
        if not self.body.visible:
            self.body.visible = True
        if self.message.visible:
            self.message.visible = False

    def say(self, text: str, kind: str = "info") -> None:
        """Show ``text`` in the message box instead of the body."""
        if self.body.visible:
            self.body.visible = False
        self.message.param.update(object=text, alert_type=kind, visible=True)

    def fail(self, err: BaseException) -> None:
        """Show the friendly message of ``err`` instead of the body."""
        self.say(*error_message(err))

    def fill(self, method: Callable[[], Any]) -> pn.Column:
        """Run ``method`` (which updates the body's components in place; it may raise) and show
        the body, or the message; returns :attr:`body`."""
        start = time.perf_counter()
        try:
            method()
        except Message as msg:
            self.say(str(msg), "info")
        except Exception as err:  # noqa: BLE001 - shown as a message in place of the body
            self.fail(err)
        else:
            self.show()
        finally:
            log.debug("%s took %.3f s", method.__qualname__, time.perf_counter() - start)
        return self.body


class Message(Exception):
    """Raised by a :meth:`Slot.fill` method to show an informative message (not an error)."""


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
