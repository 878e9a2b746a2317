"""Catalogue-level metrics: coverage, individual item exposure fairness, popularity bias.

All functions work on the top-K lists of ``m`` evaluated users over a catalogue of ``n``
items: ``recs`` is an int array [m, k] of item indices (rank order, distinct within a row).
The exposure of item ``i`` is ``c_i``, the number of lists containing it (or, with
``position_weighted=True``, the sum over its occurrences of ``1 / log2(rank + 1)``).

Exposure fairness follows Rampisela, Maistro, Ruotsalo and Lioma, "Evaluation Measures of
Individual Item Fairness for Recommender Systems: A Critical Study" (ACM TORS 2024), both in its
original form (``gini``, ``entropy``, ``jain``, ``fsat``) and in the corrected form
(``*_corrected``) that rescales each measure by its attainable extremes given n, m and k:

- unfairest attainable allocation: the same k items in every list (exposures ``m`` for k
  items, 0 for the other n - k);
- fairest attainable allocation: exposures as equal as integers allow with every item at
  most ``m`` times: ``km = q n + r`` gives r items ``q + 1`` and n - r items ``q``.

The corrected measures keep the orientation of the original one (Gini: 0 fairest, 1 unfairest;
entropy, Jain, FSat: 0 unfairest, 1 fairest). :data:`CATALOGUE_DOCS` holds one line per metric.

Everything is vectorised with numpy / scipy.sparse (no Python loop over users or items).
"""

from __future__ import annotations

import math

import numpy as np
import polars as pl
import scipy.sparse as sp

from data.errors import ReclensError

HEAD_SHARE = 0.8

CATALOGUE_DOCS: dict[str, str] = {
    "coverage": "Item coverage: distinct recommended items / n (all catalogue items).",
    "coverage_corrected": (
        "Corrected coverage: (distinct - k) / (n - k) when km >= n, else (distinct - k) / "
        "(k(m - 1)); 0 = every list identical, 1 = the most distinct items attainable."
    ),
    "distributional_coverage": (
        "Distributional coverage (Shani & Gunawardana eq. 21, as Microsoft Recommenders): "
        "-sum p_i log2 p_i with p_i = c_i / (km), in bits."
    ),
    "gini": (
        "Gini index of item exposures c (ascending order, never-recommended items included): "
        "sum_j (2j - n - 1) c_(j) / (n sum c); 0 = equal, lower is fairer."
    ),
    "gini_corrected": (
        "Gini rescaled by its attainable extremes given n, m, k (Rampisela et al.): "
        "0 = fairest attainable, 1 = the same k items in every list."
    ),
    "entropy": (
        "Shannon entropy of the exposure shares c_i / (km), normalised by log n; higher is fairer."
    ),
    "entropy_corrected": (
        "Entropy rescaled by its attainable extremes (Rampisela et al.): "
        "0 = the same k items in every list, 1 = fairest attainable."
    ),
    "jain": "Jain's index (sum c)^2 / (n sum c^2); 1 = equal exposure, higher is fairer.",
    "jain_corrected": (
        "Jain's index rescaled by its attainable extremes (Rampisela et al.): "
        "0 = the same k items in every list, 1 = fairest attainable."
    ),
    "fsat": (
        "FSat: share of items whose exposure reaches the maximin share floor(km / n); "
        "meaningless (always 1) when km < n."
    ),
    "fsat_corrected": "FSat rescaled as (fsat - k/n) / (1 - k/n) (Rampisela et al.).",
    "fsat_meaningful": "1 when km >= n (FSat is informative), 0 when km < n (FSat is always 1).",
    "personalization": (
        "1 - mean over user pairs of |L_u ∩ L_v| / k (the cosine of binary list vectors), "
        "computed from item counts as sum_i c_i (c_i - 1) / (k m (m - 1))."
    ),
    "rec_rate_head": (
        "Recommendation rate of head items: recommended (user, head item) pairs / (user, head "
        "item) pairs not in the user's training history (Zhu et al. 2020)."
    ),
    "rec_rate_tail": "Recommendation rate of tail items, as rec_rate_head.",
    "hit_rate_head": (
        "Hit rate of head items: held-out (user, head item) pairs that are recommended / "
        "held-out (user, head item) pairs."
    ),
    "hit_rate_tail": "Hit rate of tail items, as hit_rate_head.",
    "pop_rsp": (
        "Popularity ranking-based statistical parity (Zhu et al. 2020): std / mean of the head "
        "and tail recommendation rates; 0 = equal rates."
    ),
    "pop_reo": (
        "Popularity ranking-based equal opportunity (Zhu et al. 2020): std / mean of the head "
        "and tail hit rates; 0 = equal rates."
    ),
    "gini_pw": "Gini on position-weighted exposure (each occurrence weighs 1 / log2(rank + 1)).",
    "gini_pw_corrected": (
        "Position-weighted Gini rescaled: 0 = fairest reference (km <= n: every slot a "
        "distinct item; km > n: equal exposure bound), 1 = the same ordered list for everyone."
    ),
    "entropy_pw": "Normalised entropy of position-weighted exposure.",
    "entropy_pw_corrected": "Position-weighted entropy rescaled as gini_pw_corrected (0 unfair).",
    "jain_pw": "Jain's index of position-weighted exposure.",
    "jain_pw_corrected": "Position-weighted Jain rescaled as gini_pw_corrected (0 unfair).",
}


