"""Plot functions of the dashboard: engine results in, HoloViews elements out."""

from __future__ import annotations

import holoviews as hv
import numpy as np
import pandas as pd
import pytest

from app.dashboard import shaping
from app.dashboard.plots import as_drawn
from app.dashboard.plots import embeddings as emb
from app.dashboard.plots import explain as ex
from app.dashboard.plots import fairness as fair
from app.dashboard.plots import overview as ov
from engine.neighbours import nearest


def test_long_tail_sorted_and_head_covers_80_percent() -> None:
    counts = np.array([1, 50, 3, 20, 0, 7])
    overlay = ov.long_tail(counts)
    head, tail = list(overlay)
    values = np.concatenate([head.data["interactions"], tail.data["interactions"]])
    assert list(values) == [50, 20, 7, 3, 1, 0.5]  # zero drawn at 0.5 on the log axis
    assert head.data["share"].max() <= 0.8
    assert len(head.data) == 1  # 50 of 81 interactions is 62%; 70/81 passes 80%


def test_activity_histogram_counts_every_active_user() -> None:
    counts = np.array([5, 6, 7, 100, 0, 12])
    hist = ov.activity_histogram(counts, bins=5)
    assert isinstance(hist, hv.Histogram)
    assert hist.dimension_values("users").sum() == 5


def test_tradeoff_scatter_places_runs_on_chosen_metrics() -> None:
    board = pd.DataFrame(
        {"run": ["a", "b"], "model": ["ease", "mf"], "ndcg@10": [0.3, 0.2], "gini": [0.9, 0.5]}
    )
    overlay = ov.tradeoff_scatter(board, "ndcg@10", "gini", selected="b")
    points = overlay.Points.I
    assert list(points.data["gini"]) == [0.9, 0.5]
    assert list(overlay.Points.II.data["run"]) == ["b"]
    swapped = ov.tradeoff_scatter(board, "gini", "ndcg@10")
    assert swapped.Points.I.kdims[0].name == "gini"


def test_training_curves_keep_epochs_and_skip_missing_validation() -> None:
    reports = [
        {"epoch": 1, "loss": 0.9, "valid": None},
        {"epoch": 2, "loss": 0.7, "valid": 0.2},
    ]
    layout = ov.training_curves(reports)
    loss = layout.Overlay.I.Curve.I
    valid = layout.Overlay.II.Curve.I
    assert list(loss.data["loss"]) == [0.9, 0.7]
    assert list(valid.data["valid"]) == [0.2]


def _map_frame(n: int) -> pd.DataFrame:
    rng = np.random.default_rng(0)
    return pd.DataFrame(
        {
            "x": rng.normal(size=n),
            "y": rng.normal(size=n),
            "id": [str(i) for i in range(n)],
            "label": [f"item {i}" for i in range(n)],
            "genre": rng.choice(["Drama", "Comedy"], size=n),
            "popularity": rng.integers(1, 100, size=n),
        }
    )


def test_embedding_map_points_below_threshold_raster_above() -> None:
    frame = _map_frame(300)
    points = emb.embedding_map(frame, "genre", ("popularity",))
    assert isinstance(points, hv.Points)
    assert len(points.data) == 300
    assert {"genre", "popularity", "label"} <= set(points.data.columns)
    shaded = emb.embedding_map(frame, "popularity", threshold=100)
    assert isinstance(shaded, hv.DynamicMap)  # rasterized with Datashader


def test_highlight_layer_marks_history_recs_and_selection() -> None:
    frame = _map_frame(20)
    layer = emb.highlight_layer(frame, ["1", "2"], ["5"], ["7"], ["9", "99"])
    groups = {el.label: list(el.data["id"]) for el in layer}
    assert groups == {"history": ["1", "2"], "held out": ["9"], "recommended": ["5"],
                      "selected": ["7"]}  # fmt: skip
    assert emb.nearest_row(frame, frame["x"][4], frame["y"][4]) == 4


def test_attribution_frame_shares_and_bars() -> None:
    frame = shaping.attribution_frame(["A", "B", "C"], ["1", "2", "3"], np.array([0.1, 0.3, -0.2]))
    assert list(frame["title"]) == ["B", "A", "C"]
    assert frame["share"].tolist() == pytest.approx([0.75, 0.25, 0.0])
    bars = ex.attribution_bars(frame, top=2)
    assert list(bars.data["title"]) == ["C", "B"]  # two largest |scores|, drawn bottom-up


TEX = "$$\\href{javascript:alert(1)}{x}$$ \\(a\\) \\[b\\]"
"""A title from a dataset file holding every TeX delimiter BokehJS looks for."""


