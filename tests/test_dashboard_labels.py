"""Labels the dashboard shows: metric ids in words, one stable colour and marker per explainer."""

from __future__ import annotations

import holoviews as hv
import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp
import torch
from bokeh.models import HoverTool

from app.dashboard.plots import HIGHLIGHT
from app.dashboard.plots.explain import (
    LABEL_CHARS,
    TITLE_CHARS,
    attribution_bars,
    fidelity_curves,
)
from app.dashboard.plots.explainer_style import (
    EXPLAINER_STYLES,
    FALLBACK,
    coincide_note,
    coinciding_curves,
    explainer_style,
)
from engine.beyond import METRIC_DOCS, user_metrics
from engine.catalogue import catalogue_metrics
from engine.evaluate import METRICS, ranking_metrics
from engine.groups import GROUP_DOCS
from engine.metric_labels import metric_label
from explainers.registry import explainer_names
from explainers.target import BEST_OF_KAPPA


def _computed_metric_names() -> list[str]:
    """Every metric name the engine computes on a small random problem (all variants on)."""
    rng = np.random.default_rng(0)
    n_users, n_items, k = 12, 30, 5
    train = sp.csr_matrix(rng.random((n_users, n_items)) < 0.3, dtype=np.float64)
    heldout = sp.csr_matrix(rng.random((n_users, n_items)) < 0.1, dtype=np.float64)
    recs = np.stack([rng.permutation(n_items)[:k] for _ in range(n_users)])
    users = np.arange(n_users)
    genres = (rng.random((n_items, 4)) < 0.4).astype(np.float64)
    emb = rng.normal(size=(n_items, 3))
    per_user = user_metrics(recs, users, train, heldout, genres, emb)
    catalogue = catalogue_metrics(recs, users, train, heldout, position_weighted=True)
    hits = torch.from_numpy(rng.random((n_users, 20)) < 0.2).float()
    accuracy = ranking_metrics(hits, torch.full((n_users,), 3.0), (10, 20))
    return [
        *(c for c in per_user.columns if c != "user"),
        *catalogue["metric"].to_list(),
        *GROUP_DOCS,
        *accuracy,
    ]


def test_every_metric_the_engine_computes_has_a_label_in_words() -> None:
    names = _computed_metric_names()
    assert {"ild_cooccurrence", "arp", "gini_pw_corrected", "max_gap", "ndcg@20"} <= set(names)
    for name in names:
        label = metric_label(name)
        assert label != name, name
        assert "_" not in label, (name, label)


def test_every_documented_metric_has_a_label_in_words() -> None:
    for name in METRIC_DOCS:
        label = metric_label(name)
        assert label != name, name
        assert "_" not in label, (name, label)


def test_variants_never_share_a_label() -> None:
    labels = [metric_label(n) for n in METRIC_DOCS]
    assert len(set(labels)) == len(labels)


@pytest.mark.parametrize("base", METRICS)
def test_accuracy_metrics_keep_their_cutoff(base: str) -> None:
    label = metric_label(f"{base}@20")
    assert label.endswith("@20") and label != f"{base}@20"


def test_unknown_ids_come_back_unchanged() -> None:
    assert metric_label("seconds_train") == "seconds_train"
    assert metric_label("ndcg@x") == "ndcg@x"


# -- explainer colours -------------------------------------------------------------------------
def _curves(names: list[str], same: dict[str, str] | None = None) -> pd.DataFrame:
    """Deletion and insertion curves (11 points) of ``names``; ``same``: name -> the explainer
    whose curves it repeats (within 0.1% of the range)."""
    fractions = np.linspace(0, 1, 11)
    rows = []
    for i, name in enumerate(names):
        base = (same or {}).get(name, name)
        shift = names.index(base) * 0.1 + (0.001 if base != name else 0.0)
        for kind in ("deletion", "insertion"):
            values = 1 - fractions * (0.5 + shift) if kind == "deletion" else fractions * shift
            rows.append(
                pd.DataFrame(
                    {"explainer": name, "kind": kind, "fraction": fractions, "value": values,
                     "quantity": "score", "rank": np.arange(1, 12) + i}
                )
            )  # fmt: skip
    return pd.concat(rows, ignore_index=True)