# -- inputs ----------------------------------------------------------------------------------
def check_lists(recs: np.ndarray, users: np.ndarray, n_items: int) -> tuple[np.ndarray, np.ndarray]:
    """Validated copies of ``recs`` (int64 [m, k]) and ``users`` (int64 [m]).

    Raises :class:`ReclensError` for a wrong shape, an index out of range or an item repeated
    within a list.
    """
    recs = np.asarray(recs)
    users = np.asarray(users)
    if recs.ndim != 2 or recs.shape[1] < 1:
        raise ReclensError(f"recommendations must be an [users, k] array, got shape {recs.shape}")
    if users.ndim != 1 or users.shape[0] != recs.shape[0]:
        raise ReclensError(
            f"users must be a 1-d array with one entry per list ({recs.shape[0]}), "
            f"got shape {users.shape}"
        )
    if recs.shape[0] == 0:
        raise ReclensError("no recommendation lists to evaluate")
    if not np.issubdtype(recs.dtype, np.integer) or not np.issubdtype(users.dtype, np.integer):
        raise ReclensError("recommendations and users must be integer index arrays")
    recs = recs.astype(np.int64, copy=False)
    users = users.astype(np.int64, copy=False)
    if recs.min() < 0 or recs.max() >= n_items:
        raise ReclensError(f"recommended item index out of range 0..{n_items - 1}")
    if recs.shape[1] > n_items:
        raise ReclensError(f"list length k={recs.shape[1]} exceeds the {n_items} catalogue items")
    ordered = np.sort(recs, axis=1)
    if (np.diff(ordered, axis=1) == 0).any():
        row = int(np.flatnonzero((np.diff(ordered, axis=1) == 0).any(axis=1))[0])
        raise ReclensError(f"recommendation list {row} repeats an item")
    return recs, users


def item_popularity(train: sp.spmatrix) -> np.ndarray:
    """Training interactions per item: int64 [n_items] (stored non-zero cells per column)."""
    train = sp.csr_matrix(train)
    return np.bincount(train.indices[train.data != 0], minlength=train.shape[1]).astype(np.int64)


def head_mask(popularity: np.ndarray, share: float = HEAD_SHARE) -> np.ndarray:
    """Bool [n_items]: the head, i.e. the most popular items covering ``share`` of interactions.

    Items are sorted by popularity (descending, ties by index); the head is the shortest prefix
    whose interactions reach ``share`` of the total. Everything else (including items never
    interacted with) is the tail.
    """
    if not 0 < share <= 1:
        raise ReclensError(f"head share must be in (0, 1], got {share}")
    total = popularity.sum()
    mask = np.zeros(popularity.shape[0], dtype=bool)
    if total == 0:
        return mask
    order = np.argsort(-popularity, kind="stable")
    cum = np.cumsum(popularity[order])
    n_head = int(np.searchsorted(cum, share * total - 1e-9 * total)) + 1
    mask[order[:n_head]] = True
    return mask


