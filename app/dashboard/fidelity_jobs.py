"""Fidelity evaluations across users started from the page, on the server's executor back end.

A job is what ``reclens fidelity`` does for one saved run: the chosen explainers and SPINRec
explain the top-1 recommendation of ``n_users`` sampled test users, one shard per explainer and
batch of users (:mod:`app.fidelity_job`), run by :mod:`engine.executor` on the back end the
server was started with (local in-process by default, local processes or Ray). The job runs in a
background thread of the server, reports shards done, failed and retried, and stores the
per-user results with the run (recorded in its manifest), where the Explain tab's comparison
across users reads them. Limits hold on the server: at most :data:`MAX_USERS` users, known
explainers, one job at a time.
"""

from __future__ import annotations

import threading
import time
import traceback
import uuid
from dataclasses import dataclass, field

from app.dashboard.shaping import LoadedRun
from app.fidelity_job import combine, fidelity_tasks, run_handle
from data.errors import ReclensError
from engine.executor import BackendOptions, Progress, run_tasks
from engine.runs import fidelity_file, write_derived
from explainers.batch import sample_users
from explainers.registry import explainer_names

MAX_USERS = 1000
"""The most users one job from the page may explain."""


class FidelityRefused(ReclensError):
    """A fidelity job from the page is outside the server's limits."""


@dataclass
class FidelityJob:
    """One evaluation: ``status`` running, done or failed; ``progress`` the executor's counts;
    ``message`` what to show when it ended; ``owner`` the session that started it."""

    id: str
    run_id: str
    n_users: int
    explainers: list[str]
    owner: str = ""
    status: str = "running"
    message: str = ""
    progress: Progress | None = None
    started: float = field(default_factory=time.time)

    @property
    def share_done(self) -> float:
        """Share of shards finished, 0..1."""
        if self.progress is None or not self.progress.total:
            return 0.0 if self.status == "running" else 1.0
        return (self.progress.done + self.progress.failed) / self.progress.total


class FidelityJobs:
    """The fidelity jobs of one server, run on ``options``' back end one at a time."""

    def __init__(self, options: BackendOptions | None = None) -> None:
        self.options = options or BackendOptions()
        self._jobs: dict[str, FidelityJob] = {}
        self._lock = threading.Lock()

    def start(
        self,
        loaded: LoadedRun,
        explainers: list[str],
        n_users: int,
        seed: int = 0,
        owner: str = "",
    ) -> FidelityJob:
        """Evaluate SPINRec and ``explainers`` on ``n_users`` test users of ``loaded``'s run in
        a background thread; returns the job at once (:class:`FidelityRefused` beyond limits)."""
        known = set(explainer_names())
        names = list(dict.fromkeys(["spinrec", *explainers]))
        unknown = [n for n in names if n not in known]
        if unknown:
            raise FidelityRefused(f"unknown explainer(s) {', '.join(unknown)}")
        if not 1 <= int(n_users) <= MAX_USERS:
            raise FidelityRefused(f"users must be between 1 and {MAX_USERS}, got {n_users}")
        with self._lock:
            if any(j.status == "running" for j in self._jobs.values()):
                raise FidelityRefused("a fidelity evaluation is already running on this server")
            job = FidelityJob(uuid.uuid4().hex[:12], loaded.run_id, int(n_users), names, owner)
            self._jobs[job.id] = job
        thread = threading.Thread(
            target=self._work, args=(job, loaded, seed), name=f"reclens-fidelity-{job.id}",
            daemon=True,
        )  # fmt: skip
        thread.start()
        return job

    def _work(self, job: FidelityJob, loaded: LoadedRun, seed: int) -> None:
        opened = loaded.opened
        try:
            users = sample_users(opened.split, job.n_users, seed)
            handle = run_handle(opened.path, opened.model_name)
            tasks = fidelity_tasks([handle], job.explainers, {opened.model_name: users}, seed, {})

            def report(state: Progress) -> None:
                job.progress = state

            frames = run_tasks(tasks, self.options, progress=report)
            table = combine(frames)
            name = fidelity_file(seed, str(len(users)))
            write_derived(opened.path, {name: table.write_parquet})
            opened.run.refresh_manifest()
            job.status = "done"
            job.message = f"{len(users)} users x {len(job.explainers)} explainers evaluated"
        except ReclensError as err:
            job.status, job.message = "failed", str(err)
        except Exception as err:  # noqa: BLE001 - reported on the page, never raised
            job.status, job.message = "failed", f"{type(err).__name__}: {err}"
            traceback.print_exc()

    def job(self, job_id: str) -> FidelityJob | None:
        """The job ``job_id`` (None when unknown)."""
        return self._jobs.get(job_id)
