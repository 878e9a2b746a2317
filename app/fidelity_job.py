"""``reclens fidelity`` as independent shards: model x explainer x batch of users.

Each shard is :func:`fidelity_shard`, a pure function of (the run folder and its manifest
checksum, the explainer, the users, the seed, the explainer's parameters) that returns the
per-user fidelity table of :func:`explainers.batch.evaluate_fidelity`. Explanations are seeded
per user (``explainers.base.user_rng(seed, user)``), so a user's row is the same whichever shard
holds it and whatever runs it; every shard runs with one torch thread and one BLAS thread, so
the arithmetic is the same on every back end. :mod:`engine.executor` runs the shards and stores
each result as it arrives.

Workers that can see the run folder open it by path. Workers that cannot (a remote Ray
cluster) get the run shipped: the bytes of every file in its manifest and its split, sent once
through the object store; the worker writes the files into a temporary folder and checks them
against the manifest before loading anything.
"""

from __future__ import annotations

import hashlib
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
import torch
from threadpoolctl import threadpool_limits

from data.splits import Split
from engine.executor import Task
from engine.runs import COMPLETE, load_run, read_manifest
from engine.session import OpenRun
from explainers.batch import REPORTED, evaluate_fidelity

SHARD_USERS = 32
"""Users per shard (small enough to spread, large enough that overheads stay small)."""
TIMING = "ms"
"""The one column that measures time rather than fidelity (differs from run to run)."""


@dataclass(frozen=True)
class RunHandle:
    """A run as a task sees it: its folder, the SHA-256 of its manifest, the model's name and,
    when shipped, ``payload`` (file name -> bytes and the split, or a Ray reference to them)."""

    path: str
    manifest_sha: str
    model: str
    payload: Any = None


def run_handle(path: str | Path, model: str, ship: bool = False) -> RunHandle:
    """The handle of a run folder; with ``ship`` its files and split travel with it."""
    folder = Path(path).expanduser().resolve()
    sha = hashlib.sha256((folder / COMPLETE).read_bytes()).hexdigest()
    payload = None
    if ship:
        names = [*read_manifest(folder), COMPLETE]
        files = {name: (folder / name).read_bytes() for name in names}
        payload = (files, OpenRun.open(folder).split)
    return RunHandle(str(folder), sha, model, payload)


def fidelity_tasks(
    runs: list[RunHandle],
    explainers: list[str],
    users: dict[str, np.ndarray],
    seed: int,
    params: dict[str, dict[str, Any]],
    batch: int = SHARD_USERS,
    edit_rule: str = "round",
) -> list[Task]:
    """One task per (run, explainer, batch of ``batch`` users); ``users``: model -> users."""
    tasks = []
    for run in runs:
        chosen = np.asarray(users[run.model], dtype=np.int64)
        for name in explainers:
            for lo in range(0, chosen.shape[0], batch):
                part = tuple(int(u) for u in chosen[lo : lo + batch])
                key = f"{run.model}-{name}-{lo:07d}"
                args = (run, name, part, int(seed), dict(params.get(name, {})), edit_rule)
                tasks.append(Task(key, fidelity_shard, args))
    return tasks


_OPENED: dict[tuple[str, str, bool], tuple[torch.nn.Module, Split]] = {}


def _model_and_split(run: RunHandle) -> tuple[torch.nn.Module, Split]:
    """The run's model and split, opened once per worker process (checked by checksum)."""
    key = (run.path, run.manifest_sha, run.payload is not None)
    if key not in _OPENED:
        payload = run.payload
        if payload is not None and not isinstance(payload, tuple):
            import ray  # a reference into the object store: only ever made by the ray back end

            payload = ray.get(payload)
        if payload is None:
            opened = OpenRun.open(run.path)
            _OPENED[key] = (opened.model, opened.split)
        else:
            files, split = payload
            folder = Path(tempfile.mkdtemp(prefix="reclens-run-"))
            for name, data in files.items():
                (folder / name).parent.mkdir(parents=True, exist_ok=True)
                (folder / name).write_bytes(data)
            _OPENED[key] = (load_run(folder).model, split)
    return _OPENED[key]


def fidelity_shard(
    run: RunHandle,
    explainer: str,
    users: tuple[int, ...],
    seed: int,
    params: dict[str, Any],
    edit_rule: str = "round",
) -> pl.DataFrame:
    """Per-user fidelity of one explainer for some users of one run (one torch thread, one
    BLAS thread: a least-squares solve's rounding depends on the thread count, and Ray's
    workers start with one thread while this process may have more)."""
    model, split = _model_and_split(run)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        with threadpool_limits(limits=1):
            report = evaluate_fidelity(
                model,
                split,
                explainers=[explainer],
                users=np.asarray(users, dtype=np.int64),
                seed=seed,
                model_name=run.model,
                params={explainer: params} if params else None,
                edit_rule=edit_rule,
            )
    finally:
        torch.set_num_threads(threads)
    return report.per_user


def combine(frames: list[pl.DataFrame]) -> pl.DataFrame:
    """The shards' tables as one, in report order (model, explainer, user)."""
    if not frames:
        return pl.DataFrame()
    frame = pl.concat(frames, how="vertical")
    models = {m: i for i, m in enumerate(dict.fromkeys(frame["model"].to_list()))}
    order = {name: i for i, name in enumerate(REPORTED)}
    return (
        frame.with_columns(
            pl.col("model").replace_strict(models, return_dtype=pl.Int64).alias("_m"),
            pl.col("explainer").replace_strict(order, return_dtype=pl.Int64).alias("_e"),
        )
        .sort(["_m", "_e", "user"])
        .drop("_m", "_e")
    )


def same_results(a: pl.DataFrame, b: pl.DataFrame) -> bool:
    """Whether two per-user tables agree on everything but the timing column."""
    keep = [c for c in a.columns if c != TIMING]
    return a.columns == b.columns and a.select(keep).equals(b.select(keep))


__all__ = ["RunHandle", "combine", "fidelity_shard", "fidelity_tasks", "run_handle"]
