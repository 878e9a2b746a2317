"""Preparation (threshold, dedup, k-core, re-indexing) and the seeded split protocols."""

from __future__ import annotations

import numpy as np
import polars as pl
import pytest

from data.dataset import Dataset
from data.errors import DataError
from data.prepare import prepare
from data.splits import recbole_counts, split


def make_dataset(n_users: int = 60, n_items: int = 40, seed: int = 0) -> Dataset:
    """Random explicit-feedback dataset; every user has 5..25 distinct items."""
    rng = np.random.default_rng(seed)
    rows = []
    for u in range(n_users):
        items = rng.choice(n_items, size=int(rng.integers(5, 26)), replace=False)
        for i in items:
            rows.append((u, int(i), float(rng.integers(1, 6)), int(rng.integers(0, 10_000))))
    inter = pl.DataFrame(rows, schema=["user", "item", "rating", "timestamp"], orient="row")
    items = pl.DataFrame({"item": np.arange(n_items), "raw_id": [f"i{i}" for i in range(n_items)]})
    users = pl.DataFrame({"user": np.arange(n_users), "raw_id": [f"u{u}" for u in range(n_users)]})
    return Dataset.build("toy", inter, items, users)


def test_recbole_counts_match_recbole_rounding() -> None:
    train, valid, test = recbole_counts(np.array([1, 2, 3, 9, 10, 20, 29, 30]), (0.8, 0.1, 0.1))
    assert train.tolist() == [1, 1, 1, 7, 8, 16, 25, 24]
    assert valid.tolist() == [0, 0, 1, 1, 1, 2, 2, 3]
    assert test.tolist() == [0, 1, 1, 1, 1, 2, 2, 3]


def test_threshold_and_dedup_keep_the_right_rows() -> None:
    inter = pl.DataFrame(
        {
            "user": [0, 0, 0, 1, 1],
            "item": [0, 0, 1, 1, 2],
            "rating": [2.0, 5.0, 3.0, 4.0, None],
            "timestamp": [1, 2, 3, 4, 5],
        }
    )
    items = pl.DataFrame({"item": [0, 1, 2], "raw_id": ["a", "b", "c"]})
    users = pl.DataFrame({"user": [0, 1], "raw_id": ["x", "y"]})
    ds = Dataset.build("t", inter, items, users)
    first = prepare(ds, dedup="first")
    assert first.n_interactions == 4
    assert first.interactions.filter(pl.col("item") == 0)["rating"].to_list() == [2.0]
    last = prepare(ds, dedup="last")
    assert last.interactions.filter(pl.col("item") == 0)["rating"].to_list() == [5.0]
    kept = prepare(ds, threshold=4)
    # (0,0) rated 5 survives, (1,1) rated 4, (1,2) has no rating and counts as implicit.
    assert sorted(kept.item_raw_ids.tolist()) == ["a", "b", "c"]
    assert kept.n_interactions == 3


def test_k_core_is_iterative_and_reindexes() -> None:
    ds = make_dataset()
    core = prepare(ds, min_user_interactions=10, min_item_interactions=15)
    per_user = core.interactions.group_by("user").len()["len"]
    per_item = core.interactions.group_by("item").len()["len"]
    assert per_user.min() >= 10 and per_item.min() >= 15
    assert core.users["user"].to_list() == list(range(core.n_users))
    assert core.items["item"].to_list() == list(range(core.n_items))
    # raw ids still name the same interactions as before
    raw = ds.interactions.join(ds.users.select("user", u="raw_id"), on="user").join(
        ds.items.select("item", i="raw_id"), on="item"
    )
    new = core.interactions.join(core.users.select("user", u="raw_id"), on="user").join(
        core.items.select("item", i="raw_id"), on="item"
    )
    assert new.select("u", "i").join(raw.select("u", "i"), on=["u", "i"], how="anti").height == 0


def test_prepare_that_removes_everything_says_so() -> None:
    with pytest.raises(DataError, match="no interactions left"):
        prepare(make_dataset(), min_user_interactions=1000)


@pytest.mark.parametrize("protocol", ["random", "temporal", "strong"])
def test_split_parts_are_disjoint_complete_and_seeded(protocol: str) -> None:
    ds = prepare(make_dataset())
    s = split(ds, protocol, seed=3)
    total = s.train + s.valid + s.test
    assert total.nnz == ds.n_interactions and total.max() == 1.0
    for part in ("valid", "test"):
        users = s.eval_users(part)
        assert users.size > 0
        assert (np.diff(s.train.indptr)[users] > 0).all()
    again = split(ds, protocol, seed=3)
    assert (again.test != s.test).nnz == 0
    other = split(ds, protocol, seed=4)
    if protocol != "temporal":
        assert (other.test != s.test).nnz > 0


def test_random_split_is_8_1_1_per_user() -> None:
    ds = prepare(make_dataset())
    s = split(ds, "random", seed=0)
    n = np.diff(ds.matrix().indptr)
    n_train, n_valid, n_test = recbole_counts(n, (0.8, 0.1, 0.1))
    assert np.diff(s.train.indptr).tolist() == n_train.tolist()
    assert np.diff(s.valid.indptr).tolist() == n_valid.tolist()
    assert np.diff(s.test.indptr).tolist() == n_test.tolist()


def test_temporal_split_holds_out_the_latest() -> None:
    ds = prepare(make_dataset())
    s = split(ds, "temporal")
    inter = ds.interactions
    for u in range(5):
        times = dict(
            zip(
                inter.filter(pl.col("user") == u)["item"],
                inter.filter(pl.col("user") == u)["timestamp"],
                strict=True,
            )
        )
        train_max = max(times[i] for i in s.train[u].indices)
        assert all(times[i] >= train_max for i in s.test[u].indices)


def test_strong_generalization_fits_on_other_users() -> None:
    ds = prepare(make_dataset())
    s = split(ds, "strong", seed=1)
    held_out = np.union1d(s.eval_users("valid"), s.eval_users("test"))
    assert np.intersect1d(held_out, s.fit_users).size == 0
    assert s.fit_matrix()[held_out].nnz == 0
    assert s.train[held_out].nnz > 0  # their fold-in part is the models' input


def test_given_split_uses_the_parts() -> None:
    ds = make_dataset()
    inter = ds.interactions
    parts = {"train": inter[:500], "valid": inter[500:550], "test": inter[550:]}
    given = Dataset.build("given", inter, ds.items, ds.users, parts=parts)
    s = split(prepare(given), "random")
    assert s.protocol == "given"
    assert s.train.nnz + s.valid.nnz + s.test.nnz == inter.height


def test_bad_split_arguments_are_reported() -> None:
    ds = prepare(make_dataset())
    with pytest.raises(DataError, match="unknown split protocol"):
        split(ds, "bogus")  # type: ignore[arg-type]
    with pytest.raises(DataError, match="ratios"):
        split(ds, "random", ratios=(0.5, 0.1, 0.1))
