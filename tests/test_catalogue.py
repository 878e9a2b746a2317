"""Catalogue metrics (engine.catalogue) and user-group gaps (engine.groups)."""

from __future__ import annotations

import math
from itertools import combinations

import numpy as np
import polars as pl
import pytest
import scipy.sparse as sp

from data.errors import ReclensError
from engine.catalogue import (
    catalogue_metrics,
    catalogue_values,
    entropy,
    exposure,
    extreme_exposures,
    gini,
    head_mask,
    jain,
    popularity_bias,
)
from engine.groups import age_band_labels, group_gaps, quartile_labels

N, M, K = 10, 6, 3


def _empty(n_users: int, n_items: int) -> sp.csr_matrix:
    return sp.csr_matrix((n_users, n_items))


def _values(recs: np.ndarray, n_items: int, **kwargs) -> dict[str, float]:
    m = recs.shape[0]
    train = _empty(m, n_items)
    return catalogue_values(recs, np.arange(m), train, train, **kwargs)


def _unfairest(m: int, k: int) -> np.ndarray:
    return np.tile(np.arange(k), (m, 1))


def _fairest(n: int, m: int, k: int) -> np.ndarray:
    """Round robin: list u holds items uk..uk+k-1 (mod n), so exposures differ by at most 1."""
    return (np.arange(m)[:, None] * k + np.arange(k)[None, :]) % n


def _gini_pairs(x: np.ndarray) -> float:
    """Gini as the mean absolute difference over all ordered pairs / (2 mean)."""
    diffs = np.abs(x[:, None] - x[None, :]).sum()
    return float(diffs / (2 * x.shape[0] ** 2 * x.mean()))


# -- fairness measures at their attainable extremes ---------------------------------------------
def test_corrected_measures_hit_exact_bounds_at_the_extremes() -> None:
    unfair = _values(_unfairest(M, K), N)
    fair = _values(_fairest(N, M, K), N)
    for name in ("gini_corrected",):
        assert unfair[name] == 1.0
        assert fair[name] == 0.0
    for name in ("entropy_corrected", "jain_corrected", "fsat_corrected"):
        assert unfair[name] == pytest.approx(0.0, abs=1e-12)
        assert fair[name] == pytest.approx(1.0, abs=1e-12)


def test_original_measures_miss_their_nominal_bounds() -> None:
    fair = _values(_fairest(N, M, K), N)
    unfair = _values(_unfairest(M, K), N)
    # km = 18 = 1 * 10 + 8: eight items twice, two items once
    assert fair["jain"] == pytest.approx(0.9529, abs=1e-4)
    assert fair["jain"] == pytest.approx(18**2 / (10 * (8 * 4 + 2 * 1)))
    assert fair["gini"] == pytest.approx(0.0889, abs=1e-4)
    assert fair["gini"] == pytest.approx((N - 8) * 8 / (N * 18))  # Rampisela's Gini_min
    assert fair["entropy"] < 1.0
    assert unfair["gini"] == pytest.approx(1 - K / N)  # not 1
    assert unfair["jain"] == pytest.approx(K / N)  # not 0 (nor 1/n)
    assert unfair["entropy"] == pytest.approx(math.log(K) / math.log(N))  # not 0


