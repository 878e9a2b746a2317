"""Explanation plots: attribution bars, SPINRec path curves, fidelity curves.

Inputs are plain tables built by :mod:`app.dashboard.shaping` from :mod:`explainers` results, so
the plot functions stay independent of how an explanation was computed.
"""

from __future__ import annotations

from collections.abc import Sequence

import holoviews as hv
import numpy as np
import pandas as pd

from app.dashboard.plots import HIGHLIGHT, MUTED, NEGATIVE, PALETTE, POSITIVE


def attribution_bars(frame: pd.DataFrame, top: int = 15, title: str = "") -> hv.Bars:
    """Horizontal signed bars of the ``top`` history items with the largest |attribution|.

    ``frame`` as from :func:`app.dashboard.shaping.attribution_frame`; the strongest item is at
    the top.
    """
    shown = frame.reindex(frame["attribution"].abs().sort_values(ascending=False).index)
    shown = shown.head(top).sort_values("attribution", ascending=True, kind="stable")
    labels = [_short(t, 38) for t in shown["title"]]
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
        responsive=True,
        height=max(220, 26 * len(data) + 60),
        xlabel="",
        ylabel="attribution",
        title=title,
        show_legend=False,
    )


def summary_sentence(
    frame: pd.DataFrame, target_title: str, user_label: str, n_top: int = 3, model: str = ""
) -> str:
    """One plain-language sentence: which history items pushed the recommendation, with shares.

    ``frame`` as from :func:`app.dashboard.shaping.attribution_frame`. Mentions the strongest
    negative item too.
    """
    by = f" by {model}" if model else ""
    pos = frame[frame["attribution"] > 0].head(n_top)
    if pos.empty:
        return (
            f"No item in {user_label}'s history raised the chance of recommending "
            f"\u201c{target_title}\u201d{by}; the model recommends it for other reasons "
            "(for example its overall popularity)."
        )
    parts = [f"\u201c{t}\u201d ({s:.0%})" for t, s in zip(pos["title"], pos["share"], strict=True)]
    listed = parts[0] if len(parts) == 1 else ", ".join(parts[:-1]) + " and " + parts[-1]
    covered = float(pos["share"].sum())
    text = (
        f"\u201c{target_title}\u201d is recommended to {user_label}{by} mostly because of "
        f"{listed} in their history, together {covered:.0%} of what pushed it up."
    )
    neg = frame[frame["attribution"] < 0]
    if not neg.empty:
        worst = neg.sort_values("attribution").iloc[0]
        text += f" \u201c{worst['title']}\u201d pulled the other way."
    return text


def path_curves(
    alphas: np.ndarray, probabilities: np.ndarray, chosen: int, labels: Sequence[str]
) -> hv.Overlay:
    """Target probability along alpha for each of the kappa SPINRec paths, the chosen one bold.

    ``alphas``: [n_alpha] in [0, 1]; ``probabilities``: [kappa, n_alpha]; ``labels``: [kappa]
    names of the baseline of each path. The other paths are one multi-line element (fast to
    update), the chosen one a separate curve on top.
    """
    probabilities = np.atleast_2d(np.asarray(probabilities, dtype=np.float64))
    alphas = np.asarray(alphas, dtype=np.float64)
    others = [
        {"alpha": alphas, "probability": row, "path": labels[i]}
        for i, row in enumerate(probabilities)
        if i != chosen
    ]
    paths = hv.Path(others, ["alpha", "probability"], ["path"], label="other paths").opts(
        color=MUTED, line_width=1.5, alpha=0.7
    )  # no hover: hit-testing kappa paths on every redraw is slow; the chosen one has it
    best = pd.DataFrame(
        {"alpha": alphas, "probability": probabilities[chosen], "path": labels[chosen]}
    )
    curve = hv.Curve(best, "alpha", ["probability", "path"], label="chosen path").opts(
        color=HIGHLIGHT, line_width=4, tools=["hover"]
    )
    return (paths * curve).opts(
        responsive=True,
        height=300,
        xlabel="alpha (0 = baseline user, 1 = this user)",
        ylabel="target probability",
        title="SPINRec paths",
        legend_position="top_left",
    )


def fidelity_curves(curves: pd.DataFrame, kind: str, focus: str = "spinrec") -> hv.Overlay:
    """Deletion or insertion curves of several explainers.

    ``curves``: long table with ``explainer``, ``kind`` ("deletion"/"insertion"), ``fraction``
    (share of history items removed or inserted, 0..1) and ``probability``. ``focus`` is drawn
    thick. For deletion lower is better, for insertion higher is better.
    """
    part = curves[curves["kind"] == kind]
    layers = []
    for i, (name, group) in enumerate(part.groupby("explainer", sort=True)):
        strong = name == focus
        layers.append(
            hv.Curve(group, "fraction", ["probability", "explainer"], label=str(name)).opts(
                color=HIGHLIGHT if strong else PALETTE[i % len(PALETTE)],
                line_width=4 if strong else 1.8,
                line_dash="solid" if strong or name != "random" else "dashed",
                tools=["hover"],
            )
        )
    if not layers:
        layers.append(hv.Curve([], "fraction", "probability"))
    better = "lower" if kind == "deletion" else "higher"
    return hv.Overlay(layers).opts(
        responsive=True,
        height=300,
        xlabel=f"share of history {'removed' if kind == 'deletion' else 'inserted'}",
        ylabel="target probability",
        title=f"{kind.capitalize()} ({better} is better)",
        legend_position="right",
    )


def _short(text: str, n: int) -> str:
    return text if len(text) <= n else text[: n - 1] + "\u2026"
