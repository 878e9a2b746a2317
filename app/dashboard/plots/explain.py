"""Explanation plots: attribution bars, SPINRec path curves, fidelity curves.

Inputs are plain tables built by :mod:`app.dashboard.shaping` from :mod:`explainers` results, so
the plot functions stay independent of how an explanation was computed.
"""

from __future__ import annotations

import textwrap
from collections.abc import Sequence

import holoviews as hv
import numpy as np
import pandas as pd

from app.dashboard.plots import HIGHLIGHT, MUTED, NEGATIVE, POSITIVE, as_title
from app.dashboard.plots.explainer_style import coinciding_groups, explainer_style
from app.dashboard.shaping import RANK_LABEL

LABEL_CHARS = 30
TITLE_CHARS = 28
"""Longest bar label, and plot title line (two at most), drawn; longer ones end in an ellipsis
(the hover shows the whole title)."""


def attribution_bars(frame: pd.DataFrame, top: int = 15, title: str = "") -> hv.Bars:
    """Horizontal signed bars of the ``top`` history items with the largest |attribution|.

    ``frame`` as from :func:`app.dashboard.shaping.attribution_frame`; the strongest item is at
    the top. Long titles are cut to :data:`LABEL_CHARS` on the axis (the plot title wraps onto
    two lines of :data:`TITLE_CHARS`), the full title is in the hover.
    """
    shown = frame.reindex(frame["attribution"].abs().sort_values(ascending=False).index)
    shown = shown.head(top).sort_values("attribution", ascending=True, kind="stable")
    labels = [_short(t, LABEL_CHARS) for t in shown["title"]]
    # Bars need unique categories: suffix repeated titles with their id.
    seen: dict[str, int] = {}
    unique = []
    for label, rid in zip(labels, shown["id"], strict=True):
        unique.append(label if label not in seen else f"{label} [{rid}]")
        seen[label] = 1
    data = shown.assign(label=unique)
    return hv.Bars(data, "label", ["attribution", "share", "title", "sign"]).opts(
        invert_axes=True,
        color="sign",
        cmap={"pushes up": POSITIVE, "pushes down": NEGATIVE},
        tools=["hover"],
        hover_tooltips=[("title", "@title"), ("attribution", "@attribution"), ("share", "@share")],
        responsive=True,
        height=max(220, 26 * len(data) + 60),
        xlabel="",
        ylabel="attribution",
        title=as_title(_wrapped(title, TITLE_CHARS, lines=2)),
        show_legend=False,
    )


def path_curves(
    alphas: np.ndarray,
    values: np.ndarray,
    chosen: int,
    labels: Sequence[str],
    ylabel: str,
    ranks: bool = False,
) -> hv.Overlay:
    """The target's output (or rank) along alpha for each of the kappa SPINRec paths, the
    chosen one bold.

    ``alphas``: [n_alpha] in [0, 1]; ``values``: [kappa, n_alpha]; ``labels``: [kappa] names
    of the baseline of each path; ``ylabel``: what ``values`` are (the model's "softmax
    probability", "score", ... or a rank); ``ranks``: ``values`` are ranks (1 = top), drawn on
    a log axis with the top at the top. The other paths are one multi-line element (fast to
    update), the chosen one a separate curve on top.
    """
    values = np.atleast_2d(np.asarray(values, dtype=np.float64))
    alphas = np.asarray(alphas, dtype=np.float64)
    value = hv.Dimension("value", label=ylabel)
    others = [
        {"alpha": alphas, "value": row, "path": labels[i]}
        for i, row in enumerate(values)
        if i != chosen
    ]
    paths = hv.Path(others, ["alpha", value], ["path"], label="other paths").opts(
        color=MUTED, line_width=1.5, alpha=0.7
    )  # no hover: hit-testing kappa paths on every redraw is slow; the chosen one has it
    best = pd.DataFrame({"alpha": alphas, "value": values[chosen], "path": labels[chosen]})
    curve = hv.Curve(best, "alpha", [value, "path"], label="chosen path").opts(
        color=HIGHLIGHT, line_width=4, tools=["hover"]
    )
    return (paths * curve).opts(
        responsive=True,
        height=300,
        xlabel="alpha (0 = baseline user, 1 = this user)",
        ylabel=ylabel,
        title="SPINRec paths",
        legend_position="top_left",
        **_rank_axis(ranks),
    )


