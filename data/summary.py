"""Descriptive statistics of a dataset, for ``reclens data info`` and the dashboard.

:func:`summarize` returns plain Python values (JSON-ready); :func:`format_summary` renders
them as readable text.
"""

from __future__ import annotations

import math
from datetime import UTC, datetime
from typing import Any

import numpy as np
import polars as pl

from data.dataset import Dataset

QUANTILES = {
    "min": 0.0,
    "p25": 0.25,
    "median": 0.5,
    "p75": 0.75,
    "p90": 0.9,
    "p99": 0.99,
    "max": 1.0,
}
MAX_RATING_LEVELS = 20  # more distinct ratings than this are binned
RATING_BINS = 10


def summarize(ds: Dataset) -> dict[str, Any]:
    """Sizes, density, rating histogram, popularity concentration and activity quantiles.

    Keys: ``name``, ``source``, ``n_users``, ``n_items``, ``n_interactions``, ``density``,
    ``rating_histogram`` (``{rating: count}``, binned when ratings are continuous; ``None``
    without ratings), ``top20_item_share`` (share of interactions on the 20% most popular
    items), ``user_activity_quantiles`` and ``item_popularity_quantiles`` (interactions per
    user / per item: min, p25, median, p75, p90, p99, max, mean), ``duplicate_pairs``
    (interactions repeating a user-item pair), ``time_range`` (ISO dates or ``None``) and
    ``parts`` (sizes of given train/valid/test parts, or ``None``).
    """
    inter = ds.interactions
    users = inter["user"].to_numpy().astype(np.int64, copy=False)
    items = inter["item"].to_numpy().astype(np.int64, copy=False)
    per_user = np.bincount(users, minlength=ds.n_users)
    per_item = np.bincount(items, minlength=ds.n_items)
    unique_pairs = inter.select(pl.struct("user", "item").n_unique()).item() if inter.height else 0
    return {
        "name": ds.name,
        "source": ds.source,
        "n_users": ds.n_users,
        "n_items": ds.n_items,
        "n_interactions": ds.n_interactions,
        "density": ds.density,
        "rating_histogram": rating_histogram(inter["rating"]),
        "top20_item_share": top_item_share(per_item, 0.2),
        "user_activity_quantiles": activity_quantiles(per_user),
        "item_popularity_quantiles": activity_quantiles(per_item),
        "duplicate_pairs": int(inter.height - unique_pairs),
        "time_range": time_range(inter["timestamp"]),
        "parts": {k: v.height for k, v in ds.parts.items()} if ds.parts else None,
    }


def rating_histogram(ratings: pl.Series) -> dict[str, int] | None:
    """Counts per rating value (``"4"``, ``"4.5"``), or per bin when there are many values."""
    values = ratings.drop_nulls()
    if values.len() == 0:
        return None
    counts = values.value_counts(sort=False).sort(values.name)
    if counts.height <= MAX_RATING_LEVELS:
        return {_number(v): int(c) for v, c in counts.iter_rows()}
    arr = values.to_numpy()
    hist, edges = np.histogram(arr, bins=RATING_BINS)
    return {
        f"{_number(edges[k])}-{_number(edges[k + 1])}": int(hist[k]) for k in range(RATING_BINS)
    }


def top_item_share(per_item: np.ndarray, fraction: float) -> float:
    """Share of interactions on the ``fraction`` most popular items (at least one item)."""
    total = int(per_item.sum())
    if total == 0 or per_item.size == 0:
        return 0.0
    k = max(1, math.ceil(fraction * per_item.size))
    top = np.partition(per_item, per_item.size - k)[per_item.size - k :]
    return float(top.sum() / total)


def activity_quantiles(counts: np.ndarray) -> dict[str, float]:
    """Quantiles (min, p25, median, p75, p90, p99, max) and mean of per-entity counts."""
    if counts.size == 0:
        return {key: 0.0 for key in [*QUANTILES, "mean"]}
    qs = np.quantile(counts, list(QUANTILES.values()))
    out = {key: float(q) for key, q in zip(QUANTILES, qs, strict=True)}
    out["mean"] = float(counts.mean())
    return out


def time_range(stamps: pl.Series) -> dict[str, str] | None:
    """First and last interaction time as ISO dates (UTC), or ``None`` without timestamps."""
    values = stamps.drop_nulls()
    if values.len() == 0:
        return None
    first, last = int(values.min()), int(values.max())
    return {"first": _iso(first), "last": _iso(last)}


def format_summary(summary: dict[str, Any]) -> str:
    """Readable multi-line text of a :func:`summarize` result."""
    lines = [
        f"{summary['name']}  ({summary['source']})" if summary.get("source") else summary["name"],
        f"  users          {summary['n_users']:>12,}",
        f"  items          {summary['n_items']:>12,}",
        f"  interactions   {summary['n_interactions']:>12,}",
        f"  density        {summary['density']:>12.4%}",
        f"  top 20% items  {summary['top20_item_share']:>12.1%} of interactions",
    ]
    if summary.get("duplicate_pairs"):
        lines.append(f"  repeated pairs {summary['duplicate_pairs']:>12,}")
    if summary.get("time_range"):
        tr = summary["time_range"]
        lines.append(f"  time range     {tr['first']} .. {tr['last']}")
    if summary.get("parts"):
        sizes = ", ".join(f"{k} {v:,}" for k, v in summary["parts"].items())
        lines.append(f"  given split    {sizes}")
    lines.append("  interactions per user: " + _quantile_text(summary["user_activity_quantiles"]))
    lines.append("  interactions per item: " + _quantile_text(summary["item_popularity_quantiles"]))
    hist = summary.get("rating_histogram")
    if hist:
        lines.append("  ratings:")
        peak = max(hist.values())
        total = sum(hist.values())
        for value, count in hist.items():
            bar = "#" * max(1, round(30 * count / peak)) if count else ""
            lines.append(f"    {value:>9} {count:>11,} {count / total:>6.1%} {bar}")
    else:
        lines.append("  ratings: none (implicit feedback)")
    return "\n".join(lines)


def _quantile_text(q: dict[str, float]) -> str:
    keys = [k for k in QUANTILES if k in q]
    parts = [f"{k} {_number(q[k])}" for k in keys]
    return ", ".join(parts) + f", mean {q['mean']:.1f}"


def _number(value: float) -> str:
    value = float(value)
    if value.is_integer():
        return str(int(value))
    return f"{value:.4g}"


def _iso(seconds: int) -> str:
    try:
        return datetime.fromtimestamp(seconds, tz=UTC).date().isoformat()
    except (OverflowError, OSError, ValueError):
        return str(seconds)
