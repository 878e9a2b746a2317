"""User groups and the gaps between them in any per-user metric.

:func:`user_groups` labels evaluated users by a user attribute or a derived grouping;
:func:`group_gaps` averages every per-user metric within each group and reports, per metric,
the largest absolute gap between two group means (``max_gap`` = max - min of the group means)
and the mean absolute difference over all pairs of groups (``mad``, Deldjoo et al.'s UserMAD
as computed by Elliot). Null values (a metric undefined for a user) are left out of the means.

Groupings (``by``):

- any column of ``Dataset.users`` (``gender``, ``occupation``, ``community`` ...): its values;
  a numeric column with more than :data:`MAX_LEVELS` distinct values is cut into quartiles
  ``Q1``..``Q4`` of the evaluated users (so ``age`` gives age quartiles);
- ``age_band``: MovieLens age bands ``<18``, ``18-24``, ``25-34``, ``35-44``, ``45-49``,
  ``50-55``, ``56+`` of the ``age`` column;
- ``activity``: quartiles ``Q1`` (least active) .. ``Q4`` of the evaluated users' number of
  training interactions;
- ``community``: the users table's column, else the synthetic ground truth's communities.

Missing attribute values are labelled ``unknown``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import polars as pl

from data.dataset import Dataset
from data.errors import ReclensError
from data.splits import Split

MAX_LEVELS = 12
AGE_BANDS: tuple[tuple[int, str], ...] = (
    (18, "<18"),
    (25, "18-24"),
    (35, "25-34"),
    (45, "35-44"),
    (50, "45-49"),
    (56, "50-55"),
)
DERIVED = ("activity", "age_band")

GROUP_DOCS: dict[str, str] = {
    "max_gap": "Largest absolute difference between two user groups' mean of a per-user metric.",
    "mad": (
        "Mean absolute difference of a per-user metric's group means over all pairs of groups "
        "(UserMAD)."
    ),
}


@dataclass
class GroupGaps:
    """Group means of per-user metrics and the gaps between groups.

    ``by``: the grouping; ``means``: one row per group (``group``, ``n_users`` and one column
    per metric, sorted by group); ``gaps``: one row per metric (``metric``, ``max_gap``,
    ``mad``, ``max_group``, ``min_group``: the groups with the highest and lowest mean).
    """

    by: str
    means: pl.DataFrame
    gaps: pl.DataFrame

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready: ``by``, ``n_users`` {group: n}, ``means`` {group: {metric: mean}},
        ``max_gap`` / ``mad`` {metric: value}."""
        metrics = [c for c in self.means.columns if c not in ("group", "n_users")]
        rows = self.means.to_dicts()
        return {
            "by": self.by,
            "n_users": {str(r["group"]): int(r["n_users"]) for r in rows},
            "means": {str(r["group"]): {m: _num(r[m]) for m in metrics} for r in rows},
            "max_gap": {r["metric"]: _num(r["max_gap"]) for r in self.gaps.to_dicts()},
            "mad": {r["metric"]: _num(r["mad"]) for r in self.gaps.to_dicts()},
        }


def _num(value: Any) -> float | None:
    if value is None:
        return None
    value = float(value)
    return value if np.isfinite(value) else None


def available_groupings(dataset: Dataset) -> list[str]:
    """Names :func:`user_groups` accepts for ``dataset``."""
    names = [c for c in dataset.users.columns if c not in ("user", "raw_id")]
    extra = list(DERIVED)
    if "age" not in dataset.users.columns:
        extra.remove("age_band")
    if "community" not in names and dataset.truth is not None:
        extra.append("community")
    return names + extra


