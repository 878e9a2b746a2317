"""The one shape every source is turned into.

A :class:`Dataset` holds polars tables indexed by contiguous integer ids:

- ``interactions``: ``user`` (UInt32 index), ``item`` (UInt32 index), ``rating`` (Float64, null
  when the source has none), ``timestamp`` (Int64 seconds, null when the source has none);
- ``items``: ``item`` (UInt32 index, sorted 0..n_items-1), ``raw_id`` (String), ``title``
  (String), ``genres`` (List[String]), ``year`` (Int32 or null), then any extra columns;
- ``users``: ``user`` (UInt32 index, sorted 0..n_users-1), ``raw_id`` (String), then any
  attribute columns (``age``, ``gender``, ``occupation`` for MovieLens 100K, ``community`` for
  the synthetic generator).

Raw ids are always strings, so ``"42"`` names the same user whichever source it came from.
Pre-split benchmark sources also fill ``parts`` with their given ``train``/``valid``/``test``
interactions (same columns as ``interactions``, which is then their union).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import polars as pl
import scipy.sparse as sp

from data.errors import DataError

INTERACTION_SCHEMA: dict[str, pl.DataType] = {
    "user": pl.UInt32,
    "item": pl.UInt32,
    "rating": pl.Float64,
    "timestamp": pl.Int64,
}


@dataclass(frozen=True)
class SyntheticTruth:
    """Ground truth the synthetic generator used, for checking explanations against.

    ``user_community``: int array [n_users]; ``item_genre``: int array [n_items] (the item's main
    genre); ``item_factors``: float array [n_items, d]; ``user_factors``: float array
    [n_users, d]; ``community_genre_affinity``: float array [n_communities, n_genres].
    """

    user_community: np.ndarray
    item_genre: np.ndarray
    item_factors: np.ndarray
    user_factors: np.ndarray
    community_genre_affinity: np.ndarray
    genre_names: tuple[str, ...]


@dataclass(frozen=True)
class Dataset:
    """A loaded dataset: interactions, items and users with contiguous ids.

    Build one with :func:`Dataset.build`, which checks the tables and fills defaults.
    """

    name: str
    interactions: pl.DataFrame
    items: pl.DataFrame
    users: pl.DataFrame
    source: str = ""
    parts: dict[str, pl.DataFrame] | None = None
    truth: SyntheticTruth | None = None
    meta: dict[str, Any] = field(default_factory=dict)

    # -- sizes ---------------------------------------------------------------------------
    @property
    def n_users(self) -> int:
        return self.users.height

    @property
    def n_items(self) -> int:
        return self.items.height

    @property
    def n_interactions(self) -> int:
        return self.interactions.height

    @property
    def density(self) -> float:
        cells = self.n_users * self.n_items
        return self.n_interactions / cells if cells else 0.0

    # -- id maps ---------------------------------------------------------------------------
    @property
    def user_raw_ids(self) -> np.ndarray:
        """Raw user ids as strings, indexed by user index: [n_users]."""
        return self.users["raw_id"].to_numpy()

    @property
    def item_raw_ids(self) -> np.ndarray:
        """Raw item ids as strings, indexed by item index: [n_items]."""
        return self.items["raw_id"].to_numpy()

    def user_index(self, raw_id: str | int) -> int:
        """Index of the user with this raw id; :class:`DataError` when there is none."""
        return _lookup(self.users, "user", raw_id, f"user {raw_id!r} is not in dataset {self.name}")

    def item_index(self, raw_id: str | int) -> int:
        """Index of the item with this raw id; :class:`DataError` when there is none."""
        return _lookup(self.items, "item", raw_id, f"item {raw_id!r} is not in dataset {self.name}")

    # -- matrices --------------------------------------------------------------------------
    def matrix(self, interactions: pl.DataFrame | None = None) -> sp.csr_matrix:
        """Binary user x item CSR matrix [n_users, n_items] (float32) of ``interactions``.

        Defaults to all interactions; duplicates count once.
        """
        inter = self.interactions if interactions is None else interactions
        return to_csr(inter, self.n_users, self.n_items)

    # -- construction ----------------------------------------------------------------------
    @classmethod
    def build(
        cls,
        name: str,
        interactions: pl.DataFrame,
        items: pl.DataFrame,
        users: pl.DataFrame,
        **kwargs: Any,
    ) -> Dataset:
        """Check and normalise the three tables, then make the dataset.

        ``interactions`` needs ``user`` and ``item`` index columns; ``rating`` and
        ``timestamp`` are added as nulls when missing. ``items`` and ``users`` need the index
        column and ``raw_id``; items get empty ``title``/``genres``/``year`` when missing.
        """
        interactions = normalise_interactions(interactions)
        items = _normalise_items(items)
        users = _normalise_users(users)
        for col, table, n in (("user", users, users.height), ("item", items, items.height)):
            if interactions.height and int(interactions[col].max()) >= n:
                raise DataError(
                    f"{name}: interaction {col} index out of range (table has {n} rows)"
                )
            if not table[col].equals(pl.Series(col, np.arange(n), dtype=pl.UInt32)):
                raise DataError(f"{name}: {col} table must be indexed 0..{n - 1} in order")
        parts = kwargs.pop("parts", None)
        if parts is not None:
            parts = {k: normalise_interactions(v) for k, v in parts.items()}
        return cls(
            name=name, interactions=interactions, items=items, users=users, parts=parts, **kwargs
        )


def normalise_interactions(frame: pl.DataFrame) -> pl.DataFrame:
    """Cast to :data:`INTERACTION_SCHEMA`, adding null ``rating``/``timestamp`` when absent."""
    for col in ("rating", "timestamp"):
        if col not in frame.columns:
            frame = frame.with_columns(pl.lit(None, dtype=INTERACTION_SCHEMA[col]).alias(col))
    return frame.select([pl.col(c).cast(t) for c, t in INTERACTION_SCHEMA.items()])


def _normalise_items(items: pl.DataFrame) -> pl.DataFrame:
    if "title" not in items.columns:
        items = items.with_columns(pl.col("raw_id").cast(pl.String).alias("title"))
    if "genres" not in items.columns:
        items = items.with_columns(pl.lit([], dtype=pl.List(pl.String)).alias("genres"))
    if "year" not in items.columns:
        items = items.with_columns(pl.lit(None, dtype=pl.Int32).alias("year"))
    first = ["item", "raw_id", "title", "genres", "year"]
    items = items.with_columns(
        pl.col("item").cast(pl.UInt32),
        pl.col("raw_id").cast(pl.String),
        pl.col("title").cast(pl.String),
        pl.col("genres").cast(pl.List(pl.String)),
        pl.col("year").cast(pl.Int32),
    )
    return items.select(first + [c for c in items.columns if c not in first])


def _normalise_users(users: pl.DataFrame) -> pl.DataFrame:
    users = users.with_columns(pl.col("user").cast(pl.UInt32), pl.col("raw_id").cast(pl.String))
    first = ["user", "raw_id"]
    return users.select(first + [c for c in users.columns if c not in first])


def to_csr(interactions: pl.DataFrame, n_users: int, n_items: int) -> sp.csr_matrix:
    """Binary CSR [n_users, n_items] float32 from a table with ``user`` and ``item`` indices."""
    rows = interactions["user"].to_numpy().astype(np.int64, copy=False)
    cols = interactions["item"].to_numpy().astype(np.int64, copy=False)
    mat = sp.csr_matrix(
        (np.ones(rows.shape[0], dtype=np.float32), (rows, cols)), shape=(n_users, n_items)
    )
    mat.sum_duplicates()
    mat.data[:] = 1.0
    return mat


def _lookup(table: pl.DataFrame, col: str, raw_id: str | int, message: str) -> int:
    hit = table.filter(pl.col("raw_id") == str(raw_id))
    if hit.height == 0:
        raise DataError(message)
    return int(hit[col][0])
