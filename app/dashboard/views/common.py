"""Helpers every view shares: text panes, captions, friendly error panes, guarded rendering,
CSV export.

Every Markdown or message pane of the dashboard is a :class:`TextPane` or a :class:`MessagePane`:
they render :class:`Markup` (built by :func:`md` from the code's own template, every value
escaped) as Markdown and anything else as plain text, so a value from a URL, a widget, a dataset
file or a run folder is never read as HTML or Markdown.
"""

from __future__ import annotations

import functools
import html
import io
import logging
import re
import time
import traceback
import weakref
from collections.abc import Callable
from pathlib import Path
from typing import Any, ClassVar

import pandas as pd
import panel as pn
import param

from app.dashboard.engine_service import EngineService
from app.dashboard.state import Selection
from data.errors import ReclensError

log = logging.getLogger("reclens.dashboard")

_MARKDOWN_PUNCTUATION = re.compile(r"([\\`*_{}\[\]()#+\-.!|~:])")
_PATH = re.compile(r"(?<![\w.:/])(?:~|\.{1,2})?(?:/[\w.@+,=-]+){2,}/?")


class Markup(str):
    """Markdown that is safe to render: one of the code's own templates whose interpolated
    values were all escaped (made only by :func:`md`)."""


def escape_text(value: object) -> str:
    """``value`` as Markdown that renders as exactly its text: HTML special characters become
    entities, Markdown punctuation is backslash-escaped (``:`` too, so that neither a URL scheme
    nor an emoji code is recognised), line breaks become spaces."""
    text = " ".join(str(value).splitlines())
    return html.escape(_MARKDOWN_PUNCTUATION.sub(r"\\\1", text), quote=True)


def md(template: str, /, **values: object) -> Markup:
    """Markdown from ``template`` (a literal of the code, never data) with every ``{name}``
    replaced by the escaped text of ``values[name]`` (format specs such as ``{n:,}`` apply to
    the value first)."""
    return Markup(template.format_map({name: _Escaped(v) for name, v in values.items()}))


class _Escaped:
    """A value that formats (with any format spec) to its escaped text."""

    def __init__(self, value: object) -> None:
        self.value = value

    def __format__(self, spec: str) -> str:
        return escape_text(format(self.value, spec))


def as_markup(text: object) -> Markup:
    """``text`` itself when it is :class:`Markup`, else its escaped plain text."""
    if isinstance(text, Markup):
        return text
    return Markup(escape_text("" if text is None else text))


TEXT_ONLY: dict[str, Any] = {"disable_math": True, "renderer_options": {"linkify": False}}
"""Pane settings that keep a text as written: the browser's MathJax never typesets ``$$...$$``
(a TeX ``\\href`` would be a link) and Markdown never turns a URL in the text into a link."""
_MATH_TO_MODEL: dict[str, str | None] = {"disable_math": "disable_math"}
"""Panel's Markdown pane keeps ``disable_math`` to itself (renamed to None), so its model, whose
``disable_math`` the browser reads, would typeset math anyway: the text panes pass it on."""


class TextPane(pn.pane.Markdown):
    """A Markdown pane that renders only :class:`Markup`; any other object is shown as text
    (with :data:`TEXT_ONLY`)."""

    priority: ClassVar[float | bool | None] = 0
    _rename: ClassVar[dict[str, str | None]] = {**pn.pane.Markdown._rename, **_MATH_TO_MODEL}

    def __init__(self, object: Any = None, **params: Any) -> None:
        super().__init__(object, **{**TEXT_ONLY, **params})

    def _transform_object(self, obj: Any) -> dict[str, Any]:
        return super()._transform_object(as_markup(obj))


MESSAGE_CSS = """
:host { max-height: 9em; overflow-y: auto; }
:host, :host * { overflow-wrap: anywhere; word-break: break-word; white-space: normal; }
"""
"""A message box wraps long words and scrolls past a few lines instead of overflowing."""
SAME_MESSAGE = "The same message as above."


