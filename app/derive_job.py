"""Results derived from many saved runs as independent tasks: beyond-accuracy metrics and
projections, one task per run (see :mod:`engine.executor`).

Each task opens its run folder (every file verified), computes, stores the result with the run
(recorded in its manifest) unless told not to, and returns a one-row table.
"""

from __future__ import annotations

import json
from pathlib import Path

import polars as pl

from engine import beyond
from engine.executor import Task
from engine.projection import run_projection
from engine.runs import load_run, to_json
from engine.session import OpenRun


def metrics_shard(
    path: str, k: int, group_by: str | None, position_weighted: bool, save: bool
) -> pl.DataFrame:
    """Beyond-accuracy metrics of one run's top-``k`` lists (:func:`engine.beyond.run_metrics`)."""
    opened = OpenRun.open(path)
    result = beyond.run_metrics(
        opened.run, opened.dataset, opened.split, k=k, group_by=group_by,
        position_weighted=position_weighted,
    )  # fmt: skip
    if save:
        beyond.save(opened.run, result, opened.dataset)
    text = json.dumps(to_json(result.to_dict()), allow_nan=False)
    return pl.DataFrame({"run": [path], "result": [text]})


def projection_shard(path: str, method: str) -> pl.DataFrame:
    """The 2-D maps of one run's items and users, stored with the run."""
    run = load_run(path)
    sizes = {kind: run_projection(run, kind, method).shape[0] for kind in ("items", "users")}
    return pl.DataFrame({"run": [path], "method": [method], **{k: [v] for k, v in sizes.items()}})


def metrics_tasks(
    runs: list[str], k: int, group_by: str | None, position_weighted: bool, save: bool
) -> list[Task]:
    return [
        Task(f"metrics-{i:04d}-{Path(p).name}", metrics_shard,
             (str(Path(p).resolve()), k, group_by, position_weighted, save))
        for i, p in enumerate(runs)
    ]  # fmt: skip


def projection_tasks(runs: list[str], method: str) -> list[Task]:
    return [
        Task(f"project-{i:04d}-{Path(p).name}", projection_shard, (str(Path(p).resolve()), method))
        for i, p in enumerate(runs)
    ]