def exposure(recs: np.ndarray, n_items: int, position_weighted: bool = False) -> np.ndarray:
    """Item exposure [n_items]: list counts c_i, or sums of ``1 / log2(rank + 1)`` weights."""
    if not position_weighted:
        return np.bincount(recs.ravel(), minlength=n_items).astype(np.float64)
    weights = rank_weights(recs.shape[1])
    return np.bincount(
        recs.ravel(), weights=np.broadcast_to(weights, recs.shape).ravel(), minlength=n_items
    )


def rank_weights(k: int) -> np.ndarray:
    """Position weights ``1 / log2(rank + 1)`` for ranks 1..k: float64 [k]."""
    return 1.0 / np.log2(np.arange(2, k + 2, dtype=np.float64))


# -- exposure fairness -----------------------------------------------------------------------
def gini(e: np.ndarray) -> float:
    """Gini index of exposures ``e`` [n] (all catalogue items, zeros included).

    Ascending order: ``G = sum_j (2j - n - 1) e_(j) / (n sum e)`` with j = 1..n.
    """
    n = e.shape[0]
    s = np.sort(e)
    j = np.arange(1, n + 1, dtype=np.float64)
    return float(((2 * j - n - 1) * s).sum() / (n * s.sum()))


def entropy(e: np.ndarray) -> float:
    """Shannon entropy of ``e / sum e`` normalised by ``log n`` (0 log 0 = 0)."""
    n = e.shape[0]
    p = e[e > 0] / e.sum()
    return float(-(p * np.log(p)).sum() / math.log(n))


def jain(e: np.ndarray) -> float:
    """Jain's fairness index ``(sum e)^2 / (n sum e^2)``."""
    return float(e.sum() ** 2 / (e.shape[0] * (e**2).sum()))


def fsat(counts: np.ndarray, k: int) -> tuple[float, float, bool]:
    """FSat and its corrected form on list counts ``counts`` [n] for lists of length ``k``.

    Returns ``(fsat, fsat_corrected, meaningful)``: ``fsat`` is the share of items with
    ``c_i >= floor(km / n)`` (the maximin share), ``fsat_corrected = (fsat - k/n) / (1 - k/n)``
    (nan when k = n), and ``meaningful`` is False when km < n (the share is 0, so FSat is 1).
    """
    n = counts.shape[0]
    total = int(round(counts.sum()))
    share = total // n
    value = float((counts >= share).mean())
    corrected = (value - k / n) / (1 - k / n) if k < n else float("nan")
    return value, float(corrected), total >= n


def extreme_exposures(
    n: int, m: int, k: int, position_weighted: bool = False
) -> tuple[np.ndarray, np.ndarray]:
    """Exposures [n] of the unfairest and fairest reference allocations of m lists of k items.

    Unweighted (exact, attainable): unfairest = ``m`` for k items and 0 elsewhere; fairest =
    ``q + 1`` for r items and ``q`` for the rest, with ``km = q n + r`` (each item at most m).
    Position-weighted: unfairest = the same ordered list for everyone (``m w_l`` for the item at
    rank l); fairest reference = every slot a distinct item when km <= n (m copies of each
    ``w_l``), else the equal split ``m sum(w) / n`` for every item (a bound, not always
    attainable).
    """
    if not position_weighted:
        q, r = divmod(k * m, n)
        unfair = np.zeros(n)
        unfair[:k] = m
        fair = np.full(n, float(q))
        fair[:r] += 1
        return unfair, fair
    w = rank_weights(k)
    unfair = np.zeros(n)
    unfair[:k] = m * w
    if k * m <= n:
        fair = np.zeros(n)
        fair[: k * m] = np.repeat(w, m)
    else:
        fair = np.full(n, m * w.sum() / n)
    return unfair, fair


def _rescale(value: float, zero: float, one: float) -> float:
    """``(value - zero) / (one - zero)`` clipped to [0, 1] (nan when the extremes coincide)."""
    span = one - zero
    if abs(span) < 1e-12:
        return float("nan")
    out = (value - zero) / span
    if -1e-9 < out < 0:
        out = 0.0
    if 1 < out < 1 + 1e-9:
        out = 1.0
    return float(min(max(out, 0.0), 1.0))


