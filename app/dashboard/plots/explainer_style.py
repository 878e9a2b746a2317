"""One colour and one marker shape per explainer, the same in every plot and export.

SPINRec keeps the dashboard's highlight orange (its chosen path is drawn in it too); its
variants are darker and lighter oranges; no other explainer is orange. Gradient methods are
blues, similarity baselines greens, sampling surrogates purples, random a grey. An explainer
without an entry (a newly registered one) is drawn in :data:`MUTED` grey with a circle.

:func:`coinciding_curves` names the curves that would hide each other in a plot: they lie
within a small share of the plot's height at every point (through
:func:`app.fidelity_stats.coinciding`, which also finds identical per-user results).
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
import pandas as pd
import polars as pl

from app.dashboard.plots import HIGHLIGHT, MUTED
from app.fidelity_stats import coinciding


class ExplainerStyle(NamedTuple):
    colour: str
    marker: str


EXPLAINER_STYLES: dict[str, ExplainerStyle] = {
    "spinrec": ExplainerStyle(HIGHLIGHT, "circle"),
    "spinrec_ins": ExplainerStyle("#A63603", "square"),
    "spinrec_single": ExplainerStyle("#FDAE6B", "diamond"),
    "spinrec_best_of_kappa": ExplainerStyle("#7F2704", "hex"),
    "ig_zero": ExplainerStyle("#0072B2", "triangle"),
    "grad_x_input": ExplainerStyle("#56B4E9", "inverted_triangle"),
    "cosine": ExplainerStyle("#009E73", "square"),
    "jaccard": ExplainerStyle("#7A7A00", "diamond"),
    "lime": ExplainerStyle("#CC79A7", "star"),
    "kernel_shap": ExplainerStyle("#6A3D9A", "hex"),
    "leave_one_out": ExplainerStyle("#B8860B", "x"),
    "random": ExplainerStyle("#595959", "plus"),
}
"""Explainer name (as :func:`explainers.registry.explainer_names`) -> colour and marker."""

FALLBACK = ExplainerStyle(MUTED, "circle")
COINCIDE_SHARE = 0.03
"""Curves closer than this share of the plotted range at every point are said to coincide."""


def explainer_style(name: str) -> ExplainerStyle:
    """The fixed colour and marker of explainer ``name`` (:data:`FALLBACK` for unknown ones)."""
    return EXPLAINER_STYLES.get(name, FALLBACK)


def coinciding_curves(
    curves: pd.DataFrame,
    kind: str,
    first: str = "spinrec",
    column: str = "value",
    share: float = COINCIDE_SHARE,
) -> list[tuple[str, str]]:
    """Pairs (drawn first, hidden under it) of explainers whose ``kind`` curves lie within
    ``share`` of the plotted range of each other at every fraction.

    ``curves``: long table ``explainer``, ``kind``, ``fraction`` and ``column`` (the drawn
    values; ``rank`` is compared on its log axis), as from
    :func:`app.dashboard.shaping.fidelity_frame`; ``first`` is compared first, then the others
    by name, so the pairs read "ig_zero lies on spinrec".
    """
    part = curves[curves["kind"] == kind].sort_values(["explainer", "fraction"], kind="stable")
    if part.empty or column not in part.columns:
        return []
    values = part[column].astype(float).to_numpy()
    if column == "rank":
        values = np.log10(np.maximum(values, 1.0))
    names = sorted(part["explainer"].unique(), key=lambda n: (n != first, n))
    finite = values[np.isfinite(values)]
    span = float(finite.max() - finite.min()) if finite.size else 0.0
    table = pl.DataFrame(
        {
            "explainer": part["explainer"].astype(str).to_list(),
            "user": part.groupby("explainer").cumcount().to_list(),  # point index on the curve
            "y": values,
        }
    )
    order = pl.DataFrame({"explainer": names}).with_row_index("_order")
    table = table.join(order, on="explainer").sort(["_order", "user"]).drop("_order")
    return coinciding(table, ("y",), atol=max(share * span, 1e-12))


def coinciding_groups(
    curves: pd.DataFrame, kind: str, first: str = "spinrec", column: str = "value"
) -> dict[str, list[str]]:
    """:func:`coinciding_curves` as groups: the curve drawn first -> the curves lying on it."""
    groups: dict[str, list[str]] = {}
    root: dict[str, str] = {}
    for a, b in coinciding_curves(curves, kind, first=first, column=column):
        root[b] = root.get(a, a)
        groups.setdefault(root[b], []).append(b)
    return groups


def coincide_note(curves: pd.DataFrame, focus: str = "spinrec", column: str = "value") -> str:
    """Plain text naming the deletion and insertion curves that lie on each other ("" when
    none do), for a caption under the plots."""
    parts = []
    for kind in ("deletion", "insertion"):
        groups = coinciding_groups(curves, kind, first=focus, column=column)
        if groups:
            lying = "; ".join(f"{_listed(v)} on {k}" for k, v in groups.items())
            parts.append(f"{kind}: {lying}")
    if not parts:
        return ""
    return (
        f"Curves that lie on each other (within {COINCIDE_SHARE:.0%} of the plot's height at "
        f"every point) are drawn dashed, each with its markers on its own points: "
        f"{'; '.join(parts)}."
    )


def _listed(names: list[str]) -> str:
    return names[0] if len(names) == 1 else ", ".join(names[:-1]) + " and " + names[-1]
