"""Paired comparisons (:mod:`engine.stats`) against scipy, hand-computed corrections, and the
calibration of the tests and the bootstrap interval on data with a known difference."""

from __future__ import annotations

import math

import numpy as np
import polars as pl
import pytest
import scipy.stats

from data.errors import ReclensError
from engine.stats import (
    Comparison,
    align_users,
    compare_many,
    correct,
    paired_comparison,
    significant,
)


def _paired(seed: int, n: int = 60, shift: float = 0.0) -> tuple[np.ndarray, np.ndarray]:
    """A baseline and a system scoring ``shift`` more on average, correlated per user."""
    rng = np.random.default_rng(seed)
    user = rng.normal(size=n)
    return user + rng.normal(size=n), user + shift + rng.normal(size=n)


def _compare(a: np.ndarray, b: np.ndarray, **kwargs) -> Comparison:
    return paired_comparison(a, b, name_a="base", name_b="new", metric="m", **kwargs)


def test_values_match_scipy() -> None:
    a, b = _paired(1, shift=0.3)
    a[:10] = b[:10]  # some zero differences, as in per-user ranking metrics
    got = _compare(a, b, n_boot=500, seed=4)
    d = b - a
    assert got.n == 60 and got.a == "base" and got.b == "new"
    assert got.diff == pytest.approx(d.mean()) == pytest.approx(got.mean_b - got.mean_a)
    assert got.p_t == pytest.approx(scipy.stats.ttest_rel(b, a).pvalue, rel=1e-12)
    wilcoxon = scipy.stats.wilcoxon(d, zero_method="pratt").pvalue
    assert got.p_wilcoxon == pytest.approx(wilcoxon, rel=1e-12)
    assert got.zero_method == "pratt"
    assert got.d_z == pytest.approx(d.mean() / d.std(ddof=1))
    assert -1.0 <= got.rank_biserial <= 1.0 and got.rank_biserial > 0
    boot = scipy.stats.bootstrap(
        (d,), np.mean, n_resamples=500, method="BCa", random_state=np.random.default_rng(4)
    )
    assert got.ci95 == pytest.approx(tuple(boot.confidence_interval))
    assert got.ci_method == "BCa" and got.n_boot == 500
    assert got.ci95[0] < got.diff < got.ci95[1]
    assert got.p_holm == got.p_bh == got.p_t and got.family == 1 and got.test == "t"
    assert _compare(a, b, n_boot=500, seed=4) == got  # seeded: the same result again


def test_paired_resampling_keeps_users_together() -> None:
    a, b = _paired(2, shift=0.2)
    got = _compare(a, b, n_boot=500, ci="percentile")
    boot = scipy.stats.bootstrap(
        (a, b),
        lambda x, y, axis: np.mean(y - x, axis=axis),
        paired=True,
        n_resamples=500,
        method="percentile",
        random_state=np.random.default_rng(0),
    )
    assert got.ci_method == "percentile"
    assert got.ci95 == pytest.approx(tuple(boot.confidence_interval))


def test_p_values_are_uniform_under_no_difference() -> None:
    t_low = w_low = 0
    for seed in range(200):
        got = _compare(*_paired(seed, n=40), n_boot=20, ci="percentile")
        t_low += got.p_t < 0.05
        w_low += got.p_wilcoxon < 0.05
    assert 0.01 <= t_low / 200 <= 0.10
    assert 0.01 <= w_low / 200 <= 0.10


@pytest.mark.parametrize(("ci", "reps"), [("percentile", 200), ("bca", 100)])
def test_bootstrap_interval_covers_the_true_difference(ci: str, reps: int) -> None:
    hits = 0
    for seed in range(reps):
        got = _compare(*_paired(seed, n=50, shift=0.5), n_boot=500, ci=ci, seed=seed)
        hits += got.ci95[0] <= 0.5 <= got.ci95[1]
    assert 0.88 <= hits / reps <= 0.99


def test_holm_and_bh_against_hand_computed_values() -> None:
    p = [0.01, 0.04, 0.03, 0.005]
    # sorted 0.005, 0.01, 0.03, 0.04: Holm 4p, 3p, 2p, 1p = .02, .03, .06, .04 -> running max
    assert correct(p, "holm") == pytest.approx([0.03, 0.06, 0.06, 0.02])
    # BH m p / rank = .02, .02, .04, .04 -> running min from the largest
    assert correct(p, "bh") == pytest.approx([0.02, 0.04, 0.04, 0.02])
    assert correct([0.5, 0.6], "holm") == pytest.approx([1.0, 1.0])
    assert correct([0.5, 0.6], "bh") == pytest.approx([0.6, 0.6])
    assert len(correct([], "holm")) == 0
    with pytest.raises(ReclensError, match="unknown correction"):
        correct(p, "bonferroni")
    with pytest.raises(ReclensError, match=r"\[0, 1\]"):
        correct([0.1, math.nan])