def user_groups(dataset: Dataset, split: Split, users: np.ndarray, by: str) -> np.ndarray:
    """Group label (str) of each of ``users`` [U] under grouping ``by``: object array [U]."""
    users = np.asarray(users, dtype=np.int64)
    by = str(by).strip()
    columns = dataset.users.columns
    if by == "activity":
        counts = np.diff(split.train.indptr)[users].astype(np.float64)
        return quartile_labels(counts)
    if by == "age_band" and "age" in columns:
        return age_band_labels(dataset.users["age"].to_numpy()[users])
    if by in columns and by not in ("user", "raw_id"):
        column = dataset.users[by]
        values = column.gather(users)
        if column.dtype.is_numeric() and column.n_unique() > MAX_LEVELS:
            return quartile_labels(values.cast(pl.Float64).to_numpy())
        return values.cast(pl.String).fill_null("unknown").to_numpy().astype(object)
    if by == "community" and dataset.truth is not None:
        return dataset.truth.user_community[users].astype(str).astype(object)
    choices = ", ".join(available_groupings(dataset))
    raise ReclensError(f"unknown user grouping {by!r} for {dataset.name}: use one of {choices}")


def quartile_labels(values: np.ndarray) -> np.ndarray:
    """``Q1``..``Q4`` by the quartiles of ``values`` [U] (ties share a label; nan -> unknown)."""
    values = np.asarray(values, dtype=np.float64)
    labels = np.full(values.shape[0], "unknown", dtype=object)
    ok = np.isfinite(values)
    if not ok.any():
        return labels
    cuts = np.quantile(values[ok], [0.25, 0.5, 0.75])
    band = np.searchsorted(cuts, values[ok], side="left")
    labels[ok] = np.array(["Q1", "Q2", "Q3", "Q4"], dtype=object)[band]
    return labels


def age_band_labels(ages: np.ndarray) -> np.ndarray:
    """MovieLens age bands of ``ages`` [U] (nan or null -> ``unknown``)."""
    ages = np.asarray(ages, dtype=np.float64)
    bounds = np.array([b for b, _ in AGE_BANDS], dtype=np.float64)
    names = np.array([name for _, name in AGE_BANDS] + ["56+"], dtype=object)
    labels = names[np.searchsorted(bounds, np.nan_to_num(ages, nan=0.0), side="right")]
    labels[~np.isfinite(ages)] = "unknown"
    return labels


def group_gaps(
    per_user: pl.DataFrame,
    labels: np.ndarray,
    by: str = "",
    metrics: list[str] | None = None,
) -> GroupGaps:
    """Group means and gaps of the per-user ``metrics`` (default: every column but ``user``).

    ``per_user``: wide table with one row per user; ``labels``: [len(per_user)] group labels.
    """
    labels = np.asarray(labels)
    if labels.shape != (per_user.height,):
        raise ReclensError(
            f"need one group label per user ({per_user.height}), got shape {labels.shape}"
        )
    metrics = metrics or [
        c for c in per_user.columns if c != "user" and per_user[c].dtype.is_float()
    ]
    unknown = [m for m in metrics if m not in per_user.columns]
    if unknown:
        raise ReclensError(f"unknown per-user metric(s) {', '.join(unknown)}")
    frame = per_user.select(metrics).with_columns(
        pl.Series("group", labels.astype(str), dtype=pl.String)
    )
    means = (
        frame.group_by("group")
        .agg(pl.len().alias("n_users"), *[pl.col(m).fill_nan(None).mean() for m in metrics])
        .sort("group")
    )
    rows = []
    groups = means["group"].to_list()
    for m in metrics:  # one pass per metric column (a handful), each vectorised over groups
        vals = means[m].cast(pl.Float64).to_numpy()
        ok = np.isfinite(vals)
        if ok.sum() < 2:
            rows.append((m, float("nan"), float("nan"), None, None))
            continue
        v = vals[ok]
        diffs = np.abs(v[:, None] - v[None, :])
        n = v.shape[0]
        mad = float(diffs.sum() / (n * (n - 1)))
        names = [g for g, good in zip(groups, ok, strict=True) if good]
        rows.append(
            (m, float(v.max() - v.min()), mad, names[int(v.argmax())], names[int(v.argmin())])
        )
    gaps = pl.DataFrame(
        rows,
        schema={
            "metric": pl.String,
            "max_gap": pl.Float64,
            "mad": pl.Float64,
            "max_group": pl.String,
            "min_group": pl.String,
        },
        orient="row",
    )
    return GroupGaps(by=by, means=means, gaps=gaps)
