"""Training jobs started from the dashboard, each in its own process.

A job trains one model through :func:`engine.pipeline.train_run` in a child process started with
the ``spawn`` context, so a long fit never holds the server's interpreter (other sessions keep
responding) and a cancelled job can always be stopped. The child sends one message per epoch
and a final one over a queue; a monitor thread in the server copies them onto the
:class:`TrainingJob` the page polls.

What a page may ask for is bounded here, on the server, whatever the browser sends
(:class:`JobLimits`): models from the registry only, at most ``max_epochs`` epochs, a wall-clock
budget, a few training options, and ``max_running`` jobs at once. A job belongs to the session
that started it (``owner``): :meth:`TrainingJobs.cancel_session` cancels that session's jobs when
its page closes.

Cancelling sets the job's ``cancel`` event: the child stops at the end of the epoch and never
saves (it checks the event once more just before saving); a child that does not end within
``JobLimits.grace_seconds`` is terminated; a run that was saved anyway (the event arrived during
the save) is deleted. Every job ends ``done``, ``cancelled`` or ``failed``, never stays running.
"""

from __future__ import annotations

import math
import multiprocessing
import queue
import shutil
import threading
import time
import traceback
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from multiprocessing.process import BaseProcess
from pathlib import Path
from typing import Any, Protocol

from data.errors import ReclensError
from engine import registry
from engine.train import EpochReport

SEED_MAX = 2**32 - 1


class JobRefused(ReclensError):
    """A training request the server's limits do not allow (shown on the page)."""


class Flag(Protocol):
    """What the page calls on a job's ``cancel``: a multiprocessing or threading event."""

    def set(self) -> None: ...

    def is_set(self) -> bool: ...


@dataclass(frozen=True)
class JobLimits:
    """Bounds on the training a page may start.

    ``max_epochs``: most epochs a job may ask for; ``max_seconds``: wall-clock training budget
    of every job (training stops at the end of the epoch past it); ``max_running``: jobs at
    once on this server; ``train_options``: the training settings a page may override (each a
    non-negative number); ``grace_seconds``: how long a cancelled child may take to stop before
    it is terminated.
    """

    max_epochs: int = 1000
    max_seconds: float = 1800.0
    max_running: int = 1
    train_options: tuple[str, ...] = ("patience", "eval_every", "min_epochs", "max_seconds")
    grace_seconds: float = 5.0


@dataclass
class TrainingJob:
    """A training run in a child process, as the page sees it.

    ``reports`` grows with one dict (``epoch``, ``loss``, ``valid``, ``seconds``, ``epochs``)
    per epoch; ``status`` is ``running``, ``done``, ``cancelled`` or ``failed``; ``run_id`` names
    the saved run when done; ``owner``: the session that started the job; ``cancel``: set it to
    stop the job; ``thread``: the monitor thread, which ends when the job has ended.
    """

    id: str
    source: str
    model: str
    epochs: int | None
    cancel: Flag = field(default_factory=threading.Event)
    owner: str = ""
    reports: list[dict[str, Any]] = field(default_factory=list)
    status: str = "running"
    message: str = ""
    run_id: str = ""
    started: float = field(default_factory=time.time)
    thread: threading.Thread | None = None
    process: BaseProcess | None = field(default=None, repr=False)

    @property
    def progress(self) -> float:
        """Share of planned epochs done, 0..1 (1 when finished)."""
        if self.status != "running":
            return 1.0
        if not self.reports:
            return 0.0
        last = self.reports[-1]
        planned = last.get("epochs") or self.epochs or 0
        return min(1.0, float(last["epoch"]) / planned) if planned else 0.0

    def report(self, epoch: dict[str, Any]) -> None:
        """Record one epoch's report (as :func:`epoch_record` made it)."""
        self.reports.append(epoch)


def epoch_record(epoch: EpochReport) -> dict[str, Any]:
    """The JSON-ready dict of one epoch that crosses from the child to the page."""
    return {
        "epoch": int(epoch.epoch),
        "loss": _number(epoch.loss),
        "valid": _number(epoch.valid),
        "seconds": _number(epoch.seconds),
        "epochs": int(epoch.epochs or 0),
    }


def _number(value: Any) -> float | None:
    try:
        out = float(value)
    except (TypeError, ValueError):
        return None
    return out if math.isfinite(out) else None


