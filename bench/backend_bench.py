"""Back ends of ``reclens fidelity`` on MovieLens 100K: local with 1 and 2 workers, Ray at 2 CPUs.

Prints the wall time of the same fidelity job (``--models``, all explainers, ``--users`` test
users; default fism, multvae, fism-neumf and all 943 users) on each back end, every repeat, and
checks that all give the same per-user results; then the overhead of Ray for a tiny job (one shard)
against running it in-process. Target: Ray within 1.3x of the best local time for the big job.
Runs are trained once into ``--runs`` (reused afterwards) and the job's shards are never
resumed, so every timing does the whole job.

    RECLENS_DATA=/work/shared/data .venv/bin/python bench/backend_bench.py --users 943
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from app.fidelity_job import combine, fidelity_tasks, run_handle, same_results  # noqa: E402
from engine.executor import BackendOptions, Task, run_tasks  # noqa: E402
from engine.pipeline import train_run  # noqa: E402
from engine.runs import list_runs  # noqa: E402
from engine.session import OpenRun  # noqa: E402
from explainers.batch import sample_users  # noqa: E402
from explainers.registry import parse_names  # noqa: E402

TARGET_RATIO = 1.3
PARAMS = {"spinrec": {"kappa": 16, "steps": 16}, "ig_zero": {"steps": 16}}


def runs_of(models: list[str], root: Path) -> dict[str, Path]:
    """An ml-100k run per model under ``root``, trained when missing."""
    have = {s.model: s.path for s in list_runs(root) if s.dataset == "ml-100k"}
    for name in models:
        if name not in have:
            print(f"training {name} on ml-100k...", flush=True)
            result = train_run("ml-100k", name, device="cpu", out=root,
                               load_options={"download": False})  # fmt: skip
            assert result.run_dir is not None
            have[name] = result.run_dir
    return {name: Path(have[name]) for name in models}


def timed(tasks: list[Task], options: BackendOptions) -> tuple[float, object]:
    start = time.perf_counter()
    frames = run_tasks(tasks, options)
    return time.perf_counter() - start, combine(frames)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default="fism,multvae,fism-neumf")
    parser.add_argument("--users", type=int, default=943, help="test users per model (943: all)")
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("--runs", default=str(ROOT / "artifacts" / "backend-bench" / "runs"))
    args = parser.parse_args(argv)
    models = args.models.split(",")
    runs = runs_of(models, Path(args.runs))
    handles = [run_handle(path, name) for name, path in runs.items()]
    users = {
        name: sample_users(OpenRun.open(path).split, args.users, seed=0)
        for name, path in runs.items()
    }
    explainers = parse_names("all")
    tasks = fidelity_tasks(handles, explainers, users, 0, PARAMS)
    n_users = sum(len(u) for u in users.values())
    print(f"job: {len(models)} models x {len(explainers)} explainers x {n_users} users in total, "
          f"{len(tasks)} shards")  # fmt: skip

    configs = {
        "local, 1 worker": BackendOptions(),
        "local, 2 workers": BackendOptions(workers=2),
        "ray, 2 CPUs": BackendOptions(backend="ray"),
    }
    import ray

    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False,
             _node_ip_address="127.0.0.1")  # fmt: skip
    best: dict[str, float] = {}
    reference = None
    for label, options in configs.items():
        seconds = []
        for _ in range(args.repeats):
            wall, result = timed(tasks, options)
            seconds.append(wall)
            if reference is None:
                reference = result
            assert same_results(result, reference), f"{label} gave other per-user results"
        best[label] = min(seconds)
        print(f"{label:>17}: {', '.join(f'{s:.1f}' for s in seconds)} s", flush=True)
    local = min(best["local, 1 worker"], best["local, 2 workers"])
    ratio = best["ray, 2 CPUs"] / local
    verdict = "PASS" if ratio <= TARGET_RATIO else "FAIL"
    print(f"ray / best local: {ratio:.2f}x (target <= {TARGET_RATIO}x) -> {verdict}")

    tiny = tasks[:1]
    in_process = []
    on_ray = []
    for _ in range(3):
        in_process.append(timed(tiny, BackendOptions())[0])
        on_ray.append(timed(tiny, BackendOptions(backend="ray"))[0])
    print(f"tiny job (one shard): in-process {', '.join(f'{s:.2f}' for s in in_process)} s; "
          f"ray {', '.join(f'{s:.2f}' for s in on_ray)} s (cluster already started)")  # fmt: skip
    ray.shutdown()
    start = time.perf_counter()
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False,
             _node_ip_address="127.0.0.1")  # fmt: skip
    print(f"ray local cluster start (paid once per job): {time.perf_counter() - start:.1f} s")
    ray.shutdown()
    return 0 if verdict == "PASS" else 1


if __name__ == "__main__":
    sys.exit(main())
