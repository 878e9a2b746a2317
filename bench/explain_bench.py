"""SPINRec speed on the ml-100k Mult-VAE model, on the CPU.

Prints:

1. the median latency of one SPINRec explanation (kappa 16, J 16, path selection included)
   over sampled test users (target: at most 50 ms);
2. the speed ratio against captum's ``IntegratedGradients`` doing the same kappa x J work one
   baseline at a time (16 ``attribute`` calls of ``n_steps=16``, ``method="riemann_right"``,
   ``internal_batch_size=16``: one forward and backward pass of 16 rows per baseline; same
   baselines, target and forward function ``probability(model(x))``; warmed up like SPINRec;
   no path selection), with the largest difference between captum's attributions and
   SPINRec's candidate maps as a correctness check (target: at least 10x faster). The ratio
   uses the whole SPINRec explanation (path selection included: more work than captum's);
   the ratio of SPINRec's path integration alone (``path_gradients`` over the same 16
   baselines, which also scores the baselines for the path curve) is printed beside it;
3. the wall time of explaining every ml-100k test user with SPINRec, batched (target: under
   60 s).

Latencies are wall-clock medians; the CPU time of the process (all its threads) is printed
beside them, with the load averages before and after, because the machine may be shared.

The model is the newest saved ``multvae`` run on ml-100k with seed 0 under
``$RECLENS_HOME/runs`` (or ``--run DIR``); without one it is trained through the pipeline.
Run: ``RECLENS_DATA=/work/shared/data .venv/bin/python bench/explain_bench.py``.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch

from data.errors import ReclensError
from engine.contract import Recommender
from engine.pipeline import load_context, train_run
from engine.runs import load_run, runs_root
from explainers.base import top1_outside
from explainers.spinrec import SpinRec, path_gradients

DATASET, MODEL, SEED = "ml-100k", "multvae", 0


def get_model(run: str | None) -> tuple[Recommender, object, Path]:
    """The Mult-VAE model (CPU, eval mode), its split and its run folder."""
    if run is None:
        from app.cli_fidelity import find_run

        found = find_run(runs_root(), DATASET, MODEL, SEED, "random", {})
        if found is None:
            print(f"no {MODEL} run on {DATASET}: training one", file=sys.stderr)
            result = train_run(DATASET, MODEL, seed=SEED, device="cpu")
            found = result.run_dir
        run = str(found)
    loaded = load_run(run, device="cpu")
    _, split = load_context(loaded)
    return loaded.model.eval(), split, Path(run)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run", help="run folder of the multvae model (default: find or train)")
    parser.add_argument("--users", type=int, default=60, help="users timed for latency (60)")
    parser.add_argument("--captum-users", type=int, default=15, help="users timed with captum")
    parser.add_argument("--batch-users", type=int, default=8, help="users per batched pass (8)")
    parser.add_argument("--threads", type=int, help="torch threads (default: torch's choice)")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    try:
        model, split, run_dir = get_model(args.run)
    except ReclensError as err:
        print(f"explain_bench: {err}", file=sys.stderr)
        return 2
    from captum.attr import IntegratedGradients

    train = split.train
    users = split.eval_users("test")
    rng = np.random.default_rng(SEED)
    sample = rng.choice(users, size=min(args.users, users.shape[0]), replace=False)
    spin = SpinRec(train, kappa=16, steps=16)

    def row(u: int) -> torch.Tensor:
        return torch.from_numpy(train[int(u)].toarray()[0])

    load_before = os.getloadavg()
    for u in sample[:3]:  # warm-up
        spin.explain(model, row(u), user=int(u))

    # 1. latency of one explanation
    latencies, cpu = [], []
    for u in sample:
        x = row(u)
        start, cpu_start = time.perf_counter(), time.process_time()
        spin.explain(model, x, user=int(u))
        latencies.append(1000 * (time.perf_counter() - start))
        cpu.append(1000 * (time.process_time() - cpu_start))
    median_ms = statistics.median(latencies)

    # 2. against captum, one baseline at a time (same baselines, target, steps)
    def forward(inp: torch.Tensor) -> torch.Tensor:
        return model.probability(model(inp))

    ig = IntegratedGradients(forward)

    def captum_maps(x: torch.Tensor, baselines: torch.Tensor, target: int) -> torch.Tensor:
        maps = []
        for b in baselines:
            attr = ig.attribute(
                x[None],
                baselines=b[None],
                target=target,
                n_steps=16,
                method="riemann_right",
                internal_batch_size=16,
            )
            maps.append((attr[0] * x).detach())
        return torch.stack(maps)

    warm = spin.explain(model, row(sample[0]), user=int(sample[0]))
    captum_maps(row(sample[0]), torch.from_numpy(train[warm.baseline_users].toarray()), warm.target)
    ours, ours_path, theirs, max_diff = [], [], [], 0.0
    for u in sample[: args.captum_users]:
        x = row(u)
        start = time.perf_counter()
        exp = spin.explain(model, x, user=int(u))
        ours.append(1000 * (time.perf_counter() - start))
        baselines = torch.from_numpy(train[exp.baseline_users].toarray())
        t = torch.tensor([exp.target])
        start = time.perf_counter()
        path_gradients(model, x[None], baselines[None], t, steps=16, rule="right")
        ours_path.append(1000 * (time.perf_counter() - start))
        start = time.perf_counter()
        maps = captum_maps(x, baselines, exp.target)
        theirs.append(1000 * (time.perf_counter() - start))
        max_diff = max(max_diff, float(np.abs(maps.numpy()[:, exp.items] - exp.candidates).max()))
    ratio = statistics.median(theirs) / statistics.median(ours)
    ratio_path = statistics.median(theirs) / statistics.median(ours_path)

    # 3. every test user, batched
    spin_all = SpinRec(train, kappa=16, steps=16, batch_users=args.batch_users)
    start, cpu_start = time.perf_counter(), time.process_time()
    xs = torch.from_numpy(train[users].toarray())
    targets = top1_outside(model, xs)
    explanations = spin_all.explain_batch(model, xs, targets, users=users.tolist(), seed=SEED)
    wall_s = time.perf_counter() - start
    cpu_s = time.process_time() - cpu_start

    result = {
        "run": str(run_dir),
        "threads": torch.get_num_threads(),
        "load_before": list(load_before),
        "load_after": list(os.getloadavg()),
        "median_ms": median_ms,
        "p90_ms": float(np.percentile(latencies, 90)),
        "median_cpu_ms": statistics.median(cpu),
        "captum_median_ms": statistics.median(theirs),
        "spinrec_median_ms_same_users": statistics.median(ours),
        "spinrec_path_only_median_ms": statistics.median(ours_path),
        "speedup_vs_captum": ratio,
        "speedup_vs_captum_path_only": ratio_path,
        "captum_max_abs_diff": max_diff,
        "all_users": len(explanations),
        "all_users_wall_s": wall_s,
        "all_users_cpu_s": cpu_s,
    }
    if args.json:
        print(json.dumps(result))
        return 0
    load = " ".join(f"{v:.2f}" for v in load_before)
    load_end = " ".join(f"{v:.2f}" for v in result["load_after"])
    print(f"run: {run_dir} (CPU, {result['threads']} torch threads)")
    print(f"load average before: {load}; after: {load_end}")
    print(
        f"SPINRec (kappa 16, J 16, path selection included), {len(latencies)} users: median "
        f"{median_ms:.1f} ms (CPU {result['median_cpu_ms']:.1f} ms), p90 "
        f"{result['p90_ms']:.1f} ms  [target <= 50 ms]"
    )
    print(
        f"captum IntegratedGradients, 16 baselines one at a time, {len(theirs)} users: median "
        f"{result['captum_median_ms']:.1f} ms vs SPINRec "
        f"{result['spinrec_median_ms_same_users']:.1f} ms -> {ratio:.1f}x faster  "
        f"[target >= 10x]; path integration alone "
        f"{result['spinrec_path_only_median_ms']:.1f} ms -> {ratio_path:.1f}x; "
        f"max |captum - SPINRec| = {max_diff:.2e}"
    )
    print(
        f"all {len(explanations)} test users explained with SPINRec in {wall_s:.1f} s "
        f"({1000 * wall_s / max(len(explanations), 1):.1f} ms each, CPU {cpu_s:.1f} s)  "
        f"[target < 60 s]"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