class MessagePane(pn.pane.Alert):
    """An alert box that renders only :class:`Markup`; any other object is shown as text.

    A message already shown by another visible message box of the same page (a bad user id
    reported at the top and by every panel that needs the user) reads :data:`SAME_MESSAGE`
    instead of repeating it.
    """

    priority: ClassVar[float | bool | None] = 0
    _rename: ClassVar[dict[str, str | None]] = {**pn.pane.Alert._rename, **_MATH_TO_MODEL}
    _shown: ClassVar[weakref.WeakKeyDictionary[Any, dict[str, Any]]] = weakref.WeakKeyDictionary()

    def __init__(self, object: Any = None, **params: Any) -> None:
        params["stylesheets"] = [*params.get("stylesheets", []), MESSAGE_CSS]
        super().__init__(object, **{**TEXT_ONLY, **params})

    def _transform_object(self, obj: Any) -> dict[str, Any]:
        text = as_markup(obj)
        if text and self._repeats(text):
            text = Markup(escape_text(SAME_MESSAGE))
        return super()._transform_object(text)

    def _repeats(self, text: str) -> bool:
        """Whether another visible message box of this page shows ``text`` (else this box
        becomes the one that shows it)."""
        doc = pn.state.curdoc
        if doc is None:
            return False
        shown = self._shown.setdefault(doc, {})
        owner = shown.get(text)
        other = owner() if owner is not None else None
        if other is not None and other is not self and other.visible and other._models:
            return True
        shown[text] = weakref.ref(self)
        return False


def markdown(text: object = "", **params: Any) -> TextPane:
    """A text pane (see :class:`TextPane`)."""
    return TextPane(text, **params)


def divider() -> TextPane:
    """A horizontal rule. (Panel's ``Divider`` builds its model without the page's resource
    settings, so its stylesheet could point at Panel's CDN.)"""
    return TextPane(md("---"), margin=(0, 10))


def caption(text: object) -> TextPane:
    """The one-line caption under a plot: what it shows and how to read it."""
    return TextPane(text, css_classes=["reclens-caption"], margin=(0, 10, 12, 10))


def friendly(message: object, kind: str = "warning", **params: Any) -> MessagePane:
    """A friendly message box in the page (see :class:`MessagePane`)."""
    params = {"margin": (5, 10), "sizing_mode": "stretch_width", **params}
    return MessagePane(message, alert_type=kind, **params)


def multichoice_label(text: object) -> str:
    """An option label for a ``MultiChoice`` box, whose browser widget (Choices.js) renders
    labels as HTML: the text with HTML special characters as entities."""
    return html.escape(str(text), quote=True)


def table_title(text: object) -> str:
    """A column title for a Tabulator, whose browser widget renders titles as HTML."""
    return html.escape(str(text), quote=True)


def hide_paths(message: str) -> str:
    """``message`` with file system paths replaced by ``<path>`` (the page never shows where
    the server keeps its files; the CLI and the server log still do)."""
    return _PATH.sub("<path>", message)


def source_label(source: str) -> str:
    """A dataset's source for the page: a name as it is, a file or folder by its last part
    only (``hide_paths``' rule: the page never shows where the server keeps its files)."""
    if hide_paths(source) == source:
        return source
    return f"from {Path(source.rstrip('/')).name or 'a local file'}"


def error_message(err: BaseException) -> tuple[str, str]:
    """The text and alert kind shown for an exception: its one-line message for a RecLens error
    (file system paths hidden), else a generic message (the traceback goes to the server log,
    never to the browser)."""
    if isinstance(err, ReclensError):
        return hide_paths(str(err)), "warning"
    log.error("dashboard error: %s", "".join(traceback.format_exception(err)))
    return (
        f"Something went wrong while drawing this part ({type(err).__name__}). The server log has "
        "the details; try another selection or reload the page.",
        "danger",
    )


def error_pane(err: BaseException) -> MessagePane:
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


def no_selection(what: object) -> MessagePane:
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
        self.message = friendly("", "info", visible=False)
        self.layout = pn.Column(self.body, self.message, sizing_mode="stretch_width", margin=0)

    def show(self) -> None:
        """Show the body, hide the message."""
        if not self.body.visible:
            self.body.visible = True
        if self.message.visible:
            self.message.visible = False

    def say(self, text: object, kind: str = "info") -> None:
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
            self.say(msg.text, "info")
        except Exception as err:  # noqa: BLE001 - shown as a message in place of the body
            self.fail(err)
        else:
            self.show()
        finally:
            log.debug("%s took %.3f s", method.__qualname__, time.perf_counter() - start)
        return self.body


class Message(Exception):
    """Raised by a :meth:`Slot.fill` method to show an informative message (not an error)."""

    def __init__(self, text: object) -> None:
        super().__init__(str(text))
        self.text = text


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