class TrainingJobs:
    """Every job started by one server.

    ``on_saved(run_dir) -> run id`` is called (in the monitor thread) when a job saved its run
    (the catalogue refreshes its listing there and names the run). ``models``: the names a page
    may train (default: every available model of the registry).
    """

    def __init__(
        self,
        runs_root: Path,
        device: str,
        on_saved: Callable[[Path], str],
        limits: JobLimits | None = None,
        models: tuple[str, ...] | None = None,
    ) -> None:
        self.runs_root = runs_root
        self.device = device
        self.on_saved = on_saved
        self.limits = limits or JobLimits()
        self.models = tuple(models) if models is not None else tuple(registry.available_models())
        self._jobs: dict[str, TrainingJob] = {}
        self._lock = threading.Lock()
        self._context = multiprocessing.get_context("spawn")

    def start(
        self,
        source: str,
        model: str,
        epochs: int | None = None,
        seed: int = 0,
        train_options: dict[str, Any] | None = None,
        load_options: dict[str, Any] | None = None,
        owner: str = "",
    ) -> TrainingJob:
        """Train ``model`` on ``source`` in a child process; returns the job at once.

        Raises :class:`JobRefused` when the request is outside :attr:`limits` or the server
        already runs ``max_running`` jobs.
        """
        options = self._checked(model, epochs, seed, train_options)
        job = TrainingJob(id=uuid.uuid4().hex[:12], source=source, model=model, epochs=epochs)
        job.owner = owner
        job.cancel = self._context.Event()
        messages = self._context.Queue()
        request = {
            "source": source,
            "model": model,
            "seed": int(seed),
            "device": self.device,
            "epochs": epochs,
            "out": str(self.runs_root),
            "train_options": options,
            "load_options": dict(load_options or {}) or None,
        }
        job.process = self._context.Process(
            target=train_in_child,
            args=(request, messages, job.cancel),
            name=f"reclens-train-{job.id}",
            daemon=True,
        )
        job.thread = threading.Thread(
            target=self._monitor,
            args=(job, job.process, messages),
            name=f"reclens-job-{job.id}",
            daemon=True,
        )
        with self._lock:
            running = [j for j in self._jobs.values() if j.status == "running"]
            if len(running) >= self.limits.max_running:
                raise JobRefused(
                    f"{len(running)} training job(s) already running on this server (at most "
                    f"{self.limits.max_running} at once); wait for it or cancel it"
                )
            self._forget_finished()
            self._jobs[job.id] = job
            job.process.start()
        job.thread.start()
        return job

    def job(self, job_id: str) -> TrainingJob | None:
        """The job ``job_id`` (None when unknown)."""
        return self._jobs.get(job_id)

    def _forget_finished(self, keep: int = 64) -> None:
        """Drop the oldest finished jobs beyond ``keep`` (the caller holds the lock)."""
        finished = [j for j in self._jobs.values() if j.status != "running"]
        for old in sorted(finished, key=lambda j: j.started)[: max(0, len(finished) - keep)]:
            del self._jobs[old.id]

    def cancel_session(self, owner: str) -> list[TrainingJob]:
        """Cancel every running job of session ``owner`` (its page was closed); returns them."""
        with self._lock:
            jobs = [j for j in self._jobs.values() if j.owner == owner and j.status == "running"]
        for job in jobs:
            job.cancel.set()
        return jobs

    def close(self, timeout: float = 10.0) -> None:
        """Cancel every running job and wait (up to ``timeout`` s each) until it has ended."""
        with self._lock:
            jobs = [j for j in self._jobs.values() if j.status == "running"]
        for job in jobs:
            job.cancel.set()
        for job in jobs:
            if job.thread is not None:
                job.thread.join(timeout)

    # -- the server side of one job ------------------------------------------------------------
    def _checked(
        self, model: str, epochs: int | None, seed: int, train_options: dict[str, Any] | None
    ) -> dict[str, Any]:
        """The training options a job runs with; :class:`JobRefused` outside the limits."""
        limits = self.limits
        if model not in self.models:
            raise JobRefused(f"unknown model {model!r}: pick one of {', '.join(self.models)}")
        if epochs is not None and (
            not _is_int(epochs) or not 1 <= int(epochs) <= limits.max_epochs
        ):
            raise JobRefused(f"epochs must be a whole number from 1 to {limits.max_epochs}")
        if not _is_int(seed) or not 0 <= int(seed) <= SEED_MAX:
            raise JobRefused(f"the seed must be a whole number from 0 to {SEED_MAX}")
        options = dict(train_options or {})
        for key, value in options.items():
            if key not in limits.train_options:
                raise JobRefused(
                    f"training option {key!r} cannot be set from the page "
                    f"(allowed: {', '.join(limits.train_options)})"
                )
            if not isinstance(value, int | float) or isinstance(value, bool):
                raise JobRefused(f"training option {key} must be a number")
            if not math.isfinite(value) or value < 0 or value > limits.max_epochs * 10:
                raise JobRefused(f"training option {key}={value} is out of range")
        budget = float(options.get("max_seconds") or limits.max_seconds)
        options["max_seconds"] = min(budget, limits.max_seconds)
        return options

    def _monitor(self, job: TrainingJob, process: BaseProcess, messages: Any) -> None:
        """Copy the child's messages onto ``job`` until the child has ended; whatever happens
        here, the job ends with a final status and the child is gone."""
        try:
            self._follow(job, process, messages)
        except Exception as err:  # noqa: BLE001 - reported on the page, never raised
            traceback.print_exc()
            job.status, job.message = "failed", f"lost track of the training process ({err})"
        finally:
            if process.is_alive():
                process.kill()

    def _follow(self, job: TrainingJob, process: BaseProcess, messages: Any) -> None:
        cancelled_at: float | None = None
        final: tuple[str, Any] | None = None
        while final is None:
            if job.cancel.is_set():
                cancelled_at = cancelled_at or time.monotonic()
                late = time.monotonic() - cancelled_at > self.limits.grace_seconds
                if late and process.is_alive():
                    process.terminate()
                    process.join(5.0)
            try:
                kind, payload = messages.get(timeout=0.2)
            except queue.Empty:
                if not process.is_alive():
                    final = self._drain(job, messages) or (
                        ("cancelled", "")
                        if job.cancel.is_set()
                        else (
                            "failed",
                            f"the training process ended (exit code {process.exitcode})",
                        )
                    )
                continue
            if kind == "epoch":
                job.report(payload)
            else:
                final = (kind, payload)
        process.join(5.0)
        if process.is_alive():
            process.kill()
        messages.close()
        self._finish(job, *final)

    @staticmethod
    def _drain(job: TrainingJob, messages: Any) -> tuple[str, Any] | None:
        """Epoch reports still queued, and the final message if one is there."""
        while True:
            try:
                kind, payload = messages.get_nowait()
            except (queue.Empty, OSError, ValueError):
                return None
            if kind == "epoch":
                job.report(payload)
            else:
                return kind, payload

    def _finish(self, job: TrainingJob, kind: str, payload: Any) -> None:
        """Set the job's final status; a run saved after the job was cancelled is deleted."""
        if kind == "done" and job.cancel.is_set():
            shutil.rmtree(Path(payload), ignore_errors=True)
            kind, payload = "cancelled", ""
        if kind == "done":
            try:
                job.run_id = self.on_saved(Path(payload))
            except Exception as err:  # noqa: BLE001 - reported on the page, never raised
                job.status, job.message = "failed", f"saved {payload} but cannot list it: {err}"
                return
            job.status, job.message = "done", f"saved run {job.run_id}"
        elif kind == "cancelled":
            job.status = "cancelled"
            job.message = payload or f"training of {job.model} was cancelled; nothing was saved"
        else:
            job.status, job.message = "failed", str(payload)


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def train_in_child(request: dict[str, Any], messages: Any, cancel: Flag) -> None:
    """The child process: train, then send ``("done", run_dir)``, ``("cancelled", message)``
    or ``("failed", message)``; every epoch sends ``("epoch", record)`` first."""
    from engine.pipeline import TrainingCancelled, train_run

    try:
        result = train_run(
            request["source"],
            request["model"],
            seed=request["seed"],
            device=request["device"],
            epochs=request["epochs"],
            out=request["out"],
            progress=lambda epoch: messages.put(("epoch", epoch_record(epoch))),
            cancel=cancel,
            train_options=request["train_options"],
            load_options=request["load_options"],
        )
        messages.put(("done", str(result.run_dir)))
    except TrainingCancelled as err:
        messages.put(("cancelled", str(err)))
    except ReclensError as err:
        messages.put(("cancelled" if cancel.is_set() else "failed", str(err)))
    except Exception as err:  # noqa: BLE001 - reported on the page; the traceback on stderr
        traceback.print_exc()
        messages.put(("failed", f"{type(err).__name__}: {err}"))