def fairness_measures(
    e: np.ndarray, m: int, k: int, position_weighted: bool = False
) -> dict[str, float]:
    """Gini, entropy and Jain of exposures ``e`` [n] with their corrected forms.

    Keys ``gini``, ``gini_corrected``, ``entropy``, ``entropy_corrected``, ``jain``,
    ``jain_corrected`` (suffix ``_pw`` on the names when ``position_weighted``). The corrected
    form is ``(x - x_fair) / (x_unfair - x_fair)`` for Gini and ``(x - x_unfair) / (x_fair -
    x_unfair)`` for entropy and Jain, with the extremes of :func:`extreme_exposures`.
    """
    n = e.shape[0]
    if n < 2:
        raise ReclensError("fairness measures need a catalogue of at least 2 items")
    unfair, fair = extreme_exposures(n, m, k, position_weighted)
    tag = "_pw" if position_weighted else ""
    out: dict[str, float] = {}
    g = gini(e)
    out[f"gini{tag}"] = g
    out[f"gini{tag}_corrected"] = _rescale(g, gini(fair), gini(unfair))
    h = entropy(e)
    out[f"entropy{tag}"] = h
    out[f"entropy{tag}_corrected"] = _rescale(h, entropy(unfair), entropy(fair))
    j = jain(e)
    out[f"jain{tag}"] = j
    out[f"jain{tag}_corrected"] = _rescale(j, jain(unfair), jain(fair))
    return out


# -- coverage, personalisation, popularity bias -------------------------------------------------
def coverage(counts: np.ndarray, m: int, k: int) -> tuple[float, float]:
    """Item coverage and corrected coverage from list counts [n].

    ``coverage = d / n`` with d distinct recommended items; ``coverage_corrected = (d - k) /
    (n - k)`` when km >= n, else ``(d - k) / (k (m - 1))`` (the most distinct items attainable is
    min(n, km), the fewest k); nan when both extremes coincide.
    """
    n = counts.shape[0]
    d = int((counts > 0).sum())
    top = n if k * m >= n else k * m
    corrected = (d - k) / (top - k) if top > k else float("nan")
    return d / n, float(corrected)


def distributional_coverage(counts: np.ndarray) -> float:
    """``-sum p_i log2 p_i`` over recommended items, ``p_i = c_i / sum c`` (bits)."""
    p = counts[counts > 0] / counts.sum()
    return float(-(p * np.log2(p)).sum())


def personalization(counts: np.ndarray, m: int, k: int) -> float:
    """``1 - mean_{u<v} |L_u ∩ L_v| / k`` from list counts [n], in O(n); nan for one list."""
    if m < 2:
        return float("nan")
    overlap = float((counts * (counts - 1)).sum()) / 2.0  # sum over pairs of shared items
    return 1.0 - overlap / (m * (m - 1) / 2.0) / k


def popularity_bias(
    recs: np.ndarray,
    users: np.ndarray,
    train: sp.spmatrix,
    heldout: sp.spmatrix,
    head: np.ndarray,
) -> dict[str, float]:
    """Head/tail recommendation and hit rates and PopRSP / PopREO (Zhu et al., SIGIR 2020).

    ``rec_rate_g = #{(u, i): i in L_u, i in g} / #{(u, i): i in g, i not in train_u}``,
    ``hit_rate_g = #{(u, i): i in L_u, i in g, i in heldout_u} / #{(u, i): i in g, i in
    heldout_u}`` over the evaluated users; ``pop_rsp`` / ``pop_reo`` = population std / mean of
    the two rates (= |a - b| / (a + b)); nan when a rate is undefined.
    """
    m, k = recs.shape
    train_rows = sp.csr_matrix(train)[users]
    held_rows = sp.csr_matrix(heldout)[users]
    head_f = head.astype(np.float64)
    n_head = float(head.sum())
    n_tail = float(head.shape[0] - n_head)
    known_head = float((train_rows @ head_f).sum())
    known_tail = float(train_rows.nnz - known_head)
    in_head = head[recs]
    rec_head = float(in_head.sum())
    rec_tail = float(m * k - rec_head)
    hits = _hits(recs, held_rows)
    hit_head = float((hits & in_head).sum())
    hit_tail = float((hits & ~in_head).sum())
    held_head = float((held_rows @ head_f).sum())
    held_tail = float(held_rows.nnz - held_head)
    out = {
        "rec_rate_head": _ratio(rec_head, m * n_head - known_head),
        "rec_rate_tail": _ratio(rec_tail, m * n_tail - known_tail),
        "hit_rate_head": _ratio(hit_head, held_head),
        "hit_rate_tail": _ratio(hit_tail, held_tail),
    }
    out["pop_rsp"] = _std_over_mean(out["rec_rate_head"], out["rec_rate_tail"])
    out["pop_reo"] = _std_over_mean(out["hit_rate_head"], out["hit_rate_tail"])
    return out


