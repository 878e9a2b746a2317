"""Diffusion bench: DiffRec on MovieLens 100K, its trajectories, the 2D teaching diffusion.

Part 1, DiffRec accuracy and time (ml-100k, all ratings positive, random 8:1:1 split per user,
full ranking; :func:`engine.pipeline.train_run` with the model's default settings, whose
``seconds.total`` counts load + prepare + split + train + evaluate): per seed and the mean,
against RecBole 1.2.1's DiffRec (Recall@10 0.2752, NDCG@10 0.3212, 134.9 s on 2 CPU cores).
Targets (means over the seeds): Recall@10 >= 0.2652, NDCG@10 >= 0.3112, time <= 45 s; the
slowest seed is printed too.

Part 2, trajectories: the time of :func:`engine.trajectory.trajectory` for single users of the
seed-0 model (top 10, top-20 centroid on a PCA item map given as input; median over users).
Target: < 100 ms on the CPU. The end-to-end :meth:`engine.session.OpenRun.trajectory` (stored map)
is reported as well.

Part 3, the 2D teaching diffusion as the page trains and samples it
(:class:`app.dashboard.teaching.TeachingDiffusion` with the Diffusion tab's defaults): per
shape the training time (wall and CPU; target < 10 s wall) and, for DDPM and DDIM, the share of
the final step's particles within 0.05 of the shape (target >= 0.90), then the time to load the
saved model as a restarted server does. ``--toy-only`` runs this part alone.

Usage::

    RECLENS_DATA=/work/shared/data python bench/diffusion_bench.py
    python bench/diffusion_bench.py --seeds 0 --users 10 --threads 1
    python bench/diffusion_bench.py --toy-only --threads 1

Timings on a shared machine vary a lot; ``--threads`` sets torch's intra-op threads for the
whole bench (default: torch's choice), which matters on a busy 2-core machine where the
thread pool can make small matrix products many times slower.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time

import numpy as np
import torch

RECBOLE = {"recall@10": 0.2752, "ndcg@10": 0.3212, "seconds": 134.9}
TARGETS = {"recall@10": 0.2652, "ndcg@10": 0.3112, "seconds": 45.0}
TRAJECTORY_MS = 100.0
TOY_SECONDS = 10.0
TOY_SHARE = 0.90


def bench_diffrec(seeds: list[int], out: str) -> tuple[list[dict], object]:
    """Train DiffRec once per seed; returns the rows and the seed-0 (first seed) result."""
    from engine.pipeline import train_run

    rows, first = [], None
    for seed in seeds:
        result = train_run(
            "ml-100k", "diffrec", seed=seed, device="cpu", out=out, save=seed == seeds[0]
        )
        rows.append(
            {
                "seed": seed,
                "recall@10": result.metrics["recall@10"],
                "ndcg@10": result.metrics["ndcg@10"],
                "seconds": result.seconds["total"],
                "fit": result.seconds["fit"],
                "best_epoch": result.best_epoch,
                "epochs": result.epochs_run,
            }
        )
        r = rows[-1]
        print(
            f"  seed {seed}: recall@10 {r['recall@10']:.4f}  ndcg@10 {r['ndcg@10']:.4f}  "
            f"total {r['seconds']:.1f} s (fit {r['fit']:.1f} s, best epoch {r['best_epoch']} "
            f"of {r['epochs']})",
            flush=True,
        )
        first = first or result
    return rows, first


def report_diffrec(rows: list[dict]) -> bool:
    mean = {key: statistics.mean(r[key] for r in rows) for key in TARGETS}
    worst = max(r["seconds"] for r in rows)
    print()
    print(f"  {'':22s} {'recall@10':>10s} {'ndcg@10':>10s} {'seconds':>10s}")
    print(
        f"  {'RecBole 1.2.1':22s} {RECBOLE['recall@10']:10.4f} {RECBOLE['ndcg@10']:10.4f} "
        f"{RECBOLE['seconds']:10.1f}"
    )
    targets = [f">= {TARGETS['recall@10']:.4f}", f">= {TARGETS['ndcg@10']:.4f}"]
    targets.append(f"<= {TARGETS['seconds']:.0f}")
    print(f"  {'target':22s} {targets[0]:>10s} {targets[1]:>10s} {targets[2]:>10s}")
    label = f"RecLens (mean of {len(rows)})"
    print(
        f"  {label:22s} {mean['recall@10']:10.4f} {mean['ndcg@10']:10.4f} {mean['seconds']:10.1f}"
    )
    ok = (
        mean["recall@10"] >= TARGETS["recall@10"]
        and mean["ndcg@10"] >= TARGETS["ndcg@10"]
        and mean["seconds"] <= TARGETS["seconds"]
    )
    print(f"  (slowest seed {worst:.1f} s) -> {'PASS' if ok else 'FAIL'}")
    return ok


def bench_trajectories(result: object, n_users: int) -> bool:
    from engine.projection import pca_2d
    from engine.session import OpenRun
    from engine.trajectory import trajectory

    opened = OpenRun.open(result.run_dir)
    dataset, split, model = opened.dataset, opened.split, opened.model
    coords = pca_2d(model.item_embeddings().cpu().numpy())
    users = split.eval_users("test")
    users = users[np.random.default_rng(0).permutation(len(users))[:n_users]]
    test, mask = split.test, split.mask("test")
    times = []
    for u in users:
        history = np.asarray(split.train[u].todense(), dtype=np.float32).ravel()
        masked = np.asarray(mask[u].todense()).ravel() > 0
        start = time.perf_counter()
        traj = trajectory(
            model, history, test[u].indices, coords, mask=masked, item_raw_ids=dataset.item_raw_ids
        )
        times.append((time.perf_counter() - start) * 1000)
        assert traj.steps.height == model.steps
    fan_start = time.perf_counter()
    trajectory(model, history, test[u].indices, coords, noise_steps=3, seeds=(0, 1, 2, 3, 4))
    fan_ms = (time.perf_counter() - fan_start) * 1000
    median = statistics.median(times)
    ok = median < TRAJECTORY_MS
    print(
        f"  trajectory(): median {median:.1f} ms over {len(times)} users "
        f"(min {min(times):.1f}, max {max(times):.1f}); target < {TRAJECTORY_MS:.0f} ms -> "
        f"{'PASS' if ok else 'FAIL'}"
    )
    print(f"  fan of 5 noisy trajectories (noise_steps 3): {fan_ms:.1f} ms")
    opened.trajectory(int(users[0]), map_method="pca")  # stores the PCA map, warms the cache
    start = time.perf_counter()
    opened.trajectory(int(users[0]), map_method="pca")
    print(
        f"  OpenRun.trajectory() with the stored map: {(time.perf_counter() - start) * 1000:.1f} ms"
    )
    return ok


def bench_toy() -> bool:
    from app.dashboard.teaching import ITEM_MAP, TeachingDiffusion
    from app.dashboard.views.diffusion import SHAPES, DiffusionView
    from engine.toy_diffusion import distance_to, make_shape

    defaults = DiffusionView.param
    schedule, steps = defaults.schedule.default, defaults.toy_steps.default
    print(f"  page defaults: {schedule} schedule, {steps} sampling steps")
    ok = True
    with tempfile.TemporaryDirectory() as folder:
        page = TeachingDiffusion(lambda run: np.zeros((0, 2)), folder)
        for shape in (s for s in SHAPES if s != ITEM_MAP):
            cpu = time.process_time()
            model = page.model(shape, schedule)
            cpu = time.process_time() - cpu
            ref = make_shape(shape, 20000, seed=99, noise=0.0)
            shares = {
                sampler: float((distance_to(page.frames(shape, schedule, sampler, steps)[-1], ref)
                                < 0.05).mean())
                for sampler in ("ddpm", "ddim")
            }  # fmt: skip
            passed = model.seconds < TOY_SECONDS and min(shares.values()) >= TOY_SHARE
            ok &= passed
            print(
                f"  {shape:7s} train {len(model.losses)} iterations: {model.seconds:5.2f} s wall, "
                f"{cpu:5.2f} s CPU; within 0.05: DDPM {shares['ddpm']:.1%}, DDIM "
                f"{shares['ddim']:.1%}; targets < {TOY_SECONDS:.0f} s, >= {TOY_SHARE:.0%} -> "
                f"{'PASS' if passed else 'FAIL'}"
            )
        start = time.perf_counter()
        TeachingDiffusion(lambda run: np.zeros((0, 2)), folder).model("moons", schedule)
        print(f"  load a saved model (new server): {(time.perf_counter() - start) * 1000:.0f} ms")
    return ok


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", default="0,1,2", help="comma-separated split seeds")
    parser.add_argument("--users", type=int, default=30, help="users timed for trajectories")
    parser.add_argument("--threads", type=int, default=None, help="torch intra-op threads")
    parser.add_argument("--toy-only", action="store_true", help="only the teaching diffusion")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    seeds = [int(s) for s in args.seeds.split(",")]
    print(f"torch {torch.__version__}, {torch.get_num_threads()} intra-op threads")
    if args.toy_only:
        print("2D teaching diffusion")
        ok = bench_toy()
        print("all targets met" if ok else "some targets missed")
        return 0 if ok else 1
    with tempfile.TemporaryDirectory() as out:
        print(f"DiffRec on ml-100k, seeds {seeds} (default settings)")
        rows, first = bench_diffrec(seeds, out)
        ok = report_diffrec(rows)
        print()
        print("Trajectories (ml-100k, seed-0 model, CPU)")
        ok &= bench_trajectories(first, args.users)
    print()
    print("2D teaching diffusion")
    ok &= bench_toy()
    print()
    print("all targets met" if ok else "some targets missed")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
