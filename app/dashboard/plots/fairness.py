"""Fairness and diversity plots: a user against the population, exposure Lorenz curve,
popularity bias and group comparison."""

from __future__ import annotations

import holoviews as hv
import numpy as np
import pandas as pd

from app.dashboard.plots import HIGHLIGHT, MUTED, PALETTE, as_drawn, as_title


def user_marker(value: float | None) -> hv.VLines:
    """The selected user's value as a vertical line (none when ``value`` is missing or NaN)."""
    ok = value is not None and np.isfinite(value)
    return hv.VLines([float(value)] if ok else []).opts(color=HIGHLIGHT, line_width=3)


def metric_distribution(
    values: np.ndarray,
    marker: hv.VLines | hv.DynamicMap,
    metric: str,
    title: str = "",
    bins: int = 25,
) -> hv.Overlay | hv.DynamicMap:
    """Histogram of a per-user metric over all evaluated users under ``marker`` (the selected
    user's :func:`user_marker`, or a DynamicMap of it that follows the selection).

    ``values``: [n_users] (NaNs are left out); ``title``: the metric in words (default
    ``metric``).
    """
    values = np.asarray(values, dtype=np.float64)
    values = values[np.isfinite(values)]
    if values.size == 0:
        values = np.array([0.0])
    lo, hi = float(values.min()), float(values.max())
    if hi <= lo:
        hi = lo + 1e-9
    freq, edges = np.histogram(values, bins=bins, range=(lo, hi))
    dim = hv.Dimension(metric, label=title or metric)
    hist = hv.Histogram((edges, freq), kdims=dim, vdims="users").opts(
        color=MUTED, line_color="white", tools=["hover"]
    )
    label = title or metric
    small = {"fontsize": {"title": "9pt"}} if len(label) > 28 else {}  # a long name fits a third
    return (hist * marker).opts(
        responsive=True, height=190, title=label, show_legend=False, toolbar=None, **small
    )


def lorenz_curve(
    exposure: np.ndarray, gini: float | None, gini_corrected: float | None
) -> hv.Overlay:
    """Lorenz curve of item exposure: share of items (least exposed first) against the share
    of all recommendation slots they receive; the diagonal is perfect equality."""
    e = np.sort(np.asarray(exposure, dtype=np.float64))
    n = e.shape[0]
    total = e.sum()
    cum = np.concatenate([[0.0], np.cumsum(e) / total]) if total > 0 else np.linspace(0, 1, n + 1)
    share = np.linspace(0.0, 1.0, n + 1)
    frame = pd.DataFrame({"share of items": share, "share of exposure": cum})
    area = hv.Area(frame, "share of items", "share of exposure").opts(
        color=HIGHLIGHT, alpha=0.25, line_width=0
    )
    curve = hv.Curve(frame, "share of items", "share of exposure", label="exposure").opts(
        color=HIGHLIGHT, line_width=3, tools=["hover"]
    )
    diag = hv.Curve(([0, 1], [0, 1]), "share of items", "share of exposure", label="equality")
    diag = diag.opts(color="black", line_dash="dashed")
    g = "n/a" if gini is None or not np.isfinite(gini) else f"{gini:.3f}"
    gc = (
        "n/a"
        if gini_corrected is None or not np.isfinite(gini_corrected)
        else f"{gini_corrected:.3f}"
    )
    return (area * curve * diag).opts(
        responsive=True,
        height=330,
        title=f"Exposure Lorenz curve \u2014 Gini {g} (corrected {gc})",
        legend_position="top_left",
    )


def popularity_bias(frame: pd.DataFrame) -> hv.Points:
    """Items by training popularity (x) and how many lists recommend them (y), log-log (+1).

    ``frame``: ``id``, ``title``, ``genre``, ``popularity``, ``exposure``.
    """
    data = frame.assign(
        **{"popularity + 1": frame["popularity"] + 1.0, "recommended + 1": frame["exposure"] + 1.0}
    )
    return hv.Points(
        data, ["popularity + 1", "recommended + 1"], ["title", "genre", "popularity", "exposure"]
    ).opts(
        logx=True,
        logy=True,
        color=PALETTE[0],
        alpha=0.6,
        size=6,
        tools=["hover"],
        responsive=True,
        height=330,
        title="Popularity bias",
    )


def group_bars(means: pd.DataFrame, metric: str, by: str, label: str = "") -> hv.Bars:
    """Mean of ``metric`` per user group. ``means``: ``group``, ``n_users`` and metric columns;
    ``label``: the metric in words (default ``metric``)."""
    data = means[["group", "n_users", metric]].copy()
    data["group"] = data["group"].astype(str)
    label = label or metric
    value = hv.Dimension(metric, label=label)
    return hv.Bars(data, hv.Dimension("group", label=as_drawn(by)), [value, "n_users"]).opts(
        color=PALETTE[0],
        tools=["hover"],
        responsive=True,
        height=300,
        title=as_title(f"Mean {label} by {by}"),
        xrotation=30 if len(data) > 6 else 0,
    )
