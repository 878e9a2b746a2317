"""Embedding maps: 2-D projections of item or user embeddings, and the selected user's overlay.

The map frames are pandas tables with ``x``, ``y``, ``id`` (raw id), ``label`` (title or user
id), hover columns and the colour column. A categorical colouring gets a legend (one distinct
colour per value, at most :data:`MAX_CATEGORIES`; rarer values share ``other``), a numeric one
a colour bar. Above :data:`RASTER_THRESHOLD` points the map is rasterized with Datashader (a
:class:`holoviews.streams.Tap` then finds the nearest point), with the same legend or colour bar.
"""

from __future__ import annotations

from collections.abc import Sequence

import colorcet
import datashader as ds
import holoviews as hv
import numpy as np
import pandas as pd
from holoviews.operation.datashader import datashade, dynspread, rasterize

from app.dashboard.plots import HIGHLIGHT, PALETTE

RASTER_THRESHOLD = 50_000
"""Maps with more points than this are rasterized instead of drawn point by point."""
MAX_CATEGORIES = 24
"""A categorical colouring shows at most this many values; the rarest beyond share ``other``."""
OTHER = "other"
_GLASBEY = [c for c in colorcet.palette["glasbey_category10"][10:] if c.upper() not in PALETTE]
CATEGORY_COLOURS: tuple[str, ...] = PALETTE + tuple(_GLASBEY[: MAX_CATEGORIES - len(PALETTE)])
"""One distinct colour per category: the dashboard's palette, then Glasbey's (colorcet)."""
LEGEND_STYLE = {"label_text_font_size": "8pt", "glyph_height": 12, "glyph_width": 12,
                "spacing": 0, "padding": 4, "margin": 4}  # fmt: skip
"""A compact legend: 24 categories and the four highlight layers fit beside a 460 px map."""


def is_categorical(series: pd.Series) -> bool:
    """Whether a colour column is categorical (strings, categories, booleans, few integers)."""
    if series.dtype == object or isinstance(series.dtype, pd.CategoricalDtype):
        return True
    if pd.api.types.is_bool_dtype(series) or pd.api.types.is_string_dtype(series):
        return True
    return pd.api.types.is_integer_dtype(series) and series.nunique() <= MAX_CATEGORIES


def category_labels(series: pd.Series, limit: int = MAX_CATEGORIES) -> pd.Series:
    """``series`` as text labels (missing values ``unknown``), at most ``limit`` of them: when
    there are more, the ``limit - 1`` most frequent are kept and the rest become ``other``."""
    labels = series.astype(object).where(series.notna(), "unknown").astype(str)
    counts = labels.value_counts()
    if len(counts) <= limit:
        return labels
    keep = set(counts.index[: limit - 1])
    return labels.where(labels.isin(keep), OTHER)


def colour_key(labels: pd.Series) -> dict[str, str]:
    """A distinct colour per label (sorted; ``other`` last, in grey)."""
    keys = sorted(set(labels) - {OTHER})
    key = {k: CATEGORY_COLOURS[i % len(CATEGORY_COLOURS)] for i, k in enumerate(keys)}
    if OTHER in set(labels):
        key[OTHER] = "#BDBDBD"
    return key


def log_scale(values: pd.Series) -> bool:
    """Whether a numeric colouring reads better on a log scale (positive, spans > 100x)."""
    v = pd.to_numeric(values, errors="coerce").dropna()
    return bool(len(v) and (v > 0).all() and v.max() > 100 * v.min())


