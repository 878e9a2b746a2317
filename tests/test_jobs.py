"""Training jobs started from the page: limits checked on the server, a child process per job,
cancel (by the event, by termination, by closing the page) never leaves a saved run behind."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

from app.dashboard.jobs import JobLimits, JobRefused, TrainingJob, TrainingJobs

TINY = {"n_users": 60, "n_items": 50, "n_interactions": 600}


def _jobs(tmp_path: Path, **limits: object) -> tuple[TrainingJobs, list[Path]]:
    saved: list[Path] = []

    def on_saved(run_dir: Path) -> str:
        saved.append(run_dir)
        return f"{run_dir.parent.name}/{run_dir.name}"

    jobs = TrainingJobs(tmp_path / "runs", "cpu", on_saved, JobLimits(**limits))  # type: ignore[arg-type]
    return jobs, saved


def _runs(tmp_path: Path) -> list[Path]:
    root = tmp_path / "runs"
    return [p for p in root.glob("*/*") if not p.name.startswith(".")] if root.exists() else []


def _wait_for_report(job: TrainingJob, seconds: float = 90.0) -> None:
    deadline = time.time() + seconds
    while not job.reports and job.status == "running" and time.time() < deadline:
        time.sleep(0.1)
    assert job.reports, job.message


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"model": "nosuch"}, "unknown model 'nosuch'"),
        ({"epochs": 0}, "epochs must be a whole number from 1 to 1000"),
        ({"epochs": 10**9}, "from 1 to 1000"),
        ({"epochs": 2.5}, "whole number"),
        ({"seed": -1}, "seed"),
        ({"seed": 2**66}, "seed"),
        ({"train_options": {"epochs": 10**9}}, "cannot be set from the page"),
        ({"train_options": {"lr": 1e9}}, "cannot be set from the page"),
        ({"train_options": {"patience": float("inf")}}, "out of range"),
        ({"train_options": {"patience": "5"}}, "must be a number"),
    ],
)
def test_requests_outside_the_limits_are_refused(
    tmp_path: Path, kwargs: dict, message: str
) -> None:
    jobs, _ = _jobs(tmp_path)
    request = {"source": "synthetic", "model": "pop", **kwargs}
    with pytest.raises(JobRefused, match=message):
        jobs.start(**request)
    assert jobs._jobs == {}


def test_a_job_trains_in_a_child_process_and_one_runs_at_a_time(tmp_path: Path) -> None:
    jobs, saved = _jobs(tmp_path)
    job = jobs.start("synthetic", "ease", load_options=TINY, owner="session-a")
    assert job.process is not None and job.process.pid != os.getpid()
    with pytest.raises(JobRefused, match="already running"):
        jobs.start("synthetic", "pop", load_options=TINY)
    assert job.thread is not None
    job.thread.join(timeout=120)
    assert job.status == "done", job.message
    assert saved == _runs(tmp_path) and len(saved) == 1
    assert job.run_id == f"synthetic/{saved[0].name}" and job.progress == 1.0
    assert not job.process.is_alive()
    again = jobs.start("synthetic", "pop", load_options=TINY)  # the first one has ended
    assert again.thread is not None
    again.thread.join(timeout=120)
    assert again.status == "done", again.message


def test_cancel_stops_the_job_and_saves_nothing(tmp_path: Path) -> None:
    jobs, saved = _jobs(tmp_path)
    job = jobs.start(
        "synthetic", "fism", epochs=1000, train_options={"patience": 0}, load_options=TINY
    )
    _wait_for_report(job)
    job.cancel.set()  # what the page's Cancel button does
    assert job.thread is not None
    job.thread.join(timeout=60)
    assert job.status == "cancelled" and "nothing was saved" in job.message
    assert saved == [] and _runs(tmp_path) == []


def test_a_child_that_does_not_stop_is_terminated(tmp_path: Path) -> None:
    jobs, saved = _jobs(tmp_path, grace_seconds=0.0)
    job = jobs.start(
        "synthetic", "fism", epochs=1000, train_options={"patience": 0}, load_options=TINY
    )
    _wait_for_report(job)
    start = time.monotonic()
    job.cancel.set()
    assert job.thread is not None
    job.thread.join(timeout=30)
    assert job.status == "cancelled", job.message
    assert time.monotonic() - start < 10
    assert job.process is not None and not job.process.is_alive()
    assert saved == [] and _runs(tmp_path) == []


def test_a_run_saved_as_the_cancel_arrived_is_deleted(tmp_path: Path) -> None:
    jobs, saved = _jobs(tmp_path)
    run = tmp_path / "runs" / "synthetic" / "ease-20260101T000000Z"
    run.mkdir(parents=True)
    (run / "model.safetensors").write_bytes(b"x")
    job = TrainingJob(id="j1", source="synthetic", model="ease", epochs=None)
    job.cancel.set()  # set while the child was saving
    jobs._finish(job, "done", str(run))
    assert job.status == "cancelled" and not run.exists() and saved == []


def test_closing_a_page_cancels_only_its_jobs(tmp_path: Path) -> None:
    jobs, _ = _jobs(tmp_path)
    mine = TrainingJob(id="a1", source="synthetic", model="fism", epochs=5, owner="page-a")
    theirs = TrainingJob(id="b1", source="synthetic", model="fism", epochs=5, owner="page-b")
    done = TrainingJob(id="a0", source="synthetic", model="fism", epochs=5, owner="page-a")
    done.status = "done"
    jobs._jobs.update({job.id: job for job in (mine, theirs, done)})
    assert jobs.cancel_session("page-a") == [mine]
    assert mine.cancel.is_set() and not theirs.cancel.is_set() and not done.cancel.is_set()


def test_a_failing_job_reports_one_line(tmp_path: Path) -> None:
    jobs, saved = _jobs(tmp_path)
    job = jobs.start("synthetic", "pop", load_options={"n_users": -5})
    assert job.thread is not None
    job.thread.join(timeout=120)
    assert job.status == "failed" and "n_users must be positive" in job.message
    assert "\n" not in job.message and saved == []


def test_a_child_that_dies_ends_the_job_as_failed(tmp_path: Path) -> None:
    jobs, saved = _jobs(tmp_path)
    job = jobs.start(
        "synthetic", "fism", epochs=1000, train_options={"patience": 0}, load_options=TINY
    )
    _wait_for_report(job)
    assert job.process is not None
    job.process.kill()  # e.g. the out-of-memory killer
    assert job.thread is not None
    job.thread.join(timeout=30)
    assert job.status == "failed" and "the training process ended" in job.message
    assert saved == [] and _runs(tmp_path) == []


def test_a_cancel_after_training_but_before_saving_saves_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import threading

    import engine.pipeline as pipeline

    cancel = threading.Event()
    real = pipeline.evaluate

    def evaluate_then_cancel(*args: object, **kwargs: object) -> object:
        cancel.set()  # the page's Cancel arrives while the model is being evaluated
        return real(*args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(pipeline, "evaluate", evaluate_then_cancel)
    with pytest.raises(pipeline.TrainingCancelled, match="before it was saved"):
        pipeline.train_run(
            "synthetic", "pop", out=tmp_path / "runs", cancel=cancel, load_options=TINY
        )
    assert _runs(tmp_path) == []


def test_only_recent_finished_jobs_are_remembered(tmp_path: Path) -> None:
    jobs, _ = _jobs(tmp_path)
    for k in range(70):
        old = TrainingJob(id=f"j{k}", source="synthetic", model="pop", epochs=None)
        old.status, old.started = "done", float(k)
        jobs._jobs[old.id] = old
    jobs._forget_finished()
    assert sorted(jobs._jobs, key=lambda i: int(i[1:])) == [f"j{k}" for k in range(6, 70)]