def _hits(recs: np.ndarray, held_rows: sp.csr_matrix) -> np.ndarray:
    """Bool [m, k]: whether each listed item is in the user's held-out row."""
    m, k = recs.shape
    flat_rows = np.repeat(np.arange(m), k)
    values = np.asarray(held_rows[flat_rows, recs.ravel()]).ravel()
    return (values != 0).reshape(m, k)


def _ratio(a: float, b: float) -> float:
    return a / b if b > 0 else float("nan")


def _std_over_mean(a: float, b: float) -> float:
    if math.isnan(a) or math.isnan(b) or a + b == 0:
        return float("nan")
    return float(np.std([a, b]) / np.mean([a, b]))


# -- the table ---------------------------------------------------------------------------------
def catalogue_values(
    recs: np.ndarray,
    users: np.ndarray,
    train: sp.spmatrix,
    heldout: sp.spmatrix,
    position_weighted: bool = False,
    head_share: float = HEAD_SHARE,
) -> dict[str, float]:
    """Every catalogue metric as a dict (see :func:`catalogue_metrics`)."""
    n = train.shape[1]
    if heldout.shape != train.shape:
        raise ReclensError(
            f"held-out matrix shape {heldout.shape} differs from training shape {train.shape}"
        )
    recs, users = check_lists(recs, users, n)
    if users.min() < 0 or users.max() >= train.shape[0]:
        raise ReclensError(f"user index out of range 0..{train.shape[0] - 1}")
    m, k = recs.shape
    counts = exposure(recs, n)
    out: dict[str, float] = {}
    out["coverage"], out["coverage_corrected"] = coverage(counts, m, k)
    out["distributional_coverage"] = distributional_coverage(counts)
    out.update(fairness_measures(counts, m, k))
    f, fc, meaningful = fsat(counts, k)
    out["fsat"], out["fsat_corrected"], out["fsat_meaningful"] = f, fc, float(meaningful)
    out["personalization"] = personalization(counts, m, k)
    head = head_mask(item_popularity(train), head_share)
    out.update(popularity_bias(recs, users, train, heldout, head))
    if position_weighted:
        out.update(fairness_measures(exposure(recs, n, True), m, k, position_weighted=True))
    return out


def catalogue_metrics(
    recs: np.ndarray,
    users: np.ndarray,
    train: sp.spmatrix,
    heldout: sp.spmatrix,
    position_weighted: bool = False,
    head_share: float = HEAD_SHARE,
) -> pl.DataFrame:
    """Catalogue table (``metric`` String, ``value`` Float64) over all users' top-k lists.

    ``recs``: int [m, k] item indices in rank order; ``users``: int [m] their user indices;
    ``train``, ``heldout``: CSR [n_users, n_items] (popularity, known items, relevance).
    ``position_weighted`` adds the ``*_pw`` rows. Undefined values are NaN.
    """
    values = catalogue_values(recs, users, train, heldout, position_weighted, head_share)
    return pl.DataFrame(
        {"metric": list(values), "value": [float(v) for v in values.values()]},
        schema={"metric": pl.String, "value": pl.Float64},
    )
