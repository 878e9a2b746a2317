"""Diffusion plots: DiffRec's reverse process for one user and the 2-D teaching diffusion."""

from __future__ import annotations

from collections.abc import Sequence

import holoviews as hv
import numpy as np
import pandas as pd

from app.dashboard.plots import HIGHLIGHT, MUTED, PALETTE

KIND_COLOURS = {"history": "black", "held out": PALETTE[2], "recommended": HIGHLIGHT}


def heat_strip(
    predictions: np.ndarray, columns: Sequence[int], kinds: Sequence[str], labels: Sequence[str]
) -> hv.Image:
    """Predicted score of chosen items (columns) at every reverse step (rows).

    ``predictions``: [T, n_items] x_0 predictions of one seed; ``columns``: item indices shown,
    left to right; ``kinds``/``labels``: per column, ``history``, ``held out`` or
    ``recommended``, and the title (for the caption table). The image's x is the column
    position, y the step.
    """
    cols = np.asarray(columns, dtype=np.int64)
    data = np.asarray(predictions, dtype=np.float64)[:, cols]
    n_steps = data.shape[0]
    bounds = (-0.5, -0.5, len(cols) - 0.5, n_steps - 0.5)
    return hv.Image(data, kdims=["item", "step"], vdims="score", bounds=bounds).opts(
        cmap="viridis",
        colorbar=True,
        tools=["hover"],
        responsive=True,
        height=260,
        title="Predicted score of each item per reverse step",
        xlabel="items: history | held out | recommended",
        invert_yaxis=True,
    )


def strip_markers(kinds: Sequence[str]) -> hv.Points:
    """Coloured ticks under the heat strip saying which kind each column is."""
    frame = pd.DataFrame({"item": np.arange(len(kinds)), "step": -1.0, "kind": list(kinds)})
    return hv.Points(frame, ["item", "step"], ["kind"]).opts(
        color="kind", cmap=KIND_COLOURS, marker="square", size=8, show_legend=True
    )


def step_line(step: int) -> hv.HLine:
    """The current step across the heat strip."""
    return hv.HLine(float(step)).opts(color="red", line_width=2)


def metric_curves(steps: pd.DataFrame, k: int) -> hv.Overlay:
    """Recall@K and NDCG@K of each step's prediction (seed 0), against the held-out items."""
    frame = steps[steps["seed"] == steps["seed"].min()]
    layers = []
    for i, name in enumerate((f"recall@{k}", f"ndcg@{k}")):
        if name in frame.columns:
            data = frame[["step", name]].rename(columns={name: "value"}).assign(metric=name)
            layers.append(
                hv.Curve(data, "step", ["value", "metric"], label=name).opts(
                    color=PALETTE[i], line_width=3, tools=["hover"]
                )
            )
    if not layers:
        layers.append(hv.Curve([], "step", "value"))
    return hv.Overlay(layers).opts(
        responsive=True, height=260, title="Accuracy of each step's prediction",
        legend_position="top_left", ylim=(0, None),
    )  # fmt: skip


def step_marker(step: int) -> hv.VLine:
    """The current step on the metric curves."""
    return hv.VLine(float(step)).opts(color="red", line_width=2)


def trajectory_map(
    items: pd.DataFrame, steps: pd.DataFrame, history: Sequence[str], heldout: Sequence[str]
) -> hv.Overlay:
    """The item map (grey), the user's history and held-out items, and each seed's path of the
    prediction's centroid over the steps (a fan when there are several seeds)."""
    base = hv.Points(items, ["x", "y"], ["id", "label"]).opts(
        color=MUTED, alpha=0.35, size=4, tools=["hover"]
    )
    idx = items.set_index("id", drop=False)

    def pick(ids: Sequence[str]) -> pd.DataFrame:
        keep = [i for i in ids if i in idx.index]
        return idx.loc[keep, ["x", "y", "id", "label"]].reset_index(drop=True)

    hist = hv.Points(pick(history), ["x", "y"], ["id", "label"], label="history").opts(
        color="black", size=7, marker="circle", tools=["hover"]
    )
    held = hv.Points(pick(heldout), ["x", "y"], ["id", "label"], label="held out").opts(
        color=PALETTE[2], size=10, marker="square", tools=["hover"]
    )
    paths = [
        group.sort_values("step")[["x", "y", "step"]].assign(seed=seed)
        for seed, group in steps.dropna(subset=["x", "y"]).groupby("seed")
    ]
    fan = hv.Path(
        [{"x": p["x"].to_numpy(), "y": p["y"].to_numpy(), "seed": int(p["seed"].iloc[0])}
         for p in paths],
        ["x", "y"], ["seed"], label="trajectory",
    ).opts(color=HIGHLIGHT, line_width=3, alpha=0.8)  # fmt: skip
    return (base * hist * held * fan).opts(
        responsive=True, height=420, xaxis=None, yaxis=None,
        title="Where each step's prediction sits on the item map", legend_position="right",
    )  # fmt: skip


def trajectory_position(steps: pd.DataFrame, step: int) -> hv.Points:
    """Each seed's prediction centroid at ``step``."""
    frame = steps[steps["step"] == step].dropna(subset=["x", "y"])[["x", "y", "seed"]]
    return hv.Points(frame, ["x", "y"], ["seed"]).opts(
        color="red", size=16, marker="diamond", line_color="white"
    )


def particles(
    frame: np.ndarray,
    target: np.ndarray | None = None,
    title: str = "",
    extent: tuple[float, float, float, float] | None = None,
) -> hv.Overlay:
    """Particles [n, 2] of the teaching diffusion at one frame, over the faint target points.

    ``extent`` (x0, y0, x1, y1) fixes the axes so the animation does not jump.
    """
    layers = []
    if target is not None:
        layers.append(
            hv.Points(np.asarray(target), ["x", "y"], label="data").opts(
                color=MUTED, alpha=0.25, size=3
            )
        )
    layers.append(
        hv.Points(np.asarray(frame), ["x", "y"], label="particles").opts(
            color=HIGHLIGHT, size=4, alpha=0.8
        )
    )
    return hv.Overlay(layers).opts(
        responsive=True, height=420, title=title, legend_position="top_right",
        **({"xlim": (extent[0], extent[2]), "ylim": (extent[1], extent[3])} if extent else {}),
    )  # fmt: skip
