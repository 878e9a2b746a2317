"""The Fairness tab's tables: per-user accuracy and beyond-accuracy metrics of a run, their
means and gaps per user group, and which metrics and groupings the tab offers.

The tables are catalogue-level results (the same for every user), computed once per run and
list length and shared by every session; a user switch only looks a row up.
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np
import pandas as pd
import polars as pl

from app.dashboard.cache import LRU
from app.dashboard.engine_service import EngineService
from engine.groups import GroupGaps, group_gaps, user_groups
from engine.metric_labels import metric_label

MAX_GROUPS = 30
"""A text attribute with more distinct values than this (zip codes) is not a user grouping:
its groups would hold a user or two each."""
ACCURACY_FIRST = ("ndcg", "recall", "hit", "precision", "mrr", "map")
"""Order of the accuracy metrics in the metric selector (before the beyond-accuracy ones)."""

_TABLES: LRU[pd.DataFrame] = LRU(16)
_GROUPS: LRU[GroupGaps] = LRU(64)


def per_user(service: EngineService, run: str, k: int) -> pd.DataFrame:
    """Per evaluated test user: ``user``, ``raw_id``, the beyond-accuracy metrics of their
    top-``k`` and the run's stored accuracy metrics (``ndcg@10`` ...); cached."""

    def make() -> pd.DataFrame:
        loaded = service.load(run)
        beyond = service.beyond(run, k).per_user.to_pandas().drop(columns="raw_id", errors="ignore")
        accuracy = loaded.run.per_user_metrics().to_pandas().drop(columns="raw_id", errors="ignore")
        frame = beyond.merge(accuracy, on="user", how="left")
        users = frame["user"].to_numpy().astype("int64")
        frame.insert(1, "raw_id", loaded.users["id"].astype(str).to_numpy()[users])
        return frame

    return _TABLES.get((str(service.runs_root), run, int(k)), make)


def metric_columns(frame: pd.DataFrame) -> list[str]:
    """The metric columns of a :func:`per_user` table: accuracy first (NDCG, recall, ... each
    by cut-off), then the beyond-accuracy ones in table order."""
    numeric = [
        c for c in frame.columns
        if c not in ("user", "raw_id") and pd.api.types.is_float_dtype(frame[c])
    ]  # fmt: skip
    accuracy = [c for c in numeric if "@" in c and c.split("@")[0] in ACCURACY_FIRST]

    def order(name: str) -> tuple[int, int]:
        base, _, cut = name.partition("@")
        return ACCURACY_FIRST.index(base), int(cut) if cut.isdigit() else 0

    return sorted(accuracy, key=order) + [c for c in numeric if c not in accuracy]


def metric_options(metrics: Iterable[str]) -> dict[str, str]:
    """Selector options {label in words: metric id}, in the order given."""
    return {metric_label(m): m for m in metrics}


def grouping_options(groupings: Iterable[str], users: pd.DataFrame) -> tuple[list[str], list[str]]:
    """(offered, left out) of the engine's ``groupings`` for the display ``users`` table: a text
    attribute with more than :data:`MAX_GROUPS` distinct values is left out; numeric ones are
    cut into quartiles by the engine, derived ones (activity, age band) always offered."""
    offered, left_out = [], []
    for name in groupings:
        column = users[name] if name in users.columns else None
        too_many = (
            column is not None
            and not pd.api.types.is_numeric_dtype(column)
            and column.nunique(dropna=True) > MAX_GROUPS
        )
        (left_out if too_many else offered).append(name)
    return offered, left_out


def group_table(service: EngineService, run: str, k: int, by: str) -> GroupGaps:
    """Means and gaps of every metric of :func:`per_user` (accuracy included) per user group
    ``by`` (see :func:`engine.groups.user_groups`); cached."""

    def make() -> GroupGaps:
        loaded = service.load(run)
        frame = per_user(service, run, k)
        metrics = metric_columns(frame)
        labels = user_groups(loaded.dataset, loaded.split, frame["user"].to_numpy(np.int64), by)
        return group_gaps(pl.from_pandas(frame[["user", *metrics]]), labels, by, metrics)

    return _GROUPS.get((str(service.runs_root), run, int(k), by), make)
