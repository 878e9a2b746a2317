"""Pure plot functions: engine results in, HoloViews elements out (no Panel here).

Importing this package selects HoloViews' Bokeh backend so ``.opts`` with Bokeh options works
in tests and scripts as well as in the served app.
"""

from __future__ import annotations

import re

import holoviews as hv
import holoviews.plotting.bokeh  # noqa: F401  (registers the Bokeh backend's options)

hv.Store.set_current_backend("bokeh")

PALETTE: tuple[str, ...] = (
    "#4C78A8", "#F58518", "#54A24B", "#E45756", "#72B7B2", "#EECA3B", "#B279A2", "#FF9DA6",
    "#9D755D", "#BAB0AC", "#2F4B7C", "#A05195", "#D45087", "#665191", "#003F5C", "#FFA600",
    "#7A5195", "#EF5675",
)  # fmt: skip
"""Categorical colours (colour-blind friendly first ten, then more)."""

POSITIVE = "#2E7D32"
NEGATIVE = "#C62828"
HIGHLIGHT = "#E6550D"
MUTED = "#9E9E9E"


_TEX_OPENING = re.compile(r"\$(?=\$)|\\(?=[\[(])")
"""The first character of each TeX opening delimiter (a run of dollars: every one but the last)."""


def as_drawn(text: str) -> str:
    """``text`` for a plot title or axis label, drawn as written: BokehJS typesets a string that
    holds ``$$...$$``, ``\\[...\\]`` or ``\\(...\\)`` with MathJax, so a zero-width space goes
    inside each opening delimiter (it draws as nothing)."""
    return _TEX_OPENING.sub(lambda m: m[0] + "\u200b", text)


def as_title(text: str) -> str:
    """``text`` as a HoloViews plot title, drawn as written: :func:`as_drawn`, and its braces
    doubled (HoloViews fills a title in as a format string: ``{x}`` in a dataset's title was a
    missing field and the plot failed)."""
    return as_drawn(text).replace("{", "{{").replace("}", "}}")
