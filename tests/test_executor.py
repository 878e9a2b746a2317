"""The executor layer: local and Ray back ends give the same per-user fidelity, a worker that
dies mid-job is retried, failures are reported, and an interrupted job resumes."""

from __future__ import annotations

import importlib.util
import json
import os
import sys
from pathlib import Path

import numpy as np
import polars as pl
import pytest

from app.fidelity_job import combine, fidelity_tasks, run_handle, same_results
from engine.executor import BackendOptions, ShardStore, Task, run_tasks
from engine.pipeline import train_run
from engine.session import OpenRun
from explainers.batch import evaluate_fidelity, sample_users

DATA = {"n_users": 120, "n_items": 80, "n_interactions": 2000, "seed": 5}
EXPLAINERS = ["spinrec", "ig_zero", "cosine", "random"]
PARAMS = {"spinrec": {"kappa": 4, "steps": 4}, "ig_zero": {"steps": 4}}
HAS_RAY = importlib.util.find_spec("ray") is not None


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("runs")
    result = train_run("synthetic", "fism", epochs=2, out=root, device="cpu", load_options=DATA)
    assert result.run_dir is not None
    return result.run_dir


@pytest.fixture(scope="module")
def job(run_dir: Path) -> tuple[list[Task], np.ndarray]:
    users = sample_users(OpenRun.open(run_dir).split, 10, seed=0)
    handle = run_handle(run_dir, "fism")
    return fidelity_tasks([handle], EXPLAINERS, {"fism": users}, 0, PARAMS, batch=4), users


@pytest.fixture(scope="module")
def local_result(job: tuple[list[Task], np.ndarray]) -> pl.DataFrame:
    return combine(run_tasks(job[0]))


def test_shards_give_the_unsharded_result(
    run_dir: Path, job: tuple[list[Task], np.ndarray], local_result: pl.DataFrame
) -> None:
    tasks, users = job
    assert len(tasks) == len(EXPLAINERS) * 3  # 10 users in batches of 4
    opened = OpenRun.open(run_dir)
    whole = evaluate_fidelity(
        opened.model, opened.split, explainers=EXPLAINERS, users=users, seed=0,
        model_name="fism", params=PARAMS,
    ).per_user  # fmt: skip
    assert local_result.height == whole.height == (len(EXPLAINERS) + 1) * len(users)
    keep = [c for c in whole.columns if c != "ms"]
    for column in keep:
        a, b = local_result[column].to_list(), whole[column].to_list()
        if isinstance(a[0], float):
            np.testing.assert_allclose(a, b, rtol=1e-9, atol=1e-12, err_msg=column)
        else:
            assert a == b, column


def test_two_local_workers_give_identical_results(
    job: tuple[list[Task], np.ndarray], local_result: pl.DataFrame
) -> None:
    pooled = combine(run_tasks(job[0], BackendOptions(workers=2)))
    assert same_results(pooled, local_result)


def _die_once(marker: str, value: int) -> pl.DataFrame:
    """A task whose first attempt kills its worker process (a crashed worker)."""
    if not os.path.exists(marker):
        Path(marker).write_text("died")
        os._exit(1)
    return pl.DataFrame({"value": [value]})


def _always_fails(value: int) -> pl.DataFrame:
    raise ValueError(f"bad shard {value}")


def test_a_dying_local_worker_is_retried(tmp_path: Path) -> None:
    tasks = [Task(f"t{i}", _die_once, (str(tmp_path / f"m{i}"), i)) for i in range(3)]
    seen = []
    out = run_tasks(tasks, BackendOptions(workers=2), progress=lambda p: seen.append(p.line()))
    assert [f["value"][0] for f in out] == [0, 1, 2]
    assert seen[-1].startswith("3/3 shards done, 0 failed") and "0 retried" not in seen[-1]


def test_failures_are_reported_not_dropped(tmp_path: Path) -> None:
    store = ShardStore(tmp_path / "shards")
    ok = Task("ok", _die_once, (str(tmp_path / "never"), 7))
    (tmp_path / "never").write_text("no crash")
    tasks = [ok, Task("bad", _always_fails, (3,))]
    with pytest.raises(Exception, match=r"1 of 2 shards failed after 1 retries \(bad: ValueError"):
        run_tasks(tasks, BackendOptions(retries=1), store=store)
    assert store.has("ok") and not store.has("bad")


