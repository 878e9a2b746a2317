"""SPINRec speed on the ml-100k Mult-VAE model, on the CPU.

Prints:

1. the median latency of one SPINRec explanation (kappa 16, J 16, path selection included)
   over sampled test users (target: at most 50 ms);
2. the speed ratio against captum's ``IntegratedGradients`` doing the same kappa x J work one
   baseline at a time (16 ``attribute`` calls of 16 right-Riemann steps each, same baselines
   and target; no path selection), with the largest difference between captum's attributions
   and SPINRec's candidate maps as a correctness check (target: at least 10x faster);
3. the wall time of explaining every ml-100k test user with SPINRec, batched (target: under
   60 s).

The model is the newest saved ``multvae`` run on ml-100k with seed 0 under
``$RECLENS_HOME/runs`` (or ``--run DIR``); without one it is trained through the pipeline.
Run: ``RECLENS_DATA=/work/shared/data .venv/bin/python bench/explain_bench.py``.
"""

from __future__ import annotations

import argparse
import json
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
from explainers.spinrec import SpinRec

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

    for u in sample[:3]:  # warm-up
        spin.explain(model, row(u), user=int(u))

    # 1. latency of one explanation
    latencies = []
    for u in sample:
        x = row(u)
        start = time.perf_counter()
        spin.explain(model, x, user=int(u))
        latencies.append(1000 * (time.perf_counter() - start))
    median_ms = statistics.median(latencies)

    # 2. against captum, one baseline at a time (same baselines, target, steps)
    def forward(inp: torch.Tensor) -> torch.Tensor:
        return model.probability(model(inp))

    ig = IntegratedGradients(forward)
    ours, theirs, max_diff = [], [], 0.0
    for u in sample[: args.captum_users]:
        x = row(u)
        start = time.perf_counter()
        exp = spin.explain(model, x, user=int(u))
        ours.append(1000 * (time.perf_counter() - start))
        baselines = torch.from_numpy(train[exp.baseline_users].toarray())
        start = time.perf_counter()
        maps = []
        for b in baselines:
            attr = ig.attribute(
                x[None], baselines=b[None], target=exp.target, n_steps=16, method="riemann_right"
            )
            maps.append((attr[0] * x).detach())
        theirs.append(1000 * (time.perf_counter() - start))
        captum_maps = torch.stack(maps).numpy()[:, exp.items]
        max_diff = max(max_diff, float(np.abs(captum_maps - exp.candidates).max()))
    ratio = statistics.median(theirs) / statistics.median(ours)

    # 3. every test user, batched
    spin_all = SpinRec(train, kappa=16, steps=16, batch_users=args.batch_users)
    start = time.perf_counter()
    xs = torch.from_numpy(train[users].toarray())
    targets = top1_outside(model, xs)
    explanations = spin_all.explain_batch(model, xs, targets, users=users.tolist(), seed=SEED)
    wall_s = time.perf_counter() - start

    result = {
        "run": str(run_dir),
        "threads": torch.get_num_threads(),
        "median_ms": median_ms,
        "p90_ms": float(np.percentile(latencies, 90)),
        "captum_median_ms": statistics.median(theirs),
        "spinrec_median_ms_same_users": statistics.median(ours),
        "speedup_vs_captum": ratio,
        "captum_max_abs_diff": max_diff,
        "all_users": len(explanations),
        "all_users_wall_s": wall_s,
    }
    if args.json:
        print(json.dumps(result))
        return 0
    print(f"run: {run_dir} (CPU, {result['threads']} torch threads)")
    print(
        f"SPINRec (kappa 16, J 16, path selection included), {len(latencies)} users: median "
        f"{median_ms:.1f} ms, p90 {result['p90_ms']:.1f} ms  [target <= 50 ms]"
    )
    print(
        f"captum IntegratedGradients, 16 baselines one at a time, {len(theirs)} users: median "
        f"{result['captum_median_ms']:.1f} ms vs SPINRec "
        f"{result['spinrec_median_ms_same_users']:.1f} ms -> {ratio:.1f}x faster  "
        f"[target >= 10x]; max |captum - SPINRec| = {max_diff:.2e}"
    )
    print(
        f"all {len(explanations)} test users explained with SPINRec in {wall_s:.1f} s "
        f"({1000 * wall_s / max(len(explanations), 1):.1f} ms each)  [target < 60 s]"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
