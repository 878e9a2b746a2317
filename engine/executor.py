"""One executor layer for RecLens's many independent pieces of work: local by default, Ray
when asked.

A job is a list of :class:`Task` (a module-level function, its arguments and a unique key); each
returns a small Polars table. :func:`run_tasks` runs them on a back end, writes every result
atomically into a :class:`ShardStore` as it arrives (so an interrupted job resumes where it
stopped), retries a failed task a bounded number of times and reports progress. Back ends:

- ``local`` (the default): in this process with one worker; with more, a process pool of
  spawned workers on this machine (one torch thread each);
- ``ray``: remote tasks on a Ray cluster (the optional ``reclens[ray]`` extra, imported only when
  chosen): with no address Ray starts a local cluster by itself on the loopback address (no
  ``ray start`` needed), with ``--ray-address`` it joins an existing one. Resources per task
  (CPUs, GPUs, fractions allowed) and the number of tasks in flight are bounded.

Results never depend on the back end, the worker count or the order tasks finish in: each task
is a pure function of its arguments (seeds are part of them), and :func:`run_tasks` returns the
tables in task order. ``RECLENS_BACKEND`` sets the default back end.
"""

from __future__ import annotations

import concurrent.futures as cf
import logging
import multiprocessing
import os
import secrets
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import polars as pl

from data.errors import ReclensError

BACKENDS: tuple[str, ...] = ("local", "ray")
DEFAULT_RETRIES = 2
"""How many times a failed task is tried again before the job reports it as failed."""

log = logging.getLogger("reclens.executor")


@dataclass(frozen=True)
class Task:
    """One independent piece of work: ``fn(*args)`` returns a Polars table.

    ``fn`` must be a module-level function (it is sent to other processes by reference);
    ``key`` is unique in a job and safe as a file name.
    """

    key: str
    fn: Callable[..., pl.DataFrame]
    args: tuple[Any, ...] = ()


@dataclass
class Progress:
    """Counts of a running job: ``done``, ``failed``, ``retried``, ``resumed`` of ``total``."""

    total: int
    done: int = 0
    failed: int = 0
    retried: int = 0
    resumed: int = 0
    errors: dict[str, str] = field(default_factory=dict)

    def line(self) -> str:
        return (
            f"{self.done}/{self.total} shards done, {self.failed} failed, "
            f"{self.retried} retried" + (f", {self.resumed} resumed" if self.resumed else "")
        )


@dataclass(frozen=True)
class BackendOptions:
    """How to run tasks: ``backend`` (local or ray), ``workers`` (local processes),
    ``ray_address`` (None: a local Ray cluster started by Ray itself), ``cpus_per_task``,
    ``gpus_per_task`` (fractions allowed), ``max_in_flight`` (None: twice the workers or CPUs)
    and ``retries``."""

    backend: str = "local"
    workers: int = 1
    ray_address: str | None = None
    cpus_per_task: float = 1.0
    gpus_per_task: float = 0.0
    max_in_flight: int | None = None
    retries: int = DEFAULT_RETRIES

    def __post_init__(self) -> None:
        if self.backend not in BACKENDS:
            raise ReclensError(f"unknown back end {self.backend!r}: use {' or '.join(BACKENDS)}")
        if self.workers < 1:
            raise ReclensError(f"--workers must be at least 1, got {self.workers}")
        if self.cpus_per_task <= 0 or self.gpus_per_task < 0:
            raise ReclensError("--cpus-per-task must be positive and --gpus-per-task not negative")
        if self.max_in_flight is not None and self.max_in_flight < 1:
            raise ReclensError(f"--max-in-flight must be at least 1, got {self.max_in_flight}")
        if self.retries < 0:
            raise ReclensError(f"--retries must not be negative, got {self.retries}")


def default_backend() -> str:
    """``$RECLENS_BACKEND`` when set (``local`` or ``ray``), else ``local``."""
    return os.environ.get("RECLENS_BACKEND", "local").strip().lower() or "local"