@pytest.mark.parametrize(
    "plot",
    [
        lambda: ex.attribution_bars(
            shaping.attribution_frame([TEX, "B"], ["1", "2"], np.array([0.1, 0.3])), title=TEX
        ),
        lambda: fair.group_bars(
            pd.DataFrame({"group": [TEX, "M"], "n_users": [3, 4], "ndcg@10": [0.2, 0.3]}),
            "ndcg@10",
            TEX,
        ),
    ],
)
def test_data_in_plot_titles_and_axis_labels_is_drawn_as_written(plot) -> None:
    """BokehJS would typeset a title or axis label holding TeX delimiters (Bokeh's own check
    says which models would need MathJax); the text drawn is the data with nothing but
    zero-width spaces added."""
    from bokeh.embed.bundle import _model_requires_mathjax

    figure = hv.render(plot())
    assert not [m for m in figure.references() if _model_requires_mathjax(m)]
    drawn = [figure.title.text, *(a.axis_label or "" for a in figure.axis)]
    # (a long bar-chart title is wrapped onto lines and shortened: its start is looked for)
    assert any(TEX[:24] in t.replace("\u200b", "").replace("\n", "") for t in drawn)
    assert as_drawn("a $ b \\ c") == "a $ b \\ c"  # a lone $ or backslash is left alone
    assert "$$" not in as_drawn("$$$x$$$$")  # nor is any pair left in a run of dollars


def test_path_curves_one_curve_per_path_chosen_highlighted() -> None:
    alphas = np.linspace(0, 1, 5)
    probs = np.vstack([alphas, alphas**2, np.sqrt(alphas)])
    overlay = ex.path_curves(alphas, probs, chosen=1, labels=["p1", "p2", "p3"], ylabel="score")
    others, best = list(overlay)
    assert [p["path"] for p in others.split(datatype="columns")] == ["p1", "p3"]
    assert best.data["value"].tolist() == pytest.approx((alphas**2).tolist())
    assert best.opts.get().kwargs["line_width"] == 4
    assert overlay.opts.get().kwargs["ylabel"] == "score"
    assert "logy" not in overlay.opts.get().kwargs
    ranks = ex.path_curves(alphas, 1 + probs * 50, 1, ["p1", "p2", "p3"], "rank", ranks=True)
    options = ranks.opts.get().kwargs
    assert options["logy"] and options["invert_yaxis"]  # rank 1 at the top


def test_fidelity_curves_filter_by_kind() -> None:
    curves = pd.DataFrame(
        {
            "explainer": ["spinrec", "spinrec", "random", "random"] * 2,
            "kind": ["deletion"] * 4 + ["insertion"] * 4,
            "fraction": [0.0, 1.0] * 4,
            "value": [0.5, 0.1, 0.5, 0.4, 0.0, 0.4, 0.0, 0.2],
            "quantity": "sigmoid probability",
            "rank": [3, 40, 3, 9, 90, 5, 90, 20],
        }
    )
    overlay = ex.fidelity_curves(curves, "insertion")
    data = {c.label: c.data["value"].tolist() for c in overlay}
    assert data == {"random": [0.0, 0.2], "spinrec": [0.0, 0.4]}
    assert overlay.opts.get().kwargs["ylabel"] == "sigmoid probability"
    ranks = ex.fidelity_curves(curves, "deletion", measure="rank")
    assert {c.label: c.data["rank"].tolist() for c in ranks}["spinrec"] == [3, 40]
    assert ranks.opts.get().kwargs["ylabel"] == shaping.RANK_LABEL
    assert ranks.opts.get().kwargs["invert_yaxis"]


def test_compare_lists_marks_common_items() -> None:
    frame = shaping.compare_lists({"ease": ["A", "B", "C"], "mf": ["B", "D", "A"]})
    assert frame["ease"].tolist() == ["\u2713 A", "\u2713 B", "C"]
    assert frame["overlap"].tolist() == [2, 2, 1]


def test_lorenz_curve_and_gini_title() -> None:
    overlay = fair.lorenz_curve(np.array([0, 0, 0, 10]), 0.75, 0.9)
    curve = overlay.Curve.Exposure
    assert curve.data["share of exposure"].tolist() == [0, 0, 0, 0, 1]
    assert "0.750" in overlay.opts.get().kwargs["title"]


def test_metric_distribution_marks_user() -> None:
    values = np.array([0.1, 0.2, np.nan, 0.4])
    overlay = fair.metric_distribution(values, fair.user_marker(0.2), "ndcg@10", "NDCG@10")
    assert overlay.Histogram.I.dimension_values("users").sum() == 3
    assert overlay.VLines.I.dimension_values(0).tolist() == [0.2]
    assert overlay.opts.get().kwargs["title"] == "NDCG@10"
    for missing in (None, float("nan")):
        assert len(fair.user_marker(missing)) == 0


def test_popularity_bias_and_group_bars() -> None:
    frame = pd.DataFrame(
        {"id": ["1", "2"], "title": ["A", "B"], "genre": ["x", "y"],
         "popularity": [10, 0], "exposure": [3.0, 0.0]}
    )  # fmt: skip
    points = fair.popularity_bias(frame)
    assert points.data["recommended + 1"].tolist() == [4.0, 1.0]
    means = pd.DataFrame({"group": ["F", "M"], "n_users": [3, 4], "ndcg@10": [0.2, 0.3]})
    bars = fair.group_bars(means, "ndcg@10", "gender")
    assert bars.data["ndcg@10"].tolist() == [0.2, 0.3]


def test_nearest_neighbours_by_cosine() -> None:
    vectors = np.array([[1.0, 0.0], [0.9, 0.1], [0.0, 1.0], [0.0, 0.0], [-1.0, 0.0]])
    idx, sim = nearest(vectors, 0, 3)
    assert idx.tolist() == [1, 2, 3]
    assert sim[0] == pytest.approx(0.9 / np.hypot(0.9, 0.1))
    assert sim[1:].tolist() == [0.0, 0.0]
