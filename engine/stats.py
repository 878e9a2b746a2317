"""Paired significance tests between systems evaluated on the same users.

Direction: ``a`` is the baseline and ``b`` the system compared with it; every difference is
``b - a`` per user, so ``diff = mean(b - a)`` (= ``mean_b - mean_a``) is positive when ``b``
scores higher. For one pair, :func:`paired_comparison` reports

- ``ci95``: a 95% bootstrap confidence interval of ``diff`` (``scipy.stats.bootstrap`` on the
  per-user differences, i.e. users resampled with both systems' values kept together; ``BCa``
  or ``percentile``, ``n_boot`` resamples, seeded);
- ``p_t``: the two-sided paired t-test (``scipy.stats.ttest_rel``), a test of the mean
  difference;
- ``p_wilcoxon``: the two-sided Wilcoxon signed-rank test (``scipy.stats.wilcoxon`` with
  ``zero_method="pratt"``: zero differences take part in the ranking, then their ranks are
  dropped, so the many users on which two rankers tie still weigh on the test);
- effect sizes: Cohen's ``d_z = diff / sd(b - a)`` (sample sd, ddof 1) and the matched-pairs
  rank-biserial correlation (sum of the ranks of ``|b - a|`` of positive minus negative
  differences over their total, zero differences left out);
- ``p_holm`` and ``p_bh``: the p-value of ``test`` (``t`` or ``wilcoxon``) adjusted over the
  family of comparisons (Holm's step-down family-wise correction and Benjamini-Hochberg's
  false discovery rate, :func:`correct`); a lone comparison is its own family of one, so both
  equal the raw p-value.

:func:`compare_many` runs a family of comparisons and applies both corrections. When every
difference is zero the tests are undefined; both p-values are then 1.0, the interval is
``(0, 0)`` and a note says so (when every difference is the same non-zero value, the interval
is that point, ``d_z`` is NaN and a note says the t-test is degenerate).
:func:`align_users` joins per-user tables on ``user`` and refuses tables evaluated on
different users.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, replace
from typing import Any

import numpy as np
import polars as pl
import scipy.stats

from data.errors import ReclensError

ZERO_METHOD = "pratt"
CI_METHODS = {"bca": "BCa", "percentile": "percentile"}
TESTS = {
    "t": "paired t-test (scipy.stats.ttest_rel)",
    "wilcoxon": f"Wilcoxon signed-rank (scipy.stats.wilcoxon, zero_method={ZERO_METHOD})",
}
CORRECTIONS = {"holm": "Holm", "bh": "Benjamini-Hochberg"}
P_FIELDS = ("p_t", "p_wilcoxon", "p_holm", "p_bh")
DEFAULT_BOOT = 2000


@dataclass(frozen=True)
class Comparison:
    """One paired comparison of ``b`` against the baseline ``a`` on ``metric``.

    ``diff = mean(b - a)`` over the ``n`` users; ``ci95`` its 95% bootstrap interval
    (``ci_method``, ``n_boot`` resamples, ``seed``); ``p_t`` and ``p_wilcoxon`` the raw
    two-sided p-values (Wilcoxon with ``zero_method``); ``d_z`` and ``rank_biserial`` effect
    sizes (NaN when undefined); ``p_holm`` and ``p_bh`` the p-value of ``test`` adjusted over a
    family of ``family`` comparisons (``correction`` says how); ``notes``: caveats in words.
    """

    a: str
    b: str
    metric: str
    n: int
    mean_a: float
    mean_b: float
    diff: float
    ci95: tuple[float, float]
    ci_method: str
    n_boot: int
    seed: int
    p_t: float
    p_wilcoxon: float
    zero_method: str
    d_z: float
    rank_biserial: float
    test: str
    p_holm: float
    p_bh: float
    family: int
    correction: str
    notes: tuple[str, ...] = ()

    @property
    def p(self) -> float:
        """The raw p-value of ``test``, the one the corrections adjust."""
        return self.p_t if self.test == "t" else self.p_wilcoxon

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready fields (``n`` as ``n_users``, non-finite numbers as ``None``)."""
        fields = asdict(self)
        out = {k: fields.pop(k) for k in ("a", "b", "metric")}
        out["n_users"] = fields.pop("n")
        out.update(fields)
        out["ci95"] = list(self.ci95)
        out["notes"] = list(self.notes)
        return {k: _finite_or_none(v) for k, v in out.items()}


