"""Training jobs started from the dashboard, each in a background worker thread.

A job trains one model through :func:`engine.pipeline.train_run` (which saves the complete
run, beyond-accuracy metrics included), reports every epoch, and can be cancelled.
"""

from __future__ import annotations

import threading
import time
import traceback
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from app.dashboard.catalogue import number
from data.errors import ReclensError
from engine.pipeline import train_run
from engine.train import EpochReport


@dataclass
class TrainingJob:
    """A training run in a background worker thread.

    ``reports`` grows with one dict (``epoch``, ``loss``, ``valid``, ``seconds``, ``epochs``)
    per epoch; ``status`` is ``running``, ``done``, ``cancelled`` or ``failed``; ``run_dir``
    is the saved run folder when done.
    """

    id: str
    source: str
    model: str
    epochs: int | None
    cancel: threading.Event = field(default_factory=threading.Event)
    reports: list[dict[str, Any]] = field(default_factory=list)
    status: str = "running"
    message: str = ""
    run_id: str = ""
    started: float = field(default_factory=time.time)
    thread: threading.Thread | None = None

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

    def report(self, epoch: EpochReport) -> None:
        """Record one epoch's report."""
        self.reports.append(
            {
                "epoch": int(epoch.epoch),
                "loss": number(epoch.loss),
                "valid": number(epoch.valid),
                "seconds": number(epoch.seconds),
                "epochs": int(epoch.epochs or 0),
            }
        )


class TrainingJobs:
    """Every job started by one server.

    ``on_saved(run_dir) -> run id`` is called when a job saved its run (the catalogue refreshes
    its listing there and names the run).
    """

    def __init__(self, runs_root: Path, device: str, on_saved: Callable[[Path], str]) -> None:
        self.runs_root = runs_root
        self.device = device
        self.on_saved = on_saved
        self._jobs: dict[str, TrainingJob] = {}
        self._lock = threading.Lock()

    def start(
        self,
        source: str,
        model: str,
        epochs: int | None = None,
        seed: int = 0,
        train_options: dict[str, Any] | None = None,
        load_options: dict[str, Any] | None = None,
    ) -> TrainingJob:
        """Train ``model`` on ``source`` in a background thread; returns the job at once."""
        job = TrainingJob(id=uuid.uuid4().hex[:12], source=source, model=model, epochs=epochs)

        def work() -> None:
            try:
                result = train_run(
                    source,
                    model,
                    seed=seed,
                    device=self.device,
                    epochs=epochs,
                    out=self.runs_root,
                    progress=job.report,
                    cancel=job.cancel,
                    train_options=dict(train_options or {}),
                    load_options=load_options,
                )
                job.run_id = self.on_saved(Path(result.run_dir or ""))
                job.status, job.message = "done", f"saved run {job.run_id}"
            except ReclensError as err:
                job.status = "cancelled" if job.cancel.is_set() else "failed"
                job.message = str(err)
            except Exception as err:  # noqa: BLE001 - reported on the page, never raised
                job.status = "failed"
                job.message = f"{type(err).__name__}: {err}"
                traceback.print_exc()

        job.thread = threading.Thread(target=work, name=f"reclens-train-{job.id}", daemon=True)
        with self._lock:
            self._jobs[job.id] = job
        job.thread.start()
        return job

    def job(self, job_id: str) -> TrainingJob | None:
        """The job ``job_id`` (None when unknown)."""
        return self._jobs.get(job_id)
