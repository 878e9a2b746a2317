"""Saved runs compared per user: the checks that make a paired comparison valid, in one place.

:func:`paired_values` reads the per-user test table of each run and returns one metric's values
over the same users, after refusing what cannot be paired: runs of different datasets, runs
trained on different splits (their training-data fingerprints differ: another split seed,
protocol or data), tables without integer user ids, and unknown metrics. :mod:`engine.stats`
then tests the differences. ``reclens compare`` and the dashboard's leaderboard both use it.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from data.errors import ReclensError
from engine.runs import PER_USER, RunSummary, read_table
from engine.stats import align_users

ID_COLUMNS = ("user", "raw_id")


def paired_values(runs: Mapping[str, RunSummary], metric: str) -> dict[str, np.ndarray]:
    """``metric`` per user for each run (label -> values over the same users, sorted by user)."""
    labels = list(runs)
    summaries = list(runs.values())
    datasets = {s.dataset for s in summaries}
    if len(datasets) > 1:
        which = ", ".join(f"{label} ({s.dataset})" for label, s in runs.items())
        raise ReclensError(f"the runs are on different datasets: {which}")
    splits = {str(s.config.fingerprint.get("train_sha256", "")) for s in summaries}
    if len(splits) > 1:
        which = ", ".join(
            f"{label} (split seed {s.seed}, {s.protocol})" for label, s in runs.items()
        )
        raise ReclensError(
            f"the runs were trained on different splits of {datasets.pop()} (their training "
            f"data differ), so their per-user results are not paired: {which}; compare runs "
            "of the same split seed and protocol"
        )
    tables = {label: read_table(s.path, PER_USER) for label, s in runs.items()}
    for label, table in tables.items():
        if "user" not in table.columns or not table["user"].dtype.is_integer():
            raise ReclensError(f"{label}: the per-user table has no integer user column")
    common = [c for c in tables[labels[0]].columns if c not in ID_COLUMNS]
    common = [c for c in common if all(c in t.columns for t in tables.values())]
    if metric not in common:
        raise ReclensError(f"unknown metric {metric!r}: available {', '.join(common)}")
    return align_users(tables, metric)
