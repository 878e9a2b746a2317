"""Embedding maps: 2-D projections of item or user embeddings, and the selected user's overlay.

The map frames are pandas tables with ``x``, ``y``, ``id`` (raw id), ``label`` (title or user
id), hover columns and the colour column. Above :data:`RASTER_THRESHOLD` points the map is
rasterized with Datashader (a :class:`holoviews.streams.Tap` then finds the nearest point).
"""

from __future__ import annotations

from collections.abc import Sequence

import datashader as ds
import holoviews as hv
import numpy as np
import pandas as pd
from holoviews.operation.datashader import datashade, dynspread, rasterize

from app.dashboard.plots import HIGHLIGHT, PALETTE

RASTER_THRESHOLD = 50_000
"""Maps with more points than this are rasterized instead of drawn point by point."""


def is_categorical(series: pd.Series) -> bool:
    """Whether a colour column is categorical (strings, categories, booleans, few integers)."""
    if series.dtype == object or isinstance(series.dtype, pd.CategoricalDtype):
        return True
    if pd.api.types.is_bool_dtype(series) or pd.api.types.is_string_dtype(series):
        return True
    return pd.api.types.is_integer_dtype(series) and series.nunique() <= 24


def embedding_map(
    frame: pd.DataFrame,
    color: str,
    hover: Sequence[str] = (),
    title: str = "",
    threshold: int = RASTER_THRESHOLD,
) -> hv.Element | hv.DynamicMap:
    """Scatter of the projected embeddings coloured by ``color``.

    ``frame`` needs ``x``, ``y``, ``id``, ``label``, ``color`` and the ``hover`` columns. Returns
    :class:`hv.Points` (with hover and tap) up to ``threshold`` rows, a rasterized map above.
    """
    vdims = ["id", "label", color, *[h for h in hover if h not in ("id", "label", color)]]
    data = frame.loc[:, ["x", "y", *vdims]].copy()
    categorical = is_categorical(data[color])
    if categorical:
        data[color] = data[color].astype(str)
    points = hv.Points(data, ["x", "y"], vdims, **({"label": title} if title else {}))
    common = {"responsive": True, "height": 460, "xaxis": None, "yaxis": None}
    if len(data) > threshold:
        if categorical:
            keys = sorted(data[color].unique())
            key = {k: PALETTE[i % len(PALETTE)] for i, k in enumerate(keys)}
            shaded = datashade(points, aggregator=ds.count_cat(color), color_key=key)
            return dynspread(shaded).opts(**common, title=title)
        return rasterize(points, aggregator=ds.mean(color)).opts(
            cmap="viridis", colorbar=True, cnorm="log", **common, title=title, tools=["hover"]
        )
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
        style.update(cmap=list(PALETTE), show_legend=len(data[color].unique()) <= 18)
    else:
        style.update(cmap="viridis", colorbar=True, logz=bool((data[color] > 0).all()))
    return points.opts(**style, **common, title=title, legend_position="right")


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
    index = frame.set_index("id", drop=False)

    def pick(ids: Sequence[str]) -> pd.DataFrame:
        keep = [i for i in ids if i in index.index]
        return index.loc[keep, ["x", "y", "id", "label"]].reset_index(drop=True)

    def layer(ids: Sequence[str], label: str) -> hv.Points:
        return hv.Points(pick(ids), ["x", "y"], ["id", "label"], label=label)

    return (
        layer(history, "history").opts(
            marker="circle", size=10, fill_alpha=0, line_color="black", line_width=2,
            tools=["hover"],
        )
        * layer(heldout, "held out").opts(
            marker="square", size=10, fill_alpha=0, line_color=PALETTE[2], line_width=2,
            tools=["hover"],
        )
        * layer(recommended, "recommended").opts(
            marker="star", size=16, color=HIGHLIGHT, line_color="black", tools=["hover"]
        )
        * layer(selected, "selected").opts(
            marker="circle", size=22, fill_alpha=0, line_color="#D62728", line_width=4
        )
    )  # fmt: skip


def nearest_row(frame: pd.DataFrame, x: float, y: float) -> int:
    """Row position of the point of ``frame`` (``x``, ``y`` columns) nearest to (x, y)."""
    if frame.empty:
        raise ValueError("the map has no points")
    d = (frame["x"].to_numpy() - x) ** 2 + (frame["y"].to_numpy() - y) ** 2
    return int(np.argmin(d))
