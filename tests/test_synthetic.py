"""Tests of the synthetic dataset generator (data/synthetic.py)."""

from __future__ import annotations

import re

import numpy as np
import polars as pl
import pytest

from data.dataset import Dataset
from data.errors import DataError
from data.synthetic import GENRE_NAMES, generate, make_titles


@pytest.fixture(scope="module")
def default() -> Dataset:
    return generate()


@pytest.fixture(scope="module")
def pure_noise() -> Dataset:
    return generate(noise=1.0)


def _top_share(dataset: Dataset, fraction: float = 0.2) -> float:
    """Share of interactions held by the most popular ``fraction`` of items."""
    counts = np.bincount(dataset.interactions["item"].to_numpy(), minlength=dataset.n_items)
    ranked = np.sort(counts)[::-1]
    return ranked[: int(fraction * dataset.n_items)].sum() / ranked.sum()


def _favoured_genre_share(dataset: Dataset, top: int = 2) -> tuple[float, float]:
    """(share of interactions whose item's main genre is among the user's community's ``top``
    favoured genres, the share expected if items were picked uniformly from the catalogue)."""
    truth = dataset.truth
    assert truth is not None
    favoured = np.argsort(-truth.community_genre_affinity, axis=1)[:, :top]  # [C, top]
    users = dataset.interactions["user"].to_numpy()
    items = dataset.interactions["item"].to_numpy()
    fav_of_pair = favoured[truth.user_community[users]]  # [n, top]
    observed = (fav_of_pair == truth.item_genre[items][:, None]).any(axis=1).mean()
    genre_share = np.bincount(truth.item_genre, minlength=len(truth.genre_names)) / dataset.n_items
    expected = genre_share[fav_of_pair].sum(axis=1).mean()
    return float(observed), float(expected)


def test_sizes_ids_and_schema(default: Dataset) -> None:
    assert (default.n_users, default.n_items, default.n_interactions) == (1000, 1500, 60_000)
    assert default.name == "synthetic"
    assert default.users["raw_id"].to_list() == [str(u) for u in range(1, 1001)]
    assert default.items["raw_id"].to_list() == [str(i) for i in range(1, 1501)]
    assert default.interactions.schema == {
        "user": pl.UInt32,
        "item": pl.UInt32,
        "rating": pl.Float64,
        "timestamp": pl.Int64,
    }
    assert default.interactions.null_count().sum_horizontal().item() == 0
    assert {"community", "age_band"} <= set(default.users.columns)
    assert default.users["age_band"].n_unique() > 1
    for word in ("n_users=1000", "n_items=1500", "n_interactions=60000", "seed=0", "noise=0.1"):
        assert word in default.source
    assert default.meta["n_communities"] == 8


def test_other_sizes_are_exact() -> None:
    ds = generate(n_users=300, n_items=200, n_interactions=12_345, seed=7, n_communities=3)
    assert (ds.n_users, ds.n_items, ds.n_interactions) == (300, 200, 12_345)
    assert ds.interactions.select("user", "item").unique().height == 12_345


def test_dense_request_fills_the_whole_matrix() -> None:
    ds = generate(n_users=20, n_items=10, n_interactions=200, seed=1)
    assert ds.matrix().nnz == 200
    assert ds.matrix().toarray().all()


def test_same_seed_same_tables_other_seed_different() -> None:
    a = generate(n_users=200, n_items=300, n_interactions=5000, seed=3)
    b = generate(n_users=200, n_items=300, n_interactions=5000, seed=3)
    c = generate(n_users=200, n_items=300, n_interactions=5000, seed=4)
    for table in ("interactions", "items", "users"):
        assert getattr(a, table).equals(getattr(b, table))
    assert a.truth is not None and b.truth is not None
    np.testing.assert_array_equal(a.truth.user_factors, b.truth.user_factors)
    np.testing.assert_array_equal(
        a.truth.community_genre_affinity, b.truth.community_genre_affinity
    )
    assert not a.interactions.equals(c.interactions)
    assert a.items["title"].to_list() != c.items["title"].to_list()


def test_no_duplicate_pairs(default: Dataset) -> None:
    assert default.interactions.select("user", "item").unique().height == default.n_interactions


def test_every_user_has_the_minimum() -> None:
    ds = generate(n_users=400, n_items=500, n_interactions=6000, seed=2)
    per_user = np.bincount(ds.interactions["user"].to_numpy(), minlength=ds.n_users)
    assert per_user.min() >= 5
    tight = generate(n_users=400, n_items=500, n_interactions=4000, min_user_interactions=10)
    assert np.all(np.bincount(tight.interactions["user"].to_numpy(), minlength=400) == 10)


def test_engagement_is_skewed(default: Dataset) -> None:
    per_user = np.bincount(default.interactions["user"].to_numpy(), minlength=default.n_users)
    assert per_user.max() > 5 * np.median(per_user)
    assert per_user.max() <= default.n_items // 2