def test_corrected_measures_match_rampisela_closed_forms() -> None:
    rng = np.random.default_rng(0)
    n, m, k = 25, 13, 4
    p = rng.dirichlet(np.full(n, 0.3))
    recs = np.stack([rng.choice(n, size=k, replace=False, p=p) for _ in range(m)])
    got = _values(recs, n)
    c = exposure(recs, n)
    q, r = divmod(k * m, n)
    g_min = (n - r) * r / (n * k * m)
    assert got["gini"] == pytest.approx(_gini_pairs(c))
    assert got["gini_corrected"] == pytest.approx((got["gini"] - g_min) / (1 - k / n - g_min))
    j_max = (k * m) ** 2 / (n * (n * q**2 + r * (2 * q + 1)))
    assert got["jain_corrected"] == pytest.approx((got["jain"] - k / n) / (j_max - k / n))
    share = np.array([q + 1] * r + [q] * (n - r)) / (k * m)
    h_max = -(share * np.log(share)).sum() / math.log(n)
    h_min = math.log(k) / math.log(n)
    assert got["entropy_corrected"] == pytest.approx((got["entropy"] - h_min) / (h_max - h_min))
    assert got["fsat"] == pytest.approx(np.mean(c >= (k * m) // n))
    for name in ("gini_corrected", "entropy_corrected", "jain_corrected"):
        assert 0.0 <= got[name] <= 1.0


def test_fsat_flagged_meaningless_when_km_below_n() -> None:
    n, m, k = 30, 4, 3  # km = 12 < 30
    for recs in (_unfairest(m, k), _fairest(n, m, k)):
        got = _values(recs, n)
        assert got["fsat_meaningful"] == 0.0
        assert got["fsat"] == 1.0  # the maximin share is 0: every item is "satisfied"
    fair = _values(_fairest(n, m, k), n)
    unfair = _values(_unfairest(m, k), n)
    assert fair["gini_corrected"] == 0.0 and unfair["gini_corrected"] == 1.0
    assert fair["entropy_corrected"] == pytest.approx(1.0)
    assert fair["coverage_corrected"] == pytest.approx(1.0)  # km distinct items = the most
    assert unfair["coverage_corrected"] == 0.0


def test_extremes_respect_the_per_item_cap() -> None:
    for n, m, k in ((10, 6, 3), (7, 7, 7), (12, 2, 5), (5, 9, 4)):
        unfair, fair = extreme_exposures(n, m, k)
        assert fair.sum() == unfair.sum() == k * m
        assert fair.max() <= m and fair.max() - fair.min() <= 1
        assert gini(fair) <= gini(unfair)
        assert jain(fair) >= jain(unfair) and entropy(fair) >= entropy(unfair)


def test_position_weighted_extremes() -> None:
    n, m, k = 40, 5, 4  # km <= n: every slot a distinct item is the fairest reference
    unfair = _values(_unfairest(m, k), n, position_weighted=True)
    fair = _values(_fairest(n, m, k), n, position_weighted=True)
    assert unfair["gini_pw_corrected"] == 1.0
    assert unfair["jain_pw_corrected"] == pytest.approx(0.0, abs=1e-12)
    assert fair["gini_pw_corrected"] == pytest.approx(0.0, abs=1e-12)
    assert fair["entropy_pw_corrected"] == pytest.approx(1.0)
    weights = 1 / np.log2(np.arange(2, k + 2))
    assert exposure(_unfairest(m, k), n, True)[:k] == pytest.approx(m * weights)
    assert "gini_pw" not in _values(_unfairest(m, k), n)


# -- coverage, personalisation, popularity bias ------------------------------------------------
def test_coverage_and_personalization_against_pairwise_overlap() -> None:
    rng = np.random.default_rng(1)
    n, m, k = 20, 9, 5
    recs = np.stack([rng.choice(n, size=k, replace=False) for _ in range(m)])
    got = _values(recs, n)
    distinct = len(np.unique(recs))
    assert got["coverage"] == pytest.approx(distinct / n)
    assert got["coverage_corrected"] == pytest.approx((distinct - k) / (n - k))
    overlaps = [len(set(a) & set(b)) / k for a, b in combinations(recs.tolist(), 2)]
    assert got["personalization"] == pytest.approx(1 - np.mean(overlaps))
    same = _values(_unfairest(m, k), n)
    assert same["personalization"] == pytest.approx(0.0)
    assert same["coverage_corrected"] == 0.0


def test_head_covers_eighty_percent_of_interactions() -> None:
    pop = np.array([50, 30, 10, 5, 5, 0])
    np.testing.assert_array_equal(head_mask(pop), [True, True, False, False, False, False])
    np.testing.assert_array_equal(head_mask(pop, 0.9), [True, True, True, False, False, False])


def test_pop_rsp_and_reo_by_hand() -> None:
    # 4 items, item 0 is the head; 2 users who each know one tail item
    train = sp.csr_matrix(np.array([[0, 1, 0, 0], [0, 0, 1, 0]], dtype=float))
    heldout = sp.csr_matrix(np.array([[1, 0, 1, 0], [0, 0, 0, 1]], dtype=float))
    head = np.array([True, False, False, False])
    recs = np.array([[0, 2], [0, 1]])
    got = popularity_bias(recs, np.array([0, 1]), train, heldout, head)
    assert got["rec_rate_head"] == pytest.approx(2 / 2)  # both users got the head item
    assert got["rec_rate_tail"] == pytest.approx(2 / 4)  # 2 of 4 unknown tail slots
    assert got["hit_rate_head"] == pytest.approx(1 / 1)
    assert got["hit_rate_tail"] == pytest.approx(1 / 2)
    assert got["pop_rsp"] == pytest.approx(np.std([1, 0.5]) / np.mean([1, 0.5]))
    assert got["pop_reo"] == pytest.approx(np.std([1, 0.5]) / np.mean([1, 0.5]))


def test_catalogue_table_shape_and_errors() -> None:
    recs = _fairest(N, M, K)
    train = _empty(M, N)
    table = catalogue_metrics(recs, np.arange(M), train, train)
    assert table.columns == ["metric", "value"]
    assert table.schema["value"] == pl.Float64
    assert {"coverage", "gini", "gini_corrected", "personalization", "pop_rsp"} <= set(
        table["metric"]
    )
    with pytest.raises(ReclensError, match="differs from training shape"):
        catalogue_metrics(recs, np.arange(M), train, _empty(M, N + 1))
    with pytest.raises(ReclensError, match="repeats an item"):
        catalogue_metrics(np.array([[1, 1]]), np.array([0]), train, train)


# -- user groups ------------------------------------------------------------------------------
def test_group_gaps_means_max_gap_and_mad() -> None:
    per_user = pl.DataFrame(
        {
            "user": [0, 1, 2, 3, 4],
            "novelty": [1.0, 3.0, 4.0, 10.0, None],
            "arp": [5.0, 5.0, 5.0, 5.0, 5.0],
        }
    )
    labels = np.array(["a", "a", "b", "c", "c"])
    gaps = group_gaps(per_user, labels, by="x")
    means = dict(zip(gaps.means["group"], gaps.means["novelty"], strict=True))
    assert means == {"a": 2.0, "b": 4.0, "c": 10.0}  # the null is left out of c
    assert gaps.means["n_users"].to_list() == [2, 1, 2]
    row = gaps.gaps.filter(pl.col("metric") == "novelty").row(0, named=True)
    assert row["max_gap"] == pytest.approx(8.0)
    assert row["mad"] == pytest.approx((2 + 8 + 6) / 3)
    assert (row["max_group"], row["min_group"]) == ("c", "a")
    assert gaps.to_dict()["max_gap"]["arp"] == 0.0
    with pytest.raises(ReclensError, match="one group label per user"):
        group_gaps(per_user, labels[:3])


def test_quartile_and_age_band_labels() -> None:
    labels = quartile_labels(np.arange(1, 9, dtype=float))
    assert labels.tolist() == ["Q1", "Q1", "Q2", "Q2", "Q3", "Q3", "Q4", "Q4"]
    bands = age_band_labels(np.array([7, 18, 24, 25, 49, 50, 56, 73, np.nan]))
    assert bands.tolist() == [
        "<18",
        "18-24",
        "18-24",
        "25-34",
        "45-49",
        "50-55",
        "56+",
        "56+",
        "unknown",
    ]