# -- results on disk ---------------------------------------------------------------------------
class ShardStore:
    """Finished task results of one job, one Parquet file per task key, each written atomically.

    A file is only ever complete (written to a hidden name, then renamed), so whatever is in
    the folder after an interruption is a finished result that a resumed job can keep.
    """

    def __init__(self, folder: str | Path) -> None:
        self.folder = Path(folder).expanduser()

    def path(self, key: str) -> Path:
        return self.folder / f"{key}.parquet"

    def has(self, key: str) -> bool:
        return self.path(key).is_file()

    def read(self, key: str) -> pl.DataFrame:
        try:
            return pl.read_parquet(self.path(key))
        except Exception as err:  # polars raises several types for a damaged file
            raise ReclensError(f"{self.path(key)}: unreadable shard result ({err})") from err

    def write(self, key: str, frame: pl.DataFrame) -> None:
        try:
            self.folder.mkdir(parents=True, exist_ok=True)
            tmp = self.folder / f".{key}.partial-{os.getpid()}-{secrets.token_hex(4)}"
            frame.write_parquet(tmp)
            os.replace(tmp, self.path(key))
        except OSError as err:
            raise ReclensError(f"{self.folder}: cannot store shard {key} ({err})") from err

    def clear(self) -> None:
        """Forget every stored result (a job started afresh)."""
        if self.folder.is_dir():
            for path in self.folder.glob("*.parquet"):
                path.unlink()


# -- running ----------------------------------------------------------------------------------
def run_tasks(
    tasks: Sequence[Task],
    options: BackendOptions | None = None,
    store: ShardStore | None = None,
    resume: bool = False,
    progress: Callable[[Progress], None] | None = None,
) -> list[pl.DataFrame]:
    """Run ``tasks`` and return their tables in task order.

    With a ``store`` every result is written as soon as it arrives; with ``resume`` tasks whose
    result is already stored are not run again (without it the store is cleared first). A task
    that fails is retried up to ``options.retries`` times; if it still fails, the job raises
    :class:`ReclensError` naming every failed task and its error, after all other tasks ran
    (their results stay in the store, so ``resume`` finishes the job).
    """
    options = options or BackendOptions()
    keys = [t.key for t in tasks]
    if len(set(keys)) != len(keys):
        raise ReclensError("task keys must be unique within a job")
    state = Progress(total=len(tasks))
    results: dict[str, pl.DataFrame] = {}
    if store is not None and not resume:
        store.clear()
    todo = []
    for task in tasks:
        if store is not None and resume and store.has(task.key):
            results[task.key] = store.read(task.key)
            state.done += 1
            state.resumed += 1
        else:
            todo.append(task)
    if progress is not None:
        progress(state)
    runner = _ray_outcomes if options.backend == "ray" else _local_outcomes
    for key, frame, error, attempts in runner(todo, options):
        state.retried += max(0, attempts - 1)
        if frame is not None:
            results[key] = frame
            if store is not None:
                store.write(key, frame)
            state.done += 1
        else:
            state.failed += 1
            state.errors[key] = error or "no result"
        if progress is not None:
            progress(state)
    if state.errors:
        listed = "; ".join(f"{k}: {v}" for k, v in sorted(state.errors.items()))
        raise ReclensError(
            f"{state.failed} of {state.total} shards failed after {options.retries} retries "
            f"({listed}); finished shards are kept: rerun with --resume to try the failed ones"
        )
    return [results[k] for k in keys]


Outcome = tuple[str, pl.DataFrame | None, str | None, int]
"""(task key, table or None, error text or None, attempts made)."""


def _call(fn: Callable[..., pl.DataFrame], args: tuple[Any, ...]) -> pl.DataFrame:
    frame = fn(*args)
    if not isinstance(frame, pl.DataFrame):
        raise TypeError(f"task returned {type(frame).__name__}, not a polars DataFrame")
    return frame


def _error_text(err: BaseException) -> str:
    """One line: the error's type and its last message line (Ray puts the traceback first)."""
    lines = [line.strip() for line in str(err).splitlines() if line.strip()]
    return f"{type(err).__name__}: {(lines[-1] if lines else '')[:300]}"


def _local_outcomes(tasks: Sequence[Task], options: BackendOptions) -> Iterator[Outcome]:
    if options.workers == 1:
        for task in tasks:
            for attempt in range(1, options.retries + 2):
                try:
                    yield task.key, _call(task.fn, task.args), None, attempt
                    break
                except Exception as err:  # noqa: BLE001 - reported, retried, never dropped
                    if attempt > options.retries:
                        yield task.key, None, _error_text(err), attempt
        return
    yield from _pool_outcomes(tasks, options)