def embedding_map(
    frame: pd.DataFrame,
    color: str,
    hover: Sequence[str] = (),
    title: str = "",
    threshold: int = RASTER_THRESHOLD,
) -> hv.Element | hv.DynamicMap:
    """Scatter of the projected embeddings coloured by ``color``, with its legend (categories)
    or colour bar (numbers).

    ``frame`` needs ``x``, ``y``, ``id``, ``label``, ``color`` and the ``hover`` columns. Returns
    :class:`hv.Points` (with hover and tap) up to ``threshold`` rows, a rasterized map above (a
    datashaded image with its legend for categories, a rasterized mean with a colour bar for
    numbers).
    """
    vdims = ["id", "label", color, *[h for h in hover if h not in ("id", "label", color)]]
    data = frame.loc[:, ["x", "y", *vdims]].copy()
    categorical = is_categorical(data[color])
    key: dict[str, str] = {}
    if categorical:
        data[color] = category_labels(data[color])
        key = colour_key(data[color])
    else:
        data[color] = pd.to_numeric(data[color], errors="coerce").astype(np.float64)
    points = hv.Points(data, ["x", "y"], vdims)
    common = {"responsive": True, "height": 460, "xaxis": None, "yaxis": None, "title": title}
    if len(data) > threshold:
        if categorical:
            # HoloViews gives a datashaded count_cat image its legend (one entry per key).
            shaded = datashade(points, aggregator=ds.count_cat(color), color_key=key)
            return dynspread(shaded).opts(**common)
        return rasterize(points, aggregator=ds.mean(color)).opts(
            cmap="viridis", colorbar=True, clabel=color, cnorm="log" if log_scale(data[color])
            else "linear", tools=["hover"], **common,
        )  # fmt: skip
    style: dict = {
        "color": color,
        "size": 6 if len(data) < 5000 else 3,
        "alpha": 0.75,
        "tools": ["hover", "tap", "box_select"],
        "nonselection_alpha": 0.75,
        "selection_alpha": 1.0,
        "line_color": None,
    }
    if categorical:
        style.update(cmap=key, show_legend=True)
    else:
        style.update(cmap="viridis", colorbar=True, clabel=color, logz=log_scale(data[color]))
    return points.opts(**style, **common)


def with_marks(base: hv.Element | hv.DynamicMap, marks: hv.DynamicMap) -> hv.DynamicMap:
    """``base`` (a map) under the highlight layers ``marks``, the legend compact on the right."""
    return (base * marks).opts(legend_position="right", legend_opts=LEGEND_STYLE)


def _layer(frame: pd.DataFrame, ids: Sequence[str], label: str) -> hv.Points:
    """The rows of ``frame`` whose ``id`` is in ``ids``, as points labelled ``label``."""
    index = frame.set_index("id", drop=False)
    keep = [i for i in ids if i in index.index]
    rows = index.loc[keep, ["x", "y", "id", "label"]].reset_index(drop=True)
    return hv.Points(rows, ["x", "y"], ["id", "label"], label=label)


def _ring(frame: pd.DataFrame, selected: Sequence[str]) -> hv.Points:
    return _layer(frame, selected, "selected").opts(
        marker="circle", size=22, fill_alpha=0, line_color="#D62728", line_width=4
    )


def highlight_layer(
    frame: pd.DataFrame,
    history: Sequence[str] = (),
    recommended: Sequence[str] = (),
    selected: Sequence[str] = (),
    heldout: Sequence[str] = (),
) -> hv.Overlay:
    """The selected user's history, recommendations, held-out items and the selected point(s).

    Each group is drawn from the rows of ``frame`` whose ``id`` is listed; the overlay always has
    the same four layers (some may be empty), so it can update a live map in place.
    """
    return (
        _layer(frame, history, "history").opts(
            marker="circle", size=10, fill_alpha=0, line_color="black", line_width=2,
            tools=["hover"],
        )
        * _layer(frame, heldout, "held out").opts(
            marker="square", size=10, fill_alpha=0, line_color=PALETTE[2], line_width=2,
            tools=["hover"],
        )
        * _layer(frame, recommended, "recommended").opts(
            marker="star", size=16, color=HIGHLIGHT, line_color="black", tools=["hover"]
        )
        * _ring(frame, selected)
    )  # fmt: skip


def selection_layer(frame: pd.DataFrame, selected: Sequence[str] = ()) -> hv.Overlay:
    """Only the selected point(s) ringed (the user map: its legend names what it draws)."""
    return hv.Overlay([_ring(frame, selected)])


def nearest_row(frame: pd.DataFrame, x: float, y: float) -> int:
    """Row position of the point of ``frame`` (``x``, ``y`` columns) nearest to (x, y)."""
    if frame.empty:
        raise ValueError("the map has no points")
    d = (frame["x"].to_numpy() - x) ** 2 + (frame["y"].to_numpy() - y) ** 2
    return int(np.argmin(d))