def test_resume_after_an_interruption_gives_the_same_result(
    tmp_path: Path, job: tuple[list[Task], np.ndarray], local_result: pl.DataFrame
) -> None:
    tasks = job[0]
    store = ShardStore(tmp_path / "shards")
    half = len(tasks) // 2

    def interrupt(state) -> None:
        if state.done == half:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        run_tasks(tasks, store=store, progress=interrupt)
    assert len(list(store.folder.glob("*.parquet"))) == half
    resumed_lines = []
    out = run_tasks(tasks, store=store, resume=True, progress=lambda p: resumed_lines.append(p))
    assert resumed_lines[0].resumed == half
    assert same_results(combine(out), local_result)


def test_unknown_back_end_is_a_one_line_error() -> None:
    with pytest.raises(Exception, match="unknown back end 'spark'"):
        BackendOptions(backend="spark")


@pytest.fixture(scope="module")
def ray_cluster():
    if not HAS_RAY:
        pytest.skip("the ray extra is not installed (pip install -e '.[ray]')")
    import ray

    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, _node_ip_address="127.0.0.1")
    # tasks defined in this test module travel by value (workers cannot import tests/)
    ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])
    yield ray
    ray.shutdown()


def test_ray_gives_the_local_result_and_retries_a_killed_worker(
    ray_cluster, tmp_path: Path, run_dir: Path, job, local_result: pl.DataFrame
) -> None:
    options = BackendOptions(backend="ray")
    assert same_results(combine(run_tasks(job[0], options)), local_result)
    # shipped through the object store: the workers never read the run folder
    shipped = run_handle(run_dir, "fism", ship=True)
    moved = tmp_path / "moved"
    os.rename(run_dir, moved)
    try:
        handle = type(shipped)(
            shipped.path, shipped.manifest_sha, "fism", ray_cluster.put(shipped.payload)
        )
        tasks = fidelity_tasks([handle], EXPLAINERS, {"fism": job[1]}, 0, PARAMS, batch=4)
        assert same_results(combine(run_tasks(tasks, options)), local_result)
    finally:
        os.rename(moved, run_dir)
    dying = [Task(f"t{i}", _die_once, (str(tmp_path / f"m{i}"), i)) for i in range(3)]
    lines = []
    out = run_tasks(dying, options, progress=lambda p: lines.append(p))
    assert [f["value"][0] for f in out] == [0, 1, 2]
    assert lines[-1].retried == 3 and lines[-1].failed == 0


def test_cli_fidelity_is_identical_on_ray_and_locally(
    ray_cluster, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from app.cli import main

    base = ["fidelity", "--dataset", "synthetic", "--model", "fism", "--explainers",
            "spinrec,cosine,random", "--users", "6", "--kappa", "4", "--steps", "4",
            "--epochs", "1", "--runs", str(tmp_path / "runs"), "--shard-users", "2", "--quiet",
            *[f"--data-option={k}={v}" for k, v in DATA.items()]]  # fmt: skip
    for backend in ("local", "ray"):
        out = tmp_path / f"{backend}.parquet"
        assert main([*base, "--backend", backend, "--out", str(out)]) == 0
    capsys.readouterr()
    local = pl.read_parquet(tmp_path / "local.parquet")
    assert local.height == 4 * 6  # spinrec, its best-of-kappa bound, cosine, random
    assert same_results(pl.read_parquet(tmp_path / "ray.parquet"), local)


def test_metrics_and_projections_of_several_runs(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from app.cli import main
    from engine.runs import projection_files, read_manifest

    folders = []
    for model in ("pop", "ease"):
        result = train_run("synthetic", model, out=tmp_path, device="cpu", load_options=DATA)
        folders.append(str(result.run_dir))
    runs = [arg for folder in folders for arg in ("--run", folder)]
    assert main(["metrics", *runs, "--k", "5", "--json", "--workers", "2"]) == 0
    lines = [json.loads(x) for x in capsys.readouterr().out.strip().splitlines()]
    assert [Path(r["info"]["run"]).name for r in lines] == [Path(f).name for f in folders]
    assert all(r["k"] == 5 for r in lines)
    single = json.loads(_single_metrics(main, capsys, folders[1]))
    assert single["catalogue"] == lines[1]["catalogue"]
    assert main(["project", *runs, "--method", "pca"]) == 0
    assert "maps of" in capsys.readouterr().out
    for folder in folders:
        assert set(projection_files("users", "pca")) <= set(read_manifest(folder))


def _single_metrics(main, capsys, folder: str) -> str:
    assert main(["metrics", "--run", folder, "--k", "5", "--json", "--no-save"]) == 0
    return capsys.readouterr().out