def _pool_outcomes(tasks: Sequence[Task], options: BackendOptions) -> Iterator[Outcome]:
    """A pool of spawned worker processes; a pool broken by a dying worker is replaced.

    When a worker dies, every task in flight fails with it and nobody knows which one killed
    it: those tasks run again one at a time, and an attempt only counts against a task that
    died alone (or raised an ordinary error).
    """
    attempts = {t.key: 0 for t in tasks}
    suspects: set[str] = set()
    pending = list(tasks)
    limit = options.max_in_flight or 2 * options.workers
    while pending:
        context = multiprocessing.get_context("spawn")
        with cf.ProcessPoolExecutor(
            options.workers, mp_context=context, initializer=_worker_init
        ) as pool:
            running: dict[cf.Future, Task] = {}
            broken = False
            while (pending or running) and not broken:
                while pending and len(running) < limit:
                    if pending[0].key in suspects and running:
                        break  # a suspect runs alone
                    task = pending.pop(0)
                    attempts[task.key] += 1
                    running[pool.submit(_call, task.fn, task.args)] = task
                    if task.key in suspects:
                        break
                finished, _ = cf.wait(running, return_when=cf.FIRST_COMPLETED)
                alone = len(running) == 1
                for future in finished:
                    task = running.pop(future)
                    try:
                        frame = future.result()
                    except cf.process.BrokenProcessPool as err:
                        broken = True
                        if not alone:
                            attempts[task.key] -= 1
                            suspects.add(task.key)
                        outcome = _retry_or_fail(task, attempts, options, err, pending)
                    except Exception as err:  # noqa: BLE001 - reported, retried, never dropped
                        outcome = _retry_or_fail(task, attempts, options, err, pending)
                    else:
                        outcome = (task.key, frame, None, attempts[task.key])
                    if outcome is not None:
                        yield outcome
            if broken:  # the tasks still in flight died with the pool: run them again, alone
                for future, task in running.items():
                    future.cancel()
                    attempts[task.key] -= 1
                    suspects.add(task.key)
                    pending.insert(0, task)


def _retry_or_fail(
    task: Task,
    attempts: dict[str, int],
    options: BackendOptions,
    err: BaseException,
    pending: list[Task],
) -> Outcome | None:
    if attempts[task.key] <= options.retries:
        pending.insert(0, task)
        return None
    return task.key, None, _error_text(err), attempts[task.key]


def _worker_init() -> None:
    """A local worker process: one torch thread (the pool's workers share the machine)."""
    import torch

    torch.set_num_threads(1)


def share(value: Any, options: BackendOptions) -> Any:
    """``value`` as every task should receive it: on Ray, put once into the object store (a
    reference tasks resolve with ``ray.get``); locally, the value itself."""
    if options.backend != "ray":
        return value
    ray = _ray(options)
    return ray.put(value)


def _ray(options: BackendOptions) -> Any:
    """The ray module, connected to the cluster (started locally by Ray when no address)."""
    try:
        import ray
    except ImportError as err:
        raise ReclensError(
            "the ray back end needs the ray package: pip install 'reclens[ray]' "
            "(or use --backend local)"
        ) from err
    if not ray.is_initialized():
        started = time.perf_counter()
        local = {"_node_ip_address": "127.0.0.1"} if options.ray_address is None else {}
        ray.init(address=options.ray_address, include_dashboard=False, log_to_driver=False, **local)
        log.info("ray: cluster ready in %.1f s", time.perf_counter() - started)
    return ray


def _ray_outcomes(tasks: Sequence[Task], options: BackendOptions) -> Iterator[Outcome]:
    """Remote tasks on Ray, at most ``max_in_flight`` at a time; a task whose worker died or
    that raised is submitted again (by the driver, so attempts are counted) up to ``retries``."""
    ray = _ray(options)
    remote = ray.remote(
        num_cpus=options.cpus_per_task, num_gpus=options.gpus_per_task, max_retries=0
    )(_call)
    limit = options.max_in_flight or max(2, 2 * int(ray.cluster_resources().get("CPU", 1)))
    attempts = {t.key: 0 for t in tasks}
    pending = list(tasks)
    running: dict[Any, Task] = {}
    while pending or running:
        while pending and len(running) < limit:
            task = pending.pop(0)
            attempts[task.key] += 1
            running[remote.remote(task.fn, task.args)] = task
        ready, _ = ray.wait(list(running), num_returns=1)
        for ref in ready:
            task = running.pop(ref)
            try:
                frame = ray.get(ref)
            except Exception as err:  # noqa: BLE001 - a crashed worker or a task error
                outcome = _retry_or_fail(task, attempts, options, err, pending)
            else:
                outcome = (task.key, frame, None, attempts[task.key])
            if outcome is not None:
                yield outcome


def log_progress(prefix: str, every: float = 5.0) -> Callable[[Progress], None]:
    """A progress callback printing one line to stderr at most every ``every`` seconds (and at
    the end), for terminals and logs alike."""
    last = [0.0]

    def report(state: Progress) -> None:
        now = time.monotonic()
        final = state.done + state.failed == state.total
        if final or now - last[0] >= every:
            last[0] = now
            print(f"{prefix}: {state.line()}", file=sys.stderr, flush=True)

    return report
