"""``reclens train`` as independent tasks: one per model x split seed.

:func:`train_shard` trains, evaluates and saves one model on one seed and returns its
summary (:meth:`engine.pipeline.RunResult.summary`) as a one-row table, so
:mod:`engine.executor` can run a seed sweep on local worker processes or on Ray. Each task
is a pure function of its arguments: the seed fixes the split and the model's initialisation.
"""

from __future__ import annotations

import json
from typing import Any

import polars as pl

from engine.executor import Task
from engine.pipeline import train_run


def train_shard(source: str, model: str, seed: int, options: dict[str, Any]) -> pl.DataFrame:
    """Train ``model`` on ``source`` with ``seed``; ``options``: :func:`train_run` keywords."""
    result = train_run(source, model, seed=seed, **options)
    return pl.DataFrame({"summary": [json.dumps(result.summary())]})


def train_tasks(
    source: str, models: list[str], seeds: list[int], options: dict[str, Any]
) -> list[Task]:
    """One task per (model, seed), models first."""
    return [
        Task(f"{model}-seed{seed}", train_shard, (source, model, int(seed), dict(options)))
        for model in models
        for seed in seeds
    ]


def summaries(frames: list[pl.DataFrame]) -> list[dict[str, Any]]:
    """The run summaries of finished tasks, in task order."""
    return [json.loads(frame["summary"][0]) for frame in frames]
