"""Overview plots: dataset card charts, the runs trade-off scatter and live training curves."""

from __future__ import annotations

import zlib
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


MODEL_ORDER: tuple[str, ...] = (
    "pop", "itemknn", "ease", "fism", "fism-neumf", "multvae", "multdae", "diffrec", "ials",
    "bpr", "lightgcn", "mf", "neumf",
)  # fmt: skip
"""The models with a fixed colour (:func:`model_colour`), in palette order."""


def _span(values: pd.Series) -> float:
    """The range of ``values`` (0 for fewer than two)."""
    return float(values.max() - values.min()) if len(values) > 1 else 0.0


def model_colour(model: str) -> str:
    """One fixed colour per model name, the same in every view and whatever runs are listed
    (a model not in :data:`MODEL_ORDER` gets one from a checksum of its name)."""
    if model in MODEL_ORDER:
        return PALETTE[MODEL_ORDER.index(model) % len(PALETTE)]
    return PALETTE[zlib.crc32(model.encode("utf-8")) % len(PALETTE)]


def tradeoff_scatter(
    board: pd.DataFrame,
    x: str,
    y: str,
    selected: str = "",
    x_label: str = "",
    y_label: str = "",
) -> hv.Overlay:
    """Runs as points on two metrics (``x`` and ``y`` columns of ``board``), labelled by model.

    ``board`` has ``run`` and ``model`` columns (and ``dataset``: when it holds more than one
    dataset, labels name it too) plus metric columns; each model has its :func:`model_colour`;
    ``selected`` names the run drawn with a ring; ``x_label``/``y_label`` are the axes' words.
    Runs missing either metric are left out. The ranges are padded so labels are not clipped.
    """
    cols = ["run", "model", "dataset", x, y]
    frame = board.loc[:, [c for c in dict.fromkeys(cols) if c in board.columns]].dropna()
    if x not in frame.columns or y not in frame.columns:
        frame = pd.DataFrame({"run": [], "model": [], x: [], y: []})
    if "dataset" not in frame.columns:
        frame = frame.assign(dataset="")
    several = frame["dataset"].nunique() > 1
    frame = frame.assign(
        is_selected=frame["run"] == selected,
        label=[
            f"{m} \u00b7 {d}" if several else str(m)
            for m, d in zip(frame["model"], frame["dataset"], strict=True)
        ],
    )
    colours = {m: model_colour(str(m)) for m in frame["model"].unique()}
    x_dim, y_dim = hv.Dimension(x, label=x_label or x), hv.Dimension(y, label=y_label or y)
    vdims = ["run", "model", "dataset", "label", "is_selected"]
    points = hv.Points(frame, [x_dim, y_dim], vdims).opts(
        color="model",
        cmap=colours,
        size=12,
        tools=["hover"],
        line_color="black",
        show_legend=True,
    )
    chosen = hv.Points(frame[frame["is_selected"]], [x_dim, y_dim], ["run"]).opts(
        size=22, fill_alpha=0, line_color=HIGHLIGHT, line_width=3
    )
    slots = label_slots(frame[x].to_numpy(float), frame[y].to_numpy(float))
    gap_x, gap_y = (0.03 * _span(frame[c]) for c in (x, y))
    labels = hv.Overlay(
        [
            hv.Labels(frame[slots == slot], [x_dim, y_dim], "label").opts(
                text_font_size="9pt",
                text_color="#333333",
                text_align=align,
                text_baseline=baseline,
                xoffset=sx * gap_x,
                yoffset=sy * gap_y,
            )
            for slot, (align, baseline, sx, sy) in enumerate(LABEL_SLOTS)
        ]
    )
    return (points * chosen * labels).opts(
        responsive=True,
        height=320,
        padding=(0.2, 0.25),
        title=f"{y_label or y} against {x_label or x}",
        legend_position="right",
    )


LABEL_SLOTS: tuple[tuple[str, str, int, int], ...] = (
    ("center", "bottom", 0, 1),
    ("center", "top", 0, -1),
    ("left", "middle", 1, 0),
    ("right", "middle", -1, 0),
)
"""Label places around a point: text align, baseline and the x and y offset signs (above,
below, right of and left of the point)."""


def label_slots(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """The :data:`LABEL_SLOTS` index of each point's label: above the point unless a label
    already placed there for a nearby point (within a fifth of the x range and a tenth of the
    y range) would overlap, then below, then beside it towards the middle of the plot (above
    again when all four are taken).
    ``x``, ``y``: point coordinates [n]; returns int [n], points placed from the top down."""

    def unit(v: np.ndarray) -> np.ndarray:
        span = np.ptp(v) if v.size else 0.0
        return (v - v.min()) / span if span > 0 else np.zeros_like(v)

    ux, uy = unit(x), unit(y)
    slots = np.zeros(x.shape[0], dtype=np.int64)
    placed: list[list[int]] = [[] for _ in LABEL_SLOTS]
    for i in np.argsort(-uy, kind="stable"):
        order = (0, 1, 3, 2) if ux[i] > 0.5 else (0, 1, 2, 3)  # sideways: towards the middle
        free = [
            s
            for s in order
            if not any(abs(ux[i] - ux[j]) < 0.2 and abs(uy[i] - uy[j]) < 0.1 for j in placed[s])
        ]
        slots[i] = free[0] if free else 0
        placed[slots[i]].append(int(i))
    return slots


def validation_curve(
    epochs: Sequence[int], values: Sequence[float], kept_epoch: int, metric: str = "valid metric"
) -> hv.Overlay:
    """The validation ``metric`` per evaluated epoch, the kept epoch marked.

    ``epochs``: evaluated epochs (1-based, increasing); ``values``: the validation metric at
    each; ``kept_epoch``: the epoch whose weights the run saved, drawn as a star on a dashed
    vertical line (absent from ``epochs`` for a run without validation: no mark).
    """
    frame = pd.DataFrame(
        {"epoch": np.asarray(epochs, dtype=np.int64), "valid": np.asarray(values, dtype=float)}
    )
    dims = ("epoch", ("valid", metric))
    curve = hv.Curve(frame, *dims).opts(color=PALETTE[2], tools=["hover"])
    dots = hv.Scatter(frame, *dims).opts(color=PALETTE[2], size=6, tools=["hover"])
    kept = frame[frame["epoch"] == int(kept_epoch)]
    overlay = curve * dots
    if len(kept):
        line = hv.VLine(float(kept_epoch)).opts(color=HIGHLIGHT, line_dash="dashed", line_width=1.5)
        star = hv.Scatter(kept, *dims, label=f"kept: epoch {int(kept_epoch)}").opts(
            color=HIGHLIGHT, marker="star", size=18, line_color="black"
        )
        overlay = overlay * line * star
    ticks = sorted(set(frame["epoch"].tolist()))
    return overlay.opts(
        responsive=True,
        height=220,
        padding=0.1,
        xticks=ticks if 0 < len(ticks) <= 15 else None,  # whole epochs, not 1.2, 1.4...
        xlabel="epoch",
        ylabel=f"validation {metric}",
        title=f"Validation {metric} per evaluated epoch",
        legend_position="top_left",
        show_legend=bool(len(kept)),
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