def fidelity_curves(
    curves: pd.DataFrame, kind: str, focus: str = "spinrec", measure: str = "value"
) -> hv.Overlay:
    """Deletion or insertion curves of several explainers.

    ``curves``: long table with ``explainer``, ``kind`` ("deletion"/"insertion"), ``fraction``
    (share of history items removed or inserted, 0..1), ``value`` (the model's output for the
    target), ``quantity`` (what that output is) and ``rank`` (the target's rank among the
    items the top-K ranks), as :func:`app.dashboard.shaping.fidelity_frame` makes it; ``measure``:
    the column drawn, ``value`` or ``rank`` (comparable across models; log axis, top at the
    top). ``focus`` is drawn thick. For deletion lower is better, for insertion higher is
    better (on the drawn axis).
    """
    if measure not in ("value", "rank"):
        raise ValueError(f"unknown measure {measure!r}: use value or rank")
    part = curves[curves["kind"] == kind]
    if measure == "rank":
        ylabel = RANK_LABEL
    elif "quantity" in part.columns and len(part):
        ylabel = str(part["quantity"].iloc[0])
    else:
        ylabel = "model output"
    y = hv.Dimension(measure, label=ylabel)
    # Fixed colour and marker per explainer. Curves lying on each other are drawn dashed on top
    # of the first one, and each puts its markers on its own points (the k-th of a group of n
    # coinciding curves on every n-th point from the k-th), so every one of them stays visible.
    groups = [[a, *b] for a, b in coinciding_groups(part, kind, focus, measure).items()]
    slots = {n: (k, len(members)) for members in groups for k, n in enumerate(members)}
    on_top = {n for members in groups for n in members[1:]}
    names = sorted(part["explainer"].unique(), key=lambda n: (n in on_top, n != focus, n))
    layers: list[hv.Element] = []
    for name in names:
        group = part[part["explainer"] == name].sort_values("fraction")
        style, strong = explainer_style(str(name)), name == focus
        start, step = slots.get(name, (0, 1))
        layers.append(
            hv.Curve(group, "fraction", [y, "explainer"], label=str(name)).opts(
                color=style.colour,
                line_width=4 if strong else 2,
                line_dash="dashed" if name in on_top else "dotted" if name == "random" else "solid",
                tools=["hover"],
            )
        )
        layers.append(
            hv.Scatter(group.iloc[start::step], "fraction", [y, "explainer"], label=str(name)).opts(
                color=style.colour, marker=style.marker, size=11, fill_alpha=0.5
            )
        )
    if not layers:
        layers.append(hv.Curve([], "fraction", y))
    better = "lower" if kind == "deletion" else "higher"
    return hv.Overlay(layers).opts(
        responsive=True,
        height=300,
        xlabel=f"share of history {'removed' if kind == 'deletion' else 'inserted'}",
        ylabel=ylabel,
        title=f"{kind.capitalize()} ({better} is better)",
        legend_position="right",
        **_rank_axis(measure == "rank" and bool(layers[0].data.shape[0])),
    )


def _rank_axis(ranks: bool) -> dict[str, bool]:
    """Axis options for ranks: a log axis with rank 1 at the top (empty for other values)."""
    return {"logy": True, "invert_yaxis": True} if ranks else {}


def _wrapped(text: str, width: int, lines: int) -> str:
    """``text`` on at most ``lines`` lines of ``width`` characters, the last one cut short."""
    parts = textwrap.wrap(text, width) or [""]
    if len(parts) > lines:
        parts = [*parts[: lines - 1], _short(" ".join(parts[lines - 1 :]), width)]
    return "\n".join(parts)


def _short(text: str, n: int) -> str:
    return text if len(text) <= n else text[: n - 1] + "\u2026"
