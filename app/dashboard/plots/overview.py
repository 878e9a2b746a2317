"""Overview plots: dataset card charts, the runs trade-off scatter and live training curves."""

from __future__ import annotations

from collections.abc import Sequence

import holoviews as hv
import numpy as np
import pandas as pd

from app.dashboard.plots import HIGHLIGHT, MUTED, PALETTE


def long_tail(item_counts: np.ndarray) -> hv.Overlay:
    """Item popularity sorted from the most to the least interacted item (log y).

    ``item_counts``: interactions per item [n_items]. The items that gather the first 80% of
    interactions (the "head") are drawn in the highlight colour, the tail in grey.
    """
    counts = np.sort(np.asarray(item_counts, dtype=np.float64))[::-1]
    rank = np.arange(1, counts.shape[0] + 1)
    share = np.cumsum(counts) / max(counts.sum(), 1.0)
    head = share <= 0.8
    frame = pd.DataFrame(
        {"rank": rank, "interactions": np.maximum(counts, 0.5), "head": head, "share": share}
    )
    top = float(max(counts.max(initial=1.0), 1.0)) * 1.5
    opts = {"logy": True, "tools": ["hover"], "line_width": 0, "ylim": (0.5, top)}
    head_area = hv.Area(frame[frame["head"]], "rank", "interactions", label="head (80%)")
    tail_area = hv.Area(frame[~frame["head"]], "rank", "interactions", label="long tail")
    return (
        head_area.opts(color=HIGHLIGHT, alpha=0.7, **opts)
        * tail_area.opts(color=MUTED, alpha=0.7, **opts)
    ).opts(
        xlabel="item rank by popularity",
        ylabel="interactions",
        legend_position="top_right",
        responsive=True,
        height=240,
        title="Long tail of item popularity",
    )


def activity_histogram(user_counts: np.ndarray, bins: int = 30) -> hv.Histogram:
    """Histogram of interactions per user on logarithmic bins. ``user_counts``: [n_users]."""
    counts = np.asarray(user_counts, dtype=np.float64)
    counts = counts[counts > 0]
    if counts.size == 0:
        edges, freq = np.array([1.0, 2.0]), np.array([0])
    else:
        lo, hi = counts.min(), max(counts.max(), counts.min() + 1)
        edges = np.unique(np.geomspace(lo, hi * 1.0001, bins + 1))
        freq, edges = np.histogram(counts, bins=edges)
    # 1-2-5 ticks: Bokeh's own log ticks label every hundred past 100 and the labels collide.
    nice = [m * 10**e for e in range(8) for m in (1, 2, 5)]
    ticks = [t for t in nice if edges[0] <= t <= edges[-1]]
    return hv.Histogram((edges, freq), kdims="interactions per user", vdims="users").opts(
        color=PALETTE[0],
        logx=True,
        xticks=ticks or None,
        tools=["hover"],
        responsive=True,
        height=240,
        title="User activity",
        line_color="white",
    )


def tradeoff_scatter(board: pd.DataFrame, x: str, y: str, selected: str = "") -> hv.Overlay:
    """Runs as points on two metrics (``x`` and ``y`` columns of ``board``), labelled by run.

    ``board`` has a ``run`` and a ``model`` column plus metric columns; ``selected`` names the
    run drawn larger and in the highlight colour. Runs missing either metric are left out.
    """
    cols = ["run", "model", x, y] if x != y else ["run", "model", x]
    frame = board.loc[:, [c for c in cols if c in board.columns]].dropna()
    if x not in frame.columns or y not in frame.columns:
        frame = pd.DataFrame({"run": [], "model": [], x: [], y: []})
    frame = frame.assign(is_selected=frame["run"] == selected)
    points = hv.Points(frame, [x, y], ["run", "model", "is_selected"]).opts(
        color="model",
        cmap=list(PALETTE),
        size=12,
        tools=["hover"],
        line_color="black",
        show_legend=True,
    )
    chosen = hv.Points(frame[frame["is_selected"]], [x, y], ["run"]).opts(
        size=22, fill_alpha=0, line_color=HIGHLIGHT, line_width=3
    )
    labels = hv.Labels(frame, [x, y], "model").opts(
        text_font_size="9pt", yoffset=0, xoffset=0, text_align="left", text_baseline="bottom"
    )
    return (points * chosen * labels).opts(
        responsive=True, height=300, title=f"{y} against {x}", legend_position="right"
    )


def training_curves(reports: Sequence[dict], metric_name: str = "valid metric") -> hv.Layout:
    """Loss and validation metric per epoch from a list of ``{"epoch", "loss", "valid"}`` dicts."""
    frame = pd.DataFrame(list(reports), columns=["epoch", "loss", "valid"]).astype(float)
    loss = hv.Curve(frame, "epoch", "loss").opts(
        color=PALETTE[1], tools=["hover"], responsive=True, height=200, title="Training loss"
    )
    loss = loss * hv.Scatter(frame, "epoch", "loss").opts(color=PALETTE[1], size=6)
    valid = frame.dropna(subset=["valid"])
    metric = hv.Curve(valid, "epoch", ("valid", metric_name)).opts(
        color=PALETTE[2], tools=["hover"], responsive=True, height=200, title=metric_name
    )
    metric = metric * hv.Scatter(valid, "epoch", ("valid", metric_name)).opts(
        color=PALETTE[2], size=6
    )
    return (loss + metric).cols(2)
