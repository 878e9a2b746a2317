"""Preparation: positive threshold, duplicate handling, iterative k-core filtering, re-indexing.

The result is again a :class:`~data.dataset.Dataset` whose users and items are contiguous
``0..n-1`` (only those that survived filtering), so ``ds.matrix()`` is the sparse user x item
matrix the engine trains on.
"""

from __future__ import annotations

from typing import Literal

import numpy as np
import polars as pl

from data.dataset import Dataset
from data.errors import DataError

Dedup = Literal["first", "last", "max"]


def _check_options(threshold: object, *k_cores: object) -> None:
    """Preparation options of the right types (they may come from a run's config.json)."""
    if threshold is not None and (
        isinstance(threshold, bool)
        or not isinstance(threshold, int | float)
        or not np.isfinite(threshold)
    ):
        raise DataError(f"the rating threshold must be a finite number, got {threshold!r}")
    for k in k_cores:
        if isinstance(k, bool) or not isinstance(k, int | np.integer) or k < 0:
            raise DataError(f"k-core sizes must be whole numbers >= 0, got {k!r}")


def prepare(
    ds: Dataset,
    threshold: float | None = None,
    dedup: Dedup = "first",
    min_user_interactions: int = 0,
    min_item_interactions: int = 0,
) -> Dataset:
    """Turn a loaded dataset into the one the engine trains on.

    ``threshold``: keep interactions whose rating is >= threshold (None keeps all; rows
    without a rating are kept, as implicit positives). ``dedup``: for repeated (user, item)
    pairs keep the ``first`` or ``last`` by timestamp (then by file order) or the ``max``
    rating. ``min_user_interactions`` / ``min_item_interactions``: iterative k-core filtering
    until every remaining user and item has at least that many interactions.
    Users and items left without interactions are dropped and the rest re-indexed; pre-split
    parts are filtered and re-indexed the same way.
    """
    if dedup not in ("first", "last", "max"):
        raise DataError(f"unknown duplicate policy {dedup!r}: use first, last or max")
    _check_options(threshold, min_user_interactions, min_item_interactions)
    inter = ds.interactions.with_row_index("_row")
    if threshold is not None:
        inter = inter.filter(pl.col("rating").is_null() | (pl.col("rating") >= threshold))
    duplicated = _has_duplicates(inter)
    if duplicated:  # sorting 10M rows by time only to find none costs more than the check
        inter = _deduplicate(inter, dedup)
    inter = _k_core(inter, min_user_interactions, min_item_interactions)
    if inter.height == 0:
        raise DataError(
            f"{ds.name}: no interactions left after preparation "
            f"(threshold={threshold}, k-core {min_user_interactions}/{min_item_interactions})"
        )
    inter = (inter.sort("_row") if duplicated else inter).drop("_row")

    users = np.unique(inter["user"].to_numpy())
    items = np.unique(inter["item"].to_numpy())
    user_map = _remap(users, ds.n_users)
    item_map = _remap(items, ds.n_items)

    def reindex(frame: pl.DataFrame) -> pl.DataFrame:
        u = user_map[frame["user"].to_numpy()]
        i = item_map[frame["item"].to_numpy()]
        keep = (u >= 0) & (i >= 0)
        return frame.filter(pl.Series(keep)).with_columns(
            pl.Series("user", u[keep], dtype=pl.UInt32), pl.Series("item", i[keep], dtype=pl.UInt32)
        )

    parts = None
    if ds.parts is not None:
        kept = inter.select("user", "item").unique()
        parts = {
            name: reindex(part.join(kept, on=["user", "item"], how="semi"))
            for name, part in ds.parts.items()
        }
    return Dataset.build(
        ds.name,
        reindex(inter),
        _take(ds.items, "item", items),
        _take(ds.users, "user", users),
        source=ds.source,
        parts=parts,
        truth=_take_truth(ds, users, items),
        meta={
            **ds.meta,
            "prepare": {
                "threshold": threshold,
                "dedup": dedup,
                "min_user_interactions": min_user_interactions,
                "min_item_interactions": min_item_interactions,
            },
        },
    )


def _has_duplicates(inter: pl.DataFrame) -> bool:
    """Whether a (user, item) pair occurs more than once (one hash pass over 64-bit keys)."""
    key = pl.col("user").cast(pl.UInt64) * (1 << 32) + pl.col("item").cast(pl.UInt64)
    return inter.height > 0 and inter.select(key.n_unique()).item() < inter.height


def _deduplicate(inter: pl.DataFrame, dedup: Dedup) -> pl.DataFrame:
    if dedup == "max":
        order = [pl.col("rating").fill_null(-np.inf), pl.col("_row")]
        return inter.sort(order, descending=[True, False]).unique(
            ["user", "item"], keep="first", maintain_order=False
        )
    order = [pl.col("timestamp").fill_null(0), pl.col("_row")]
    return inter.sort(order).unique(["user", "item"], keep=dedup, maintain_order=False)


def _k_core(inter: pl.DataFrame, min_user: int, min_item: int) -> pl.DataFrame:
    """Drop users and items below the thresholds until none is left below them."""
    while min_user > 1 or min_item > 1:
        before = inter.height
        if min_user > 1:
            inter = inter.filter(pl.len().over("user") >= min_user)
        if min_item > 1:
            inter = inter.filter(pl.len().over("item") >= min_item)
        if inter.height == before:
            break
    return inter


def _remap(kept: np.ndarray, n: int) -> np.ndarray:
    mapping = np.full(n, -1, dtype=np.int64)
    mapping[kept] = np.arange(kept.shape[0])
    return mapping


def _take(table: pl.DataFrame, col: str, kept: np.ndarray) -> pl.DataFrame:
    return table.select(pl.all().gather(kept)).with_columns(
        pl.Series(col, np.arange(kept.shape[0]), dtype=pl.UInt32)
    )


def _take_truth(ds: Dataset, users: np.ndarray, items: np.ndarray):
    if ds.truth is None:
        return None
    t = ds.truth
    return type(t)(
        user_community=t.user_community[users],
        item_genre=t.item_genre[items],
        item_factors=t.item_factors[items],
        user_factors=t.user_factors[users],
        community_genre_affinity=t.community_genre_affinity,
        genre_names=t.genre_names,
    )