def paired_comparison(
    a: Sequence[float] | np.ndarray,
    b: Sequence[float] | np.ndarray,
    *,
    name_a: str,
    name_b: str,
    metric: str,
    n_boot: int = DEFAULT_BOOT,
    seed: int = 0,
    ci: str = "bca",
    test: str = "t",
) -> Comparison:
    """Compare ``b`` with the baseline ``a``, two equal-length arrays aligned by user.

    ``diff = mean(b - a)``; see the module docstring for the interval, tests and effect sizes.
    As a family of one, ``p_holm == p_bh ==`` the raw p-value of ``test``; use
    :func:`compare_many` to correct over several comparisons.
    """
    if ci not in CI_METHODS:
        raise ReclensError(f"unknown CI method {ci!r}: use {' or '.join(CI_METHODS)}")
    if test not in TESTS:
        raise ReclensError(f"unknown test {test!r}: use {' or '.join(TESTS)}")
    if n_boot < 1 or seed < 0:
        raise ReclensError(f"need n_boot >= 1 and seed >= 0, got {n_boot} and {seed}")
    x = np.asarray(a, dtype=np.float64)
    y = np.asarray(b, dtype=np.float64)
    if x.ndim != 1 or x.shape != y.shape:
        raise ReclensError(f"{name_a} and {name_b}: need two 1-D arrays of the same length")
    if len(x) < 2:
        raise ReclensError(f"{name_a} vs {name_b}: need at least 2 users, got {len(x)}")
    if not (np.isfinite(x).all() and np.isfinite(y).all()):
        raise ReclensError(f"{name_a} vs {name_b}: {metric} has missing or infinite values")
    d = y - x
    mean = float(d.mean())
    constant = bool(np.ptp(d) <= 1e-12 * float(np.abs(d).max()))  # also when all zero
    notes: list[str] = []
    if not d.any():
        p_t = p_w = 1.0
        notes.append("every user's difference is zero: the tests are undefined, p set to 1.0")
    else:
        with warnings.catch_warnings():
            if constant:  # scipy warns of the zero variance
                warnings.simplefilter("ignore", RuntimeWarning)
                notes.append("every user's difference is the same: the t-test is degenerate")
            p_t = float(scipy.stats.ttest_rel(y, x).pvalue)
        p_w = float(scipy.stats.wilcoxon(d, zero_method=ZERO_METHOD).pvalue)
    method = CI_METHODS[ci]
    interval = (mean, mean) if constant else _bootstrap_ci(d, n_boot, seed, method, notes)
    p = p_t if test == "t" else p_w
    return Comparison(
        a=name_a,
        b=name_b,
        metric=metric,
        n=len(d),
        mean_a=float(x.mean()),
        mean_b=float(y.mean()),
        diff=mean,
        ci95=interval,
        ci_method=method,
        n_boot=n_boot,
        seed=seed,
        p_t=p_t,
        p_wilcoxon=p_w,
        zero_method=ZERO_METHOD,
        d_z=math.nan if constant else mean / float(d.std(ddof=1)),
        rank_biserial=_rank_biserial(d),
        test=test,
        p_holm=p,
        p_bh=p,
        family=1,
        correction=f"none (a single comparison; p_holm = p_bh = p_{test})",
        notes=tuple(notes),
    )