def test_popularity_has_a_long_tail(default: Dataset) -> None:
    assert _top_share(default) > 0.5
    counts = np.bincount(default.interactions["item"].to_numpy(), minlength=default.n_items)
    assert (counts == 0).mean() < 0.02


def test_users_prefer_their_community_genres(default: Dataset) -> None:
    observed, expected = _favoured_genre_share(default)
    assert observed > 1.6 * expected


def test_full_noise_removes_genre_and_popularity_structure(pure_noise: Dataset) -> None:
    observed, expected = _favoured_genre_share(pure_noise)
    assert abs(observed - expected) < 0.02
    assert _top_share(pure_noise) < 0.35


def test_ratings_follow_affinity(default: Dataset) -> None:
    truth = default.truth
    assert truth is not None
    ratings = default.interactions["rating"].to_numpy()
    assert set(np.unique(ratings)) == {1.0, 2.0, 3.0, 4.0, 5.0}
    users = default.interactions["user"].to_numpy()
    items = default.interactions["item"].to_numpy()
    affinity = np.einsum("nd,nd->n", truth.user_factors[users], truth.item_factors[items])
    low, high = np.quantile(affinity, [0.25, 0.75])
    assert ratings[affinity >= high].mean() > ratings[affinity <= low].mean() + 0.8


def test_timestamps_increase_per_user(default: Dataset) -> None:
    ts = default.interactions["timestamp"]
    assert ts.min() >= 1_262_304_000 and ts.max() < 1_735_689_600  # 2010-01-01 .. 2025-01-01
    steps = default.interactions.select(pl.col("timestamp").diff().over("user").alias("step"))
    assert steps["step"].drop_nulls().min() > 0
    users = default.interactions["user"].to_numpy()
    assert np.all(np.diff(users.astype(np.int64)) >= 0)  # grouped by user
    assert default.interactions.group_by("user").agg(pl.col("timestamp").max()).height == 1000


def test_truth_is_consistent(default: Dataset) -> None:
    truth = default.truth
    assert truth is not None
    assert truth.user_community.shape == (1000,)
    assert truth.item_genre.shape == (1500,)
    assert truth.user_factors.shape == (1000, 16)
    assert truth.item_factors.shape == (1500, 16)
    assert truth.community_genre_affinity.shape == (8, 12)
    np.testing.assert_allclose(truth.community_genre_affinity.sum(axis=1), 1.0)
    assert truth.genre_names == GENRE_NAMES[:12]
    np.testing.assert_array_equal(default.users["community"].to_numpy(), truth.user_community)
    main = default.items["genres"].list.first().to_list()
    assert main == [truth.genre_names[g] for g in truth.item_genre]
    n_genres = default.items["genres"].list.len()
    assert n_genres.min() == 1 and n_genres.max() == 2
    assert default.items["genres"].list.n_unique().equals(n_genres)
    assert set(truth.user_community.tolist()) == set(range(8))


def test_titles_are_unique_and_readable(default: Dataset) -> None:
    titles = default.items["title"].to_list()
    assert len(set(titles)) == len(titles)
    pattern = re.compile(r"^[A-Z][a-z]+( [A-Za-z]+){1,5}$")
    assert all(pattern.match(t) for t in titles), [t for t in titles if not pattern.match(t)][:5]
    years = default.items["year"]
    assert years.min() >= 1950 and years.max() <= 2024


def test_titles_stay_unique_past_the_word_space() -> None:
    titles = make_titles(np.random.default_rng(0), 130_000)
    assert len(set(titles)) == 130_000
    assert any(t.endswith(" II") for t in titles)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"n_users": 10, "n_items": 10, "n_interactions": 101}, "exceeds n_users\\*n_items"),
        ({"n_users": -1}, "n_users must be positive"),
        ({"n_items": 0}, "n_items must be positive"),
        ({"n_interactions": -5}, "n_interactions must be non-negative"),
        ({"noise": 1.5}, "noise must be in \\[0, 1\\]"),
        ({"noise": -0.1}, "noise must be in \\[0, 1\\]"),
        ({"noise": float("nan")}, "noise must be in \\[0, 1\\]"),
        ({"n_users": 2.5}, "n_users must be an integer"),
        ({"n_genres": 40}, "n_genres must be at most 18"),
        ({"n_users": 100, "n_interactions": 400}, "below n_users\\*min_user_interactions"),
        ({"n_items": 3, "n_interactions": 3000}, "min_user_interactions=5 exceeds n_items=3"),
    ],
)
def test_bad_parameters_raise_one_line_data_error(kwargs: dict, message: str) -> None:
    with pytest.raises(DataError, match=message) as info:
        generate(**kwargs)
    assert "\n" not in str(info.value)
