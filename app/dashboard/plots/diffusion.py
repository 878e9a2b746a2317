"""Diffusion plots: DiffRec's reverse process for one user and the 2-D teaching diffusion."""

from __future__ import annotations

from collections.abc import Sequence

import holoviews as hv
import numpy as np
import pandas as pd

from app.dashboard.plots import HIGHLIGHT, MUTED, PALETTE
from engine.metric_labels import metric_label

KIND_COLOURS = {"history": "black", "held out": PALETTE[2], "recommended": HIGHLIGHT}
FAN_COLOURS: tuple[str, ...] = (
    HIGHLIGHT, PALETTE[0], PALETTE[6], PALETTE[4], PALETTE[3], PALETTE[8], PALETTE[5], PALETTE[13],
)  # fmt: skip
"""One colour per walk of the fan (none is the history's black or the held-out green)."""
FAN_DASHES: tuple[str, ...] = ("solid", "dashed", "dotted", "dashdot")


def heat_strip(
    scores: np.ndarray, columns: Sequence[int], kinds: Sequence[str], labels: Sequence[str]
) -> hv.Image:
    """Score of chosen items (columns) at every position of the walk (rows).

    ``scores``: [T + 1, n_items] of one seed, row 0 the start state and row s the x_0
    prediction of the s-th reverse step; ``columns``: item indices shown, left to right;
    ``kinds``/``labels``: per column, ``history``, ``held out`` or ``recommended``, and the
    title (for the caption table). The image's x is the column position, y the step.
    """
    cols = np.asarray(columns, dtype=np.int64)
    data = np.asarray(scores, dtype=np.float64)[:, cols]
    n_rows = data.shape[0]
    bounds = (-0.5, -0.5, len(cols) - 0.5, n_rows - 0.5)
    # an image's first array row is its top (largest y): flip so that row s sits at y = s
    image = hv.Image(np.flipud(data), kdims=["item", "step"], vdims="score", bounds=bounds)
    return image.opts(
        cmap="viridis",
        colorbar=True,
        tools=["hover"],
        responsive=True,
        height=260,
        title="Item scores: the start (row 0), then each step",
        xlabel="items: history | held out | recommended",
        ylabel="step (0 = start)",
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


def metric_curves(progress: pd.DataFrame, k: int) -> hv.Overlay:
    """Recall@K and NDCG@K along the walk (seed 0): step 0 ranks the start state as it is,
    step s the s-th prediction; ``progress`` is :meth:`Trajectory.progress` as pandas."""
    frame = progress[progress["seed"] == progress["seed"].min()]
    layers = []
    for i, name in enumerate((f"recall@{k}", f"ndcg@{k}")):
        if name in frame.columns and frame[name].notna().any():
            label = metric_label(name)
            data = frame[["step", name]].rename(columns={name: "value"}).assign(metric=label)
            curve = hv.Curve(data, "step", ["value", "metric"], label=label).opts(
                color=PALETTE[i], line_width=3, tools=["hover"]
            )
            dots = hv.Scatter(data, "step", ["value", "metric"], label=label).opts(
                color=PALETTE[i], size=7
            )
            layers += [curve, dots]
    if not layers:
        layers.append(hv.Curve([], "step", "value"))
    return hv.Overlay(layers).opts(
        responsive=True, height=260, title="Accuracy along the walk (step 0: the start state)",
        legend_position="top_left", ylim=(0, None), xlabel="step (0 = start)",
    )  # fmt: skip


def heldout_rank_curve(progress: pd.DataFrame) -> hv.Curve:
    """The best rank of a held-out item along the walk (seed 0; up is better), which moves
    even while no held-out item is in the top K."""
    frame = progress[progress["seed"] == progress["seed"].min()][["step", "best_heldout_rank"]]
    return hv.Curve(frame.dropna(), "step", "best_heldout_rank", label="best held-out rank").opts(
        color=PALETTE[3], line_width=3, tools=["hover"], responsive=True, height=200,
        invert_yaxis=True, logy=True, xlabel="step (0 = start)", ylabel="rank (log)",
        title="Best rank of a held-out item (higher on the plot = better)",
    )  # fmt: skip


def topk_bars(top: pd.DataFrame, title: str) -> hv.Bars:
    """One step's top-K as horizontal bars of the score, rank 1 on top, held-out hits in green
    (``top``: columns ``rank``, ``title``, ``score``, ``move``, ``hit``; may be empty)."""
    frame = pd.DataFrame(
        {
            "item": [f"{r}. {t}" for r, t in zip(top["rank"], top["title"], strict=True)],
            "score": top["score"].astype(float),
            "move": top["move"].astype(str),
            "kind": np.where(top["hit"].astype(bool), "held out", "not held out"),
        }
    )
    colours = {"held out": PALETTE[2], "not held out": PALETTE[0]}
    return hv.Bars(frame.iloc[::-1], "item", ["score", "move", "kind"]).opts(
        invert_axes=True, color="kind", cmap=colours, tools=["hover"], height=300,
        responsive=True, title=title, xlabel="", show_legend=False, framewise=True,
    )  # fmt: skip


def step_marker(step: int) -> hv.VLine:
    """The current step on the metric curves."""
    return hv.VLine(float(step)).opts(color="red", line_width=2)


def trajectory_map(
    items: pd.DataFrame, progress: pd.DataFrame, history: Sequence[str], heldout: Sequence[str]
) -> hv.Overlay:
    """The item map (grey), the user's history and held-out items, and each seed's path of the
    prediction's centroid from the history's centre (step 0) over the steps: one colour and
    dash per seed, with a dot per step, so a fan of stochastic walks shows even where the
    paths nearly coincide."""
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
    layers = [base, hist, held]
    located = progress.dropna(subset=["x", "y"])
    for n, (seed, group) in enumerate(located.groupby("seed")):
        path = group.sort_values("step")[["x", "y", "step"]]
        colour = FAN_COLOURS[n % len(FAN_COLOURS)]
        label = f"walk, seed {seed}"
        layers.append(
            hv.Path([path], ["x", "y"], ["step"], label=label).opts(
                color=colour, line_width=3, alpha=0.7, line_dash=FAN_DASHES[n % len(FAN_DASHES)]
            )
        )
        layers.append(
            hv.Points(path, ["x", "y"], ["step"], label=label).opts(
                color=colour, size=6, alpha=0.7, tools=["hover"]
            )
        )
    return hv.Overlay(layers).opts(
        responsive=True, height=420, xaxis=None, yaxis=None,
        title="Where each step's prediction sits on the item map (walks start at the history)",
        legend_position="right",
    )  # fmt: skip


def trajectory_position(progress: pd.DataFrame, step: int) -> hv.Points:
    """Each seed's prediction centroid at ``step`` (0: the history's centre)."""
    frame = progress[progress["step"] == step].dropna(subset=["x", "y"])[["x", "y", "seed"]]
    return hv.Points(frame, ["x", "y"], ["seed"]).opts(
        color="red", size=16, marker="diamond", line_color="white", alpha=0.8
    )


def particles(
    frame: np.ndarray,
    target: np.ndarray | None = None,
    title: str = "",
    extent: tuple[float, float, float, float] | None = None,
) -> hv.Overlay:
    """Particles [n, 2] of the teaching diffusion at one frame, over the faint target points.

    ``extent`` (x0, y0, x1, y1) fixes the axes so the animation does not jump; one unit is as
    long on both axes (a circle is drawn round).
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
        data_aspect=1, frame_height=400, title=title, legend_position="top_right",
        **({"xlim": (extent[0], extent[2]), "ylim": (extent[1], extent[3])} if extent else {}),
    )  # fmt: skip
