"""Embedding-map colourings (legend or colour bar, in the rendered Bokeh figure), the Fairness
tab's metric and grouping choices, and message boxes that do not repeat themselves."""

from __future__ import annotations

import holoviews as hv
import numpy as np
import pandas as pd
import pytest
from bokeh.document import Document
from bokeh.models import CategoricalColorMapper, ColorBar, Legend
from panel.io.state import set_curdoc

from app.dashboard import fairness_data
from app.dashboard.plots import embeddings as emb
from app.dashboard.views.common import SAME_MESSAGE, MessagePane


def _frame(n: int, n_genres: int) -> pd.DataFrame:
    rng = np.random.default_rng(1)
    return pd.DataFrame(
        {
            "x": rng.normal(size=n),
            "y": rng.normal(size=n),
            "id": [str(i) for i in range(n)],
            "label": [f"item {i}" for i in range(n)],
            "genre": [f"genre {i % n_genres}" for i in range(n)],
            "popularity": rng.integers(1, 600, size=n),
            "year": rng.integers(1920, 1999, size=n).astype(float),
        }
    )


def _legend_values(fig) -> list[str]:
    """Every entry the figure's legends draw (a field label draws one per distinct value)."""
    out: list[str] = []
    for legend in fig.select({"type": Legend}):
        for item in legend.items:
            label = item.label
            if getattr(label, "field", None):
                column = item.renderers[0].data_source.data[label.field]
                out.extend(dict.fromkeys(str(v) for v in column))
            else:
                out.append(str(label.value))
    return out


@pytest.mark.parametrize("threshold", [10_000, 50], ids=["points", "rasterized"])
@pytest.mark.parametrize("n_genres", [2, 19, 30])
def test_categorical_colouring_has_a_legend_entry_per_drawn_value(
    threshold: int, n_genres: int
) -> None:
    frame = _frame(400, n_genres)
    fig = hv.render(emb.embedding_map(frame, "genre", title="Items", threshold=threshold))
    drawn = emb.category_labels(frame["genre"])
    values = _legend_values(fig)
    assert sorted(values) == sorted(set(drawn))
    assert len(values) == min(n_genres, emb.MAX_CATEGORIES)
    assert (emb.OTHER in values) == (n_genres > emb.MAX_CATEGORIES)
    assert not fig.select({"type": ColorBar})
    key = emb.colour_key(drawn)
    assert len(set(key.values())) == len(key)  # one distinct colour per category
    if threshold > len(frame):
        mapper = next(iter(fig.select({"type": CategoricalColorMapper})))
        assert set(mapper.factors) == set(values)


@pytest.mark.parametrize("threshold", [10_000, 50], ids=["points", "rasterized"])
@pytest.mark.parametrize(("column", "scale"), [("popularity", "Log"), ("year", "Linear")])
def test_numeric_colouring_has_a_colour_bar_named_after_it(
    threshold: int, column: str, scale: str
) -> None:
    fig = hv.render(emb.embedding_map(_frame(400, 3), column, threshold=threshold))
    bars = list(fig.select({"type": ColorBar}))
    assert len(bars) == 1 and bars[0].title == column
    assert type(bars[0].color_mapper).__name__ == f"{scale}ColorMapper"
    assert _legend_values(fig) == []


def test_category_labels_keep_the_most_frequent_and_name_missing() -> None:
    series = pd.Series(["a"] * 5 + ["b"] * 3 + ["c", "d", None])
    assert emb.category_labels(series, limit=3).tolist() == ["a"] * 5 + ["b"] * 3 + ["other"] * 3
    assert emb.category_labels(series).iloc[-1] == "unknown"
    assert emb.colour_key(pd.Series(["b", "other", "a"])) == {
        "a": emb.CATEGORY_COLOURS[0],
        "b": emb.CATEGORY_COLOURS[1],
        "other": "#BDBDBD",
    }
    assert len(set(emb.CATEGORY_COLOURS)) == emb.MAX_CATEGORIES >= 22  # ml-100k: 21 occupations


def test_log_scale_only_for_wide_positive_ranges() -> None:
    assert emb.log_scale(pd.Series([1, 50, 583]))
    assert not emb.log_scale(pd.Series([1922.0, 1998.0, np.nan]))
    assert not emb.log_scale(pd.Series([0, 10, 500]))


def test_fairness_metrics_accuracy_first_in_words() -> None:
    frame = pd.DataFrame(
        {
            "user": [0, 1],
            "raw_id": ["7", "9"],
            "ild_genre": [0.5, 0.7],
            "arp": [10.0, 30.0],
            "recall@20": [0.1, 0.2],
            "ndcg@10": [0.2, 0.4],
            "ndcg@20": [0.3, 0.5],
            "n_items": [3, 4],
        }
    )
    metrics = fairness_data.metric_columns(frame)
    assert metrics == ["ndcg@10", "ndcg@20", "recall@20", "ild_genre", "arp"]
    options = fairness_data.metric_options(metrics)
    assert options["NDCG@10"] == "ndcg@10"
    assert options["Average recommendation popularity"] == "arp"
    assert len(options) == len(metrics)


def test_free_text_attributes_are_not_groupings() -> None:
    users = pd.DataFrame(
        {
            "zip": [f"{10000 + i}" for i in range(100)],
            "gender": ["F", "M"] * 50,
            "age": list(range(100)),
        }
    )
    offered, left_out = fairness_data.grouping_options(
        ["age", "gender", "zip", "activity", "age_band"], users
    )
    assert offered == ["age", "gender", "activity", "age_band"]
    assert left_out == ["zip"]


def test_a_message_shown_above_is_not_repeated() -> None:
    doc = Document()
    with set_curdoc(doc):
        top = MessagePane("user 'x' is not in dataset d", alert_type="warning")
        top.get_root(doc)
        again = MessagePane("user 'x' is not in dataset d", alert_type="warning")
        other = MessagePane("another problem", alert_type="warning")
        assert SAME_MESSAGE in again._transform_object(again.object)["object"]
        assert "another problem" in other._transform_object(other.object)["object"]
        top.visible = False  # once the first box is hidden the next one shows the message
        assert "is not in dataset" in again._transform_object(again.object)["object"]
    alone = MessagePane("user 'x' is not in dataset d")  # outside a page: never deduplicated
    assert "is not in dataset" in alone._transform_object(alone.object)["object"]