def test_compare_many_corrects_over_the_family() -> None:
    base, better = _paired(3, shift=0.6)
    _, same = _paired(4)
    values = {"base": base, "better": better, "same": same + (base - same) * 0.5}
    pairs = [("base", "better"), ("base", "same")]
    got = compare_many(values, pairs, metric="m", n_boot=200, test="wilcoxon")
    raw = [r.p_wilcoxon for r in got]
    assert [r.p_holm for r in got] == pytest.approx(list(correct(raw, "holm")))
    assert [r.p_bh for r in got] == pytest.approx(list(correct(raw, "bh")))
    assert all(r.family == 2 and "Holm" in r.correction for r in got)
    assert got[0].p == got[0].p_wilcoxon
    assert significant(got[0]) and not significant(got[0], alpha=got[0].p_holm)
    with pytest.raises(ReclensError, match="unknown p-value"):
        significant(got[0], using="p")


def test_all_zero_differences_give_p_one_and_a_note() -> None:
    a = np.array([0.0, 0.5, 1.0, 0.0, 0.25])
    got = _compare(a, a.copy())
    assert got.p_t == got.p_wilcoxon == got.p_holm == 1.0
    assert got.ci95 == (0.0, 0.0) and got.diff == 0.0
    assert math.isnan(got.d_z) and math.isnan(got.rank_biserial)
    assert any("zero" in note for note in got.notes)
    as_json = got.to_dict()
    assert as_json["d_z"] is None and as_json["n_users"] == 5 and as_json["ci95"] == [0.0, 0.0]


def test_constant_difference_gives_a_point_interval() -> None:
    a = np.linspace(0, 1, 20)
    got = _compare(a, a + 0.125)
    assert got.ci95 == (0.125, 0.125) and got.diff == pytest.approx(0.125)
    assert got.p_wilcoxon < 1e-4 and any("same" in note for note in got.notes)


def test_bad_inputs_are_refused() -> None:
    a, b = _paired(0, n=10)
    with pytest.raises(ReclensError, match="at least 2 users"):
        _compare(a[:1], b[:1])
    with pytest.raises(ReclensError, match="same length"):
        _compare(a, b[:5])
    with pytest.raises(ReclensError, match="missing or infinite"):
        _compare(np.append(a, math.nan), np.append(b, 0.0))
    with pytest.raises(ReclensError, match="unknown CI method"):
        _compare(a, b, ci="basic")


def _table(users: list[int], values: list[float], raw: list[str] | None = None) -> pl.DataFrame:
    raw = raw if raw is not None else [f"u{u}" for u in users]
    return pl.DataFrame({"user": users, "raw_id": raw, "ndcg@10": values})


def test_align_users_joins_on_user() -> None:
    a = _table([3, 1, 2], [0.3, 0.1, 0.2])
    b = _table([1, 2, 3], [1.0, 2.0, 3.0])
    got = align_users({"a": a, "b": b}, "ndcg@10")
    assert got["a"].tolist() == [0.1, 0.2, 0.3]
    assert got["b"].tolist() == [1.0, 2.0, 3.0]


def test_align_users_refuses_mismatches() -> None:
    a = _table([1, 2, 3, 4], [0.1] * 4)
    with pytest.raises(ReclensError, match="different users: 2 only in a, 1 only in b"):
        align_users({"a": a, "b": _table([1, 2, 9], [0.2] * 3)}, "ndcg@10")
    other = _table([1, 2, 3, 4], [0.1] * 4, raw=["x", "u2", "u3", "y"])
    with pytest.raises(ReclensError, match="2 users different raw ids"):
        align_users({"a": a, "b": other}, "ndcg@10")
    with pytest.raises(ReclensError, match="unknown metric 'recall@5'; available: ndcg@10"):
        align_users({"a": a, "b": a}, "recall@5")
    with pytest.raises(ReclensError, match="more than once"):
        align_users({"a": a, "b": _table([1, 1, 2, 3], [0.1] * 4)}, "ndcg@10")
    with pytest.raises(ReclensError, match="at least two"):
        align_users({"a": a}, "ndcg@10")