def _bootstrap_ci(
    d: np.ndarray, n_boot: int, seed: int, method: str, notes: list[str]
) -> tuple[float, float]:
    """95% interval of ``mean(d)`` (``d`` not constant); a note when it is undefined."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", scipy.stats.DegenerateDataWarning)
        result = scipy.stats.bootstrap(
            (d,),
            np.mean,
            n_resamples=n_boot,
            confidence_level=0.95,
            method=method,
            random_state=np.random.default_rng(seed),
        )
    low, high = float(result.confidence_interval.low), float(result.confidence_interval.high)
    if not (math.isfinite(low) and math.isfinite(high)):
        notes.append(f"the {method} interval is undefined for these differences")
    return low, high


def _rank_biserial(d: np.ndarray) -> float:
    """Matched-pairs rank-biserial correlation of the non-zero differences (NaN if none)."""
    nonzero = d[d != 0]
    if len(nonzero) == 0:
        return math.nan
    ranks = scipy.stats.rankdata(np.abs(nonzero))
    return float((ranks[nonzero > 0].sum() - ranks[nonzero < 0].sum()) / ranks.sum())


def correct(pvalues: Sequence[float] | np.ndarray, method: str = "holm") -> np.ndarray:
    """Adjusted p-values, in the input order: ``holm`` (family-wise) or ``bh`` (FDR).

    BH is ``scipy.stats.false_discovery_control(method="bh")``. Holm (scipy has none): with
    the m p-values sorted ascending, the i-th (from 0) becomes ``(m - i) p_(i)``, made
    non-decreasing by a running maximum and capped at 1.
    """
    p = np.asarray(pvalues, dtype=np.float64)
    if p.ndim != 1 or not np.all((p >= 0) & (p <= 1)):
        raise ReclensError("p-values to correct must be a 1-D list of numbers in [0, 1]")
    if len(p) == 0:
        return p
    if method == "bh":
        return np.asarray(scipy.stats.false_discovery_control(p, method="bh"), dtype=np.float64)
    if method != "holm":
        raise ReclensError(f"unknown correction {method!r}: use {' or '.join(CORRECTIONS)}")
    order = np.argsort(p, kind="stable")
    scaled = (len(p) - np.arange(len(p))) * p[order]
    adjusted = np.empty_like(p)
    adjusted[order] = np.minimum(np.maximum.accumulate(scaled), 1.0)
    return adjusted


def compare_many(
    values: Mapping[str, np.ndarray],
    pairs: Sequence[tuple[str, str]],
    *,
    metric: str,
    n_boot: int = DEFAULT_BOOT,
    seed: int = 0,
    ci: str = "bca",
    test: str = "t",
) -> list[Comparison]:
    """Each ``(a, b)`` of ``pairs`` compared, Holm and BH applied over the whole family.

    ``values``: one user-aligned array per system name (see :func:`align_users`). Every
    comparison's bootstrap uses ``seed``, so a result does not depend on the other pairs.
    """
    if not pairs:
        raise ReclensError("no comparisons to make")
    results = [
        paired_comparison(
            values[a],
            values[b],
            name_a=a,
            name_b=b,
            metric=metric,
            n_boot=n_boot,
            seed=seed,
            ci=ci,
            test=test,
        )
        for a, b in pairs
    ]
    raw = [r.p for r in results]
    holm, bh = correct(raw, "holm"), correct(raw, "bh")
    m = len(results)
    label = (
        f"Holm and Benjamini-Hochberg over {m} comparisons of p_{test}"
        if m > 1
        else results[0].correction
    )
    return [
        replace(r, p_holm=float(h), p_bh=float(f), family=m, correction=label)
        for r, h, f in zip(results, holm, bh, strict=True)
    ]


def significant(result: Comparison, alpha: float = 0.05, using: str = "p_holm") -> bool:
    """Whether ``result``'s p-value ``using`` (``p_t``, ``p_wilcoxon``, ``p_holm``, ``p_bh``)
    is below ``alpha``."""
    if using not in P_FIELDS:
        raise ReclensError(f"unknown p-value {using!r}: use {', '.join(P_FIELDS)}")
    return bool(getattr(result, using) < alpha)


def align_users(tables: Mapping[str, pl.DataFrame], metric: str) -> dict[str, np.ndarray]:
    """``metric`` of every table as arrays over the same users, sorted by ``user``.

    Each table is a per-user table (``user``, optionally ``raw_id``, metric columns). Raises
    :class:`ReclensError` when a table lacks the metric, lists a user twice, or when two tables
    cover different users (saying how many are only in each) or give a user different raw ids.
    """
    if len(tables) < 2:
        raise ReclensError(f"need at least two per-user tables to compare, got {len(tables)}")
    names = list(tables)
    first = names[0]
    base = _keyed(first, tables[first], metric)
    out = {first: base[metric].to_numpy()}
    for name in names[1:]:
        other = _keyed(name, tables[name], metric)
        only_first = base.join(other, on="user", how="anti").height
        only_other = other.join(base, on="user", how="anti").height
        if only_first or only_other:
            raise ReclensError(
                f"{first} and {name} were evaluated on different users: {only_first} only in "
                f"{first}, {only_other} only in {name}; compare runs of the same data and split"
            )
        if "raw_id" in base.columns and "raw_id" in other.columns:
            joined = base.join(other, on="user", suffix="_other")
            differ = joined.filter(pl.col("raw_id") != pl.col("raw_id_other")).height
            if differ:
                raise ReclensError(
                    f"{first} and {name} give {differ} users different raw ids: "
                    "not the same dataset"
                )
        out[name] = other[metric].to_numpy()
    return out


def _keyed(name: str, table: pl.DataFrame, metric: str) -> pl.DataFrame:
    """``user`` (and ``raw_id``) and ``metric`` as Float64, sorted by user; checked."""
    if "user" not in table.columns:
        raise ReclensError(f"{name}: the per-user table has no user column")
    if metric not in table.columns:
        available = [c for c in table.columns if c not in ("user", "raw_id")]
        raise ReclensError(
            f"{name}: unknown metric {metric!r}; available: {', '.join(available) or 'none'}"
        )
    keep = [c for c in ("user", "raw_id") if c in table.columns]
    frame = table.select(*keep, pl.col(metric).cast(pl.Float64)).sort("user")
    if frame["user"].n_unique() != frame.height:
        raise ReclensError(f"{name}: the per-user table lists a user more than once")
    return frame


def _finite_or_none(value: Any) -> Any:
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, list):
        return [_finite_or_none(v) for v in value]
    return value
