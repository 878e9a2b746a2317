"""Beyond-accuracy metrics of each user's top-K list, and of a saved run.

:func:`user_metrics` returns a *wide* per-user table: one row per evaluated user, a ``user``
column (Int64) and one Float64 column per metric below (null where a metric is undefined for
that user, e.g. calibration without genres in the history). The overall value of a metric is
the mean over the users where it is defined (:func:`user_means`); the table keeps the whole
distribution. :func:`engine.catalogue.catalogue_metrics` gives the catalogue table and
:func:`run_metrics` computes both for a saved run; :func:`store` keeps them with it.

Inputs (shapes): ``recs`` int [U, K] item indices in rank order (distinct within a row),
``users`` int [U], ``train`` and ``heldout`` CSR [n_users, n_items] (binary), ``genres``
[n_items, n_genres] multi-hot (dense or sparse; :func:`genre_matrix` builds it from
``Dataset.items["genres"]``), ``item_embeddings`` float [n_items, d].

Item similarity is always the cosine of two item vectors (0 when either vector is zero), on
one of three representations: ``cooccurrence`` (the item's column of the training matrix,
so sim = co-count / sqrt(count_i count_j), Microsoft Recommenders' ``item_cooccurrence_count``),
``genre`` (multi-hot genre vectors, MS Recommenders' ``item_feature_vector``) and
``embedding`` (the model's item vectors). Per-user metrics (exact variants in
:data:`USER_DOCS`):

- ``ild_*`` = 1 - mean over the K(K-1)/2 unordered pairs of listed items of their cosine;
- ``novelty`` = mean over listed items of -log2(pop_i / |train|), pop_i = training
  interactions with i, |train| = all training interactions (the item-choice model of Castells
  et al., ECIR 2011, as ``recommenders.evaluation.python_evaluation.historical_item_novelty``);
  items never seen in training count as pop_i = 1 (MS Recommenders' ``novelty`` averages
  over all recommended (user, item) pairs, the same as this mean of list means when every
  list has K items);
- ``novelty_users`` = the same with -log2(pop_i / number of users with a training
  interaction) (Evidently's variant; on a binary matrix pop_i is also the item's user count);
- ``unexpectedness*`` = 1 - mean over (listed item, history item) pairs of their cosine;
- ``serendipity*`` = mean over listed items of (1 - mean cosine to the history) x relevance,
  relevance = 1 when the item is held out for the user (MS Recommenders' ``user_serendipity``);
- ``arp`` = mean training popularity pop_i of listed items (Abdollahpouri et al.);
- ``long_tail_share`` = share of listed items outside the head (the most popular items
  covering 80% of training interactions);
- ``calibration_kl`` = KL(p || (1 - 0.01) q + 0.01 p) in nats (Steck, RecSys 2018), p and q
  the genre distributions of the history and the list, each item spreading weight 1 evenly
  over its genres.

The unsuffixed ``unexpectedness`` and ``serendipity`` use the co-occurrence representation;
``_genre`` and ``_embedding`` variants are added when those vectors exist. Everything is
vectorised (scipy.sparse / numpy, user batches bounded in memory; no loop over single users).
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import polars as pl
import scipy.sparse as sp

from data.dataset import Dataset
from data.errors import ReclensError
from data.splits import Split
from engine.catalogue import (
    CATALOGUE_DOCS,
    HEAD_SHARE,
    catalogue_metrics,
    check_lists,
    head_mask,
    item_popularity,
)
from engine.groups import GROUP_DOCS, GroupGaps, group_gaps, user_groups
from engine.runs import (
    BEYOND_METRICS,
    BEYOND_PER_USER,
    Run,
    read_derived_json,
    to_json,
    write_derived,
)

CALIBRATION_ALPHA = 0.01
BATCH_CELLS = 1 << 22  # cells (users x dims x K) per batch of the similarity steps

USER_DOCS: dict[str, str] = {
    "ild_genre": "Intra-list diversity: 1 - mean pairwise cosine of the items' genre vectors.",
    "ild_embedding": "Intra-list diversity: 1 - mean pairwise cosine of the model's item vectors.",
    "ild_cooccurrence": (
        "Intra-list diversity: 1 - mean pairwise cosine of the items' training-matrix columns "
        "(co-count / sqrt(count_i count_j))."
    ),
    "novelty": (
        "Mean over listed items of -log2(training interactions with the item / all training "
        "interactions) (Castells et al. choice model, as Microsoft Recommenders)."
    ),
    "novelty_users": (
        "Mean over listed items of -log2(users who interacted with the item / users with "
        "training interactions) (Evidently's variant)."
    ),
    "unexpectedness": (
        "1 - mean co-occurrence cosine between listed items and the user's training items."
    ),
    "unexpectedness_genre": "1 - mean genre cosine between listed items and the user's history.",
    "unexpectedness_embedding": (
        "1 - mean cosine of model item vectors between listed items and the user's history."
    ),
    "serendipity": (
        "Mean over listed items of (1 - mean co-occurrence cosine to the history) x relevance "
        "(held-out hit), as Microsoft Recommenders."
    ),
    "serendipity_genre": "Serendipity with genre-vector cosine.",
    "serendipity_embedding": "Serendipity with the cosine of the model's item vectors.",
    "arp": "Average recommendation popularity: mean training interaction count of listed items.",
    "long_tail_share": (
        "Share of listed items in the long tail (outside the most popular items that cover 80% "
        "of training interactions)."
    ),
    "calibration_kl": (
        "KL divergence (nats) of the list's genre distribution from the history's, list smoothed "
        "with alpha = 0.01 (Steck 2018); 0 = perfectly calibrated."
    ),
}

METRIC_DOCS: dict[str, str] = {**USER_DOCS, **CATALOGUE_DOCS, **GROUP_DOCS}
"""Every metric name -> a one-line description (the dashboard's tooltips)."""


# -- item representations ------------------------------------------------------------------------
def genre_matrix(items: pl.DataFrame) -> tuple[sp.csr_matrix, list[str]]:
    """Multi-hot genres CSR [n_items, n_genres] (float64) and the genre names (sorted).

    ``items`` is ``Dataset.items`` (``item`` index and ``genres`` List[String] columns).
    """
    if "genres" not in items.columns:
        return sp.csr_matrix((items.height, 0)), []
    exploded = (
        items.select(pl.col("item").cast(pl.Int64), pl.col("genres"))
        .explode("genres")
        .drop_nulls("genres")
        .unique(["item", "genres"])
    )
    names = sorted(exploded["genres"].unique().to_list())
    if not names:
        return sp.csr_matrix((items.height, 0)), []
    code = {name: j for j, name in enumerate(names)}
    cols = exploded["genres"].replace_strict(code, return_dtype=pl.Int64).to_numpy()
    rows = exploded["item"].to_numpy()
    mat = sp.csr_matrix(
        (np.ones(rows.shape[0]), (rows, cols)), shape=(items.height, len(names)), dtype=np.float64
    )
    return mat, names


def _unit_rows(x: np.ndarray | sp.spmatrix) -> np.ndarray | sp.csr_matrix:
    """Rows scaled to unit L2 norm (zero rows stay zero); sparse stays sparse (CSR)."""
    if sp.issparse(x):
        x = sp.csr_matrix(x, dtype=np.float64)
        norms = np.sqrt(np.asarray(x.multiply(x).sum(axis=1)).ravel())
        inv = np.divide(1.0, norms, out=np.zeros_like(norms), where=norms > 0)
        return sp.csr_matrix(sp.diags(inv) @ x)
    x = np.asarray(x, dtype=np.float64)
    norms = np.linalg.norm(x, axis=1)
    inv = np.divide(1.0, norms, out=np.zeros_like(norms), where=norms > 0)
    return x * inv[:, None]


def _row_sq_norms(x: np.ndarray | sp.spmatrix) -> np.ndarray:
    if sp.issparse(x):
        return np.asarray(x.multiply(x).sum(axis=1)).ravel()
    return np.einsum("ij,ij->i", x, x)


def _dense(x: Any) -> np.ndarray:
    return x.toarray() if sp.issparse(x) else np.asarray(x)


def list_similarity(unit: np.ndarray | sp.csr_matrix, recs: np.ndarray) -> np.ndarray:
    """Mean pairwise cosine within each list: float64 [U] (nan when K < 2).

    ``unit``: item vectors with unit (or zero) rows [n_items, d]. The sum over unordered pairs
    is (sum_l x_l . S_u - sum_l |x_l|^2) / 2 with S_u the sum of the list's vectors: for vectors
    no longer than the catalogue (genres, embeddings) x_l . S_u comes from S_u [b, d], at
    O(U K d) cost with no K x K matrices; for longer ones (co-occurrence columns, d = users)
    from the listed items' cosines to each other (:func:`_listed_cosine_sums`).
    """
    u, k = recs.shape
    if k < 2:
        return np.full(u, np.nan)
    if _by_listed_items(unit):
        rows = np.repeat(np.arange(u), k)
        sums = _listed_cosine_sums(unit, recs.ravel(), _selection(recs, unit.shape[0]), rows)
        total = sums.reshape(u, k).sum(axis=1)
    else:
        total = np.empty(u)
        step = _batch_users(unit.shape[1], k)
        for lo in range(0, u, step):
            hi = min(u, lo + step)
            summed = _selection(recs[lo:hi], unit.shape[0]) @ unit  # [b, d]
            total[lo:hi] = _row_sq_norms(summed)
    self_terms = _row_sq_norms(unit)[recs].sum(axis=1)
    return (total - self_terms) / 2.0 / (k * (k - 1) / 2.0)


def _batch_users(d: int, k: int) -> int:
    """Users per batch so that a batch's [b, d] / [b, k, d] blocks stay near BATCH_CELLS."""
    return max(1, BATCH_CELLS // max(d * k, 1))


def _by_listed_items(unit: np.ndarray | sp.spmatrix) -> bool:
    """Whether the similarity steps go through the listed items' cosines: for vectors longer
    than the catalogue (a user's summed vector [d] would cost more than an item's cosines)."""
    return unit.shape[1] > unit.shape[0]


def _listed_cosine_sums(
    unit: np.ndarray | sp.csr_matrix,
    anchors: np.ndarray,
    sets: sp.csr_matrix,
    set_of: np.ndarray,
) -> np.ndarray:
    """For each pair p, the sum of cos(anchors[p], j) over the items j of row set_of[p] of
    ``sets`` (CSR [S, n_items], entries weighting the terms): float64 [P].

    The cosines of the distinct anchor items to every item are computed a block of rows at a
    time (about BATCH_CELLS cells), and each pair's terms are gathered from its block, at most
    about BATCH_CELLS terms at once.
    """
    listed, inv = np.unique(anchors, return_inverse=True)
    inv = inv.ravel()
    order = np.argsort(inv, kind="stable")
    sorted_inv = inv[order]
    columns = unit.T.tocsr() if sp.issparse(unit) else unit.T
    lengths = np.diff(sets.indptr)
    out = np.zeros(anchors.shape[0])
    step = max(1, BATCH_CELLS // max(unit.shape[0], 1))
    for lo in range(0, listed.shape[0], step):
        block = _dense(unit[listed[lo : lo + step]] @ columns)  # [c, n_items] cosines
        first, last = np.searchsorted(sorted_inv, [lo, lo + block.shape[0]])
        pairs = order[first:last]
        filled = np.cumsum(lengths[set_of[pairs]]) // BATCH_CELLS  # terms so far, in batches
        for piece in np.split(pairs, np.flatnonzero(np.diff(filled)) + 1):
            sub = sets[set_of[piece]]
            row_of = np.repeat(np.arange(piece.shape[0]), np.diff(sub.indptr))
            terms = block[inv[piece][row_of] - lo, sub.indices] * sub.data
            out[piece] = np.bincount(row_of, weights=terms, minlength=piece.shape[0])
    return out


def history_similarity(
    unit: np.ndarray | sp.csr_matrix, history: sp.csr_matrix, recs: np.ndarray
) -> np.ndarray:
    """Mean cosine of each listed item to the user's history items: float64 [U, K].

    ``history``: CSR [U, n_items], row u = the user's (binary) history; nan for an empty one.
    Vectors no longer than the catalogue: with P_u = sum of the history's unit vectors (dense
    [b, d] per batch of users), the summed cosine of listed item l is x_l . P_u, a gather over
    the stored entries of the listed items' rows (sparse vectors) or an einsum (dense ones).
    Longer ones (co-occurrence columns): the listed items' cosines to the history items
    (:func:`_listed_cosine_sums`). Never an items x items matrix.
    """
    u, k = recs.shape
    d = unit.shape[1]
    counts = np.diff(history.indptr).astype(np.float64)
    if _by_listed_items(unit):
        sums = _listed_cosine_sums(unit, recs.ravel(), history, np.repeat(np.arange(u), k))
        with np.errstate(invalid="ignore", divide="ignore"):
            return sums.reshape(u, k) / counts[:, None]
    out = np.empty((u, k))
    step = _batch_users(d, k)
    for lo in range(0, u, step):
        hi = min(u, lo + step)
        profile = _dense(history[lo:hi] @ unit)  # [b, d]: summed unit vectors of the history
        block = recs[lo:hi]
        if sp.issparse(unit):
            rows = unit[block.ravel()]  # CSR [b k, d]
            row_of = np.repeat(np.arange(rows.shape[0]), np.diff(rows.indptr))
            values = rows.data * profile[row_of // k, rows.indices]
            dots = np.bincount(row_of, weights=values, minlength=rows.shape[0])
            out[lo:hi] = dots.reshape(hi - lo, k)
        else:
            out[lo:hi] = np.einsum("bkd,bd->bk", unit[block], profile)
    with np.errstate(invalid="ignore", divide="ignore"):
        return out / counts[:, None]


def _selection(recs: np.ndarray, n_items: int) -> sp.csr_matrix:
    """Binary CSR [U, n_items] with a 1 at every listed item."""
    u, k = recs.shape
    return sp.csr_matrix(
        (np.ones(u * k), recs.ravel(), np.arange(0, u * k + 1, k)), shape=(u, n_items)
    )


# -- per-user metrics ----------------------------------------------------------------------------
def user_metrics(
    recs: np.ndarray,
    users: np.ndarray,
    train: sp.spmatrix,
    heldout: sp.spmatrix,
    genres: np.ndarray | sp.spmatrix | None = None,
    item_embeddings: np.ndarray | None = None,
    head_share: float = HEAD_SHARE,
    alpha: float = CALIBRATION_ALPHA,
) -> pl.DataFrame:
    """Wide per-user table: ``user`` (Int64) + one Float64 column per metric of :data:`USER_DOCS`.

    ``genres`` [n_items, n_genres] adds ``ild_genre``, ``unexpectedness_genre``,
    ``serendipity_genre`` and ``calibration_kl`` (skipped when it has no non-zero entry);
    ``item_embeddings`` [n_items, d] adds the ``_embedding`` variants. Values undefined for a
    user (no genres in the history, K = 1 for ILD) are null.
    """
    values = user_values(recs, users, train, heldout, genres, item_embeddings, head_share, alpha)
    users = np.asarray(users).astype(np.int64)
    frame = pl.DataFrame({"user": pl.Series("user", users, dtype=pl.Int64)})
    return frame.with_columns(
        [pl.Series(name, v, dtype=pl.Float64, nan_to_null=True) for name, v in values.items()]
    )


def user_values(
    recs: np.ndarray,
    users: np.ndarray,
    train: sp.spmatrix,
    heldout: sp.spmatrix,
    genres: np.ndarray | sp.spmatrix | None = None,
    item_embeddings: np.ndarray | None = None,
    head_share: float = HEAD_SHARE,
    alpha: float = CALIBRATION_ALPHA,
) -> dict[str, np.ndarray]:
    """The per-user metrics as ``{name: float64 [U]}`` (nan where undefined); see
    :func:`user_metrics`."""
    train = sp.csr_matrix(train)
    heldout = sp.csr_matrix(heldout)
    n_users, n_items = train.shape
    if heldout.shape != train.shape:
        raise ReclensError(
            f"held-out matrix shape {heldout.shape} differs from training shape {train.shape}"
        )
    recs, users = check_lists(recs, users, n_items)
    if users.min() < 0 or users.max() >= n_users:
        raise ReclensError(f"user index out of range 0..{n_users - 1}")
    if not 0 <= alpha < 1:
        raise ReclensError(f"calibration alpha must be in [0, 1), got {alpha}")
    spaces: dict[str, np.ndarray | sp.csr_matrix] = {}
    if genres is not None:
        genres = sp.csr_matrix(genres, dtype=np.float64)
        if genres.shape[0] != n_items:
            raise ReclensError(f"genre matrix has {genres.shape[0]} rows for {n_items} items")
        if genres.nnz:
            spaces["genre"] = _unit_rows(genres)
    if item_embeddings is not None:
        emb = np.asarray(item_embeddings, dtype=np.float64)
        if emb.ndim != 2 or emb.shape[0] != n_items:
            raise ReclensError(
                f"item embeddings must be [n_items={n_items}, d], got shape {emb.shape}"
            )
        if not np.isfinite(emb).all():
            raise ReclensError("item embeddings contain NaN or infinite values")
        spaces["embedding"] = _unit_rows(emb)
    pop = item_popularity(train)
    spaces["cooccurrence"] = _unit_rows(train.T.tocsr())

    history = sp.csr_matrix(train[users])
    history.data[:] = 1.0
    rel = _relevance(heldout, users, recs)
    out: dict[str, np.ndarray] = {}
    for name in ("genre", "embedding", "cooccurrence"):
        if name in spaces:
            out[f"ild_{name}"] = 1.0 - list_similarity(spaces[name], recs)

    out["novelty"] = item_novelty(train, "interactions")[recs].mean(axis=1)
    out["novelty_users"] = item_novelty(train, "users")[recs].mean(axis=1)

    for name in ("cooccurrence", "genre", "embedding"):
        if name not in spaces:
            continue
        tag = "" if name == "cooccurrence" else f"_{name}"
        sim = history_similarity(spaces[name], history, recs)
        out[f"unexpectedness{tag}"] = 1.0 - sim.mean(axis=1)
        out[f"serendipity{tag}"] = ((1.0 - sim) * rel).mean(axis=1)

    out["arp"] = pop[recs].astype(np.float64).mean(axis=1)
    head = head_mask(pop, head_share)
    out["long_tail_share"] = (~head[recs]).mean(axis=1)
    if "genre" in spaces:
        out["calibration_kl"] = calibration_kl(genres, history, recs, alpha)
    return out


def item_novelty(train: sp.spmatrix, variant: str = "interactions") -> np.ndarray:
    """Self-information of every item: float64 [n_items].

    ``interactions``: -log2(pop_i / total training interactions) (Castells et al.'s choice
    model, Microsoft Recommenders' ``historical_item_novelty``); ``users``: -log2(pop_i / users
    with a training interaction) (Evidently). pop_i = training interactions with item i (on a
    binary matrix, also its number of users); items never seen in training count as pop_i = 1.
    """
    train = sp.csr_matrix(train)
    raw = item_popularity(train)
    pop = np.maximum(raw, 1).astype(np.float64)
    if variant == "interactions":
        total = max(float(raw.sum()), 1.0)
    elif variant == "users":
        total = max(float((np.diff(train.indptr) > 0).sum()), 1.0)
    else:
        raise ReclensError(f"unknown novelty variant {variant!r}: use interactions or users")
    return -np.log2(np.minimum(pop / total, 1.0))


def _relevance(heldout: sp.csr_matrix, users: np.ndarray, recs: np.ndarray) -> np.ndarray:
    """float64 [U, K]: 1 where the listed item is in the user's held-out row."""
    u, k = recs.shape
    rows = np.repeat(users, k)
    values = np.asarray(heldout[rows, recs.ravel()]).ravel()
    return (values != 0).astype(np.float64).reshape(u, k)


def calibration_kl(
    genres: sp.spmatrix, history: sp.csr_matrix, recs: np.ndarray, alpha: float
) -> np.ndarray:
    """Steck's miscalibration per user: float64 [U] (nan when the history has no genre).

    p(g|i) = 1/|genres(i)| for each genre of i; p(g|u) and q(g|u) average p(g|i) over the
    history and the list (items without genres carry no weight); the result is
    sum_g p log(p / ((1 - alpha) q + alpha p)) with 0 log 0 = 0. A list with no genre at all
    gives q = 0, hence KL = log(1 / alpha).
    """
    per_item = sp.csr_matrix(genres, dtype=np.float64)
    counts = np.asarray(per_item.sum(axis=1)).ravel()
    inv = np.divide(1.0, counts, out=np.zeros_like(counts), where=counts > 0)
    per_item = sp.csr_matrix(sp.diags(inv) @ per_item)
    p = _dense(history @ per_item)
    q = _dense(_selection(recs, per_item.shape[0]) @ per_item)
    p_mass = p.sum(axis=1, keepdims=True)
    q_mass = q.sum(axis=1, keepdims=True)
    with np.errstate(invalid="ignore", divide="ignore"):
        p = p / p_mass
        q = np.where(q_mass > 0, q / np.where(q_mass > 0, q_mass, 1.0), 0.0)
        mix = (1.0 - alpha) * q + alpha * p
        terms = np.where(p > 0, p * np.log(np.where(p > 0, p / mix, 1.0)), 0.0)
    kl = terms.sum(axis=1)
    kl[p_mass.ravel() == 0] = np.nan
    return kl


def user_means(per_user: pl.DataFrame) -> dict[str, float]:
    """Mean of every metric column over the users where it is defined (nan when none)."""
    out: dict[str, float] = {}
    for name in per_user.columns:
        if name == "user" or not per_user[name].dtype.is_float():
            continue
        col = per_user[name].drop_nulls().drop_nans()
        out[name] = float(col.mean()) if col.len() else float("nan")
    return out


def summary_table(per_user: pl.DataFrame) -> pl.DataFrame:
    """Distribution of each per-user metric: ``metric``, ``mean``, ``std``, ``min``, ``p25``,
    ``median``, ``p75``, ``max``, ``n_users`` (users where it is defined)."""
    metrics = [c for c in per_user.columns if c != "user" and per_user[c].dtype.is_float()]
    long = per_user.unpivot(index="user", on=metrics, variable_name="metric").drop_nulls("value")
    long = long.filter(pl.col("value").is_not_nan())
    order = pl.DataFrame({"metric": metrics}).with_row_index("_order")
    stats = long.group_by("metric").agg(
        pl.col("value").mean().alias("mean"),
        pl.col("value").std().alias("std"),
        pl.col("value").min().alias("min"),
        pl.col("value").quantile(0.25, "linear").alias("p25"),
        pl.col("value").median().alias("median"),
        pl.col("value").quantile(0.75, "linear").alias("p75"),
        pl.col("value").max().alias("max"),
        pl.len().alias("n_users"),
    )
    return order.join(stats, on="metric", how="left").sort("_order").drop("_order")


# -- runs ----------------------------------------------------------------------------------------
@dataclass
class BeyondResult:
    """Beyond-accuracy metrics of one set of top-``k`` lists.

    ``per_user``: wide table (``user`` + metric columns); ``per_user_mean``: their means;
    ``catalogue``: ``metric``/``value`` table; ``groups``: user-group gaps when grouped;
    ``info``: context (run, model, dataset, embedding kind, n_users, n_items).
    """

    k: int
    per_user: pl.DataFrame
    per_user_mean: dict[str, float]
    catalogue: pl.DataFrame
    groups: GroupGaps | None = None
    info: dict[str, Any] = field(default_factory=dict)

    def catalogue_dict(self) -> dict[str, float]:
        return dict(zip(self.catalogue["metric"], self.catalogue["value"], strict=True))

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready: ``k``, ``per_user_mean``, ``catalogue``, ``info`` and ``groups``."""
        out: dict[str, Any] = {
            "k": self.k,
            "per_user_mean": _finite(self.per_user_mean),
            "catalogue": _finite(self.catalogue_dict()),
            "info": self.info,
        }
        if self.groups is not None:
            out["groups"] = self.groups.to_dict()
        return out


def _finite(values: Mapping[str, float]) -> dict[str, float | None]:
    return {
        k: (float(v) if v is not None and math.isfinite(v) else None) for k, v in values.items()
    }


def compute(
    recs: np.ndarray,
    users: np.ndarray,
    train: sp.spmatrix,
    heldout: sp.spmatrix,
    genres: np.ndarray | sp.spmatrix | None = None,
    item_embeddings: np.ndarray | None = None,
    group_labels: np.ndarray | None = None,
    group_by: str = "",
    position_weighted: bool = False,
) -> BeyondResult:
    """Per-user table, means, catalogue table and (with ``group_labels`` [U]) group gaps."""
    per_user = user_metrics(recs, users, train, heldout, genres, item_embeddings)
    catalogue = catalogue_metrics(recs, users, train, heldout, position_weighted)
    groups = None
    if group_labels is not None:
        groups = group_gaps(per_user, group_labels, by=group_by)
    return BeyondResult(
        k=int(np.asarray(recs).shape[1]),
        per_user=per_user,
        per_user_mean=user_means(per_user),
        catalogue=catalogue,
        groups=groups,
    )


def recommendation_lists(frame: pl.DataFrame, k: int) -> tuple[np.ndarray, np.ndarray]:
    """``(recs [U, k], users [U])`` from a ``recommendations.parquet`` table (first k by rank).

    Raises :class:`ReclensError` when columns are missing or a user has fewer than k rows.
    """
    missing = {"user", "rank", "item"} - set(frame.columns)
    if missing:
        raise ReclensError(f"recommendations table lacks column(s) {', '.join(sorted(missing))}")
    if k < 1:
        raise ReclensError(f"k must be at least 1, got {k}")
    top = frame.select("user", "rank", "item").sort(["user", "rank"])
    top = top.with_columns(pl.int_range(pl.len()).over("user").alias("_pos"))
    sizes = top.group_by("user").agg(pl.len().alias("n"))
    short = sizes.filter(pl.col("n") < k)
    if short.height:
        fewest = int(sizes["n"].min())
        raise ReclensError(
            f"{short.height} users have fewer than k={k} recommendations (fewest {fewest}); "
            f"use a smaller --k"
        )
    top = top.filter(pl.col("_pos") < k)
    users = top["user"].to_numpy()[::k].astype(np.int64)
    recs = top["item"].to_numpy().astype(np.int64).reshape(-1, k)
    return recs, users


def run_metrics(
    run: Run,
    dataset: Dataset,
    split: Split,
    k: int = 10,
    group_by: str | None = None,
    position_weighted: bool = False,
) -> BeyondResult:
    """Beyond-accuracy metrics of a saved run's top-``k`` test lists.

    ``dataset`` and ``split``: the run's prepared data (:class:`engine.session.OpenRun` holds
    them). Relevance is the test part of the split, history and popularity its train part (the
    model's input). Genres come from ``Dataset.items``; item vectors from the run's saved item
    embeddings unless they are just training-matrix columns (then ``ild_embedding`` would
    repeat ``ild_cooccurrence`` and is left out).
    """
    recs, users = recommendation_lists(run.recommendations(), k)
    genres, _ = genre_matrix(dataset.items)
    embeddings, kind = _run_embeddings(run, dataset.n_items)
    labels = None
    if group_by:
        labels = user_groups(dataset, split, users, group_by)
    result = compute(
        recs,
        users,
        split.train,
        split.test,
        genres if genres.nnz else None,
        embeddings,
        labels,
        group_by or "",
        position_weighted,
    )
    result.info = {
        "run": str(run.path),
        "model": run.name,
        "dataset": run.dataset,
        "embedding_kind": kind,
        "n_users": int(users.shape[0]),
        "n_items": int(dataset.n_items),
        "part": "test",
    }
    return result


STORED_K = 10
"""The list length of the beyond-accuracy metrics stored with every run."""


def save(run: Run, result: BeyondResult, dataset: Dataset) -> None:
    """Store ``result`` in the run folder (JSON means and catalogue, Parquet per-user table),
    recorded in the run's manifest."""
    users = result.per_user["user"].to_numpy()
    raw = pl.Series("raw_id", dataset.user_raw_ids[users].astype(str), dtype=pl.String)
    table = result.per_user.clone().insert_column(1, raw)
    write_derived(
        run.path,
        {
            BEYOND_METRICS: lambda path: path.write_text(
                json.dumps(to_json(result.to_dict()), indent=2, allow_nan=False) + "\n"
            ),
            BEYOND_PER_USER: table.write_parquet,
        },
    )
    run.refresh_manifest()


def store(run: Run, dataset: Dataset, split: Split) -> BeyondResult:
    """Compute the run's beyond-accuracy metrics at :data:`STORED_K` and store them (K capped at
    the shortest stored list: in a small catalogue a user may have fewer unseen items)."""
    sizes = run.recommendations().group_by("user").len()["len"]
    shortest = int(sizes.min()) if sizes.len() else STORED_K  # type: ignore[arg-type]
    result = run_metrics(run, dataset, split, k=max(1, min(STORED_K, dataset.n_items, shortest)))
    save(run, result, dataset)
    return result


def _run_embeddings(run: Any, n_items: int) -> tuple[np.ndarray | None, str | None]:
    """The run's item vectors [n_items, d] and their kind, or (None, kind) when unusable."""
    try:
        emb = run.item_embeddings()
    except ReclensError:
        return None, None
    if emb.kind == "interactions" or emb.vectors.shape[0] != n_items:
        return None, emb.kind
    vectors = np.zeros((n_items, emb.vectors.shape[1]), dtype=np.float64)
    vectors[emb.index] = emb.vectors
    if not np.isfinite(vectors).all():
        return None, emb.kind
    return vectors, emb.kind


def load_stored(run: Run) -> dict[str, Any] | None:
    """The stored beyond-accuracy means and catalogue of a run, or None when there are none."""
    return read_derived_json(run.path, BEYOND_METRICS, run.manifest)