def _drawn(overlay: hv.Overlay) -> dict[str, dict[str, object]]:
    """Explainer -> colour, dash and marker positions as drawn."""
    out: dict[str, dict[str, object]] = {}
    for element in overlay:
        opts = hv.Store.lookup_options("bokeh", element, "style").kwargs
        entry = out.setdefault(element.label, {})
        if isinstance(element, hv.Scatter):
            entry["marker"] = opts["marker"]
            entry["points"] = element.dimension_values("fraction").round(3).tolist()
            entry["marker_colour"] = opts["color"]
        else:
            entry["colour"], entry["dash"] = opts["color"], opts["line_dash"]
    return out


def test_every_registered_explainer_has_its_own_colour() -> None:
    names = [*explainer_names(), BEST_OF_KAPPA]
    assert set(names) <= set(EXPLAINER_STYLES)
    colours = [explainer_style(n).colour.lower() for n in names]
    assert len(set(colours)) == len(colours)
    assert explainer_style("spinrec").colour == HIGHLIGHT
    pairs = {(s.colour, s.marker) for s in EXPLAINER_STYLES.values()}
    assert len(pairs) == len(EXPLAINER_STYLES)
    assert explainer_style("not-an-explainer") == FALLBACK


def test_colours_do_not_depend_on_which_explainers_are_drawn() -> None:
    small = _drawn(fidelity_curves(_curves(["spinrec", "ig_zero"]), "deletion"))
    large = _drawn(
        fidelity_curves(_curves(["spinrec", "cosine", "ig_zero", "lime", "random"]), "deletion")
    )
    for name, drawn in small.items():
        assert drawn["colour"] == large[name]["colour"] == explainer_style(name).colour
        assert drawn["marker"] == large[name]["marker"] == explainer_style(name).marker
    assert small["ig_zero"]["colour"] != small["spinrec"]["colour"]


def test_coinciding_curves_are_named_and_each_stays_visible() -> None:
    names = ["spinrec", "cosine", "ig_zero", "leave_one_out"]
    curves = _curves(names, same={"ig_zero": "spinrec", "leave_one_out": "spinrec"})
    assert coinciding_curves(curves, "deletion") == [
        ("spinrec", "ig_zero"),
        ("spinrec", "leave_one_out"),
    ]
    assert coinciding_curves(curves, "deletion", column="rank") == []
    drawn = _drawn(fidelity_curves(curves, "deletion"))
    assert drawn["cosine"]["dash"] == "solid" and drawn["spinrec"]["dash"] == "solid"
    assert drawn["ig_zero"]["dash"] == drawn["leave_one_out"]["dash"] == "dashed"
    # Each of the three coinciding curves has its markers on its own points.
    points = [set(drawn[n]["points"]) for n in ("spinrec", "ig_zero", "leave_one_out")]
    assert all(points) and not (
        points[0] & points[1] or points[0] & points[2] or points[1] & points[2]
    )
    assert len(drawn["cosine"]["points"]) == 11
    # The coinciding ones are drawn last, on top of the curve they lie on.
    order = [e.label for e in fidelity_curves(curves, "deletion") if isinstance(e, hv.Curve)]
    assert order[-2:] == ["ig_zero", "leave_one_out"]
    note = coincide_note(curves)
    assert "deletion: ig_zero and leave_one_out on spinrec" in note
    assert coincide_note(_curves(names)) == ""


# -- attribution bars --------------------------------------------------------------------------
def test_attribution_bars_cut_long_titles_and_keep_them_in_the_hover() -> None:
    long = "Dr. Strangelove or: How I Learned to Stop Worrying and Love the Bomb (1963)"
    frame = pd.DataFrame(
        {
            "title": [long, "Brazil (1985)"],
            "id": ["474", "175"],
            "attribution": [0.5, -0.2],
            "share": [0.7, 0.3],
            "sign": ["pushes up", "pushes down"],
        }
    )
    bars = attribution_bars(frame, title=f"Why \u201c{long}\u201d?")
    labels = bars.dimension_values("label").tolist()
    assert "Brazil (1985)" in labels and all(len(t) <= LABEL_CHARS for t in labels)
    assert long in bars.dimension_values("title").tolist()
    fig = hv.render(bars)
    lines = fig.title.text.split("\n")
    assert len(lines) == 2 and all(len(line) <= TITLE_CHARS for line in lines)
    (hover,) = fig.select({"type": HoverTool})
    assert ("title", "@{title}") in hover.tooltips
