"""Projection bench: UMAP time of a trained run's items and users (target: under 15 s together).

Trains ``fism`` (or ``--model multvae``) on MovieLens 100K into a temporary runs folder, or uses
``--run DIR``, then times :func:`engine.projection.run_projection` for items and users with
UMAP (cosine, 15 neighbours, the run's seed) and PCA, in a fresh process. The umap-learn
import and the loading of its numba kernels are timed apart (the first process on a machine
also compiles them, 20-40 s on two cores, then reads them from numba's disk cache).

Usage::

    python bench/projection_bench.py
    python bench/projection_bench.py --run ~/.cache/reclens/runs/ml-100k/fism-20250101T120000Z
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

from engine import projection
from engine.pipeline import train_run
from engine.projection import run_projection
from engine.runs import load_run

TARGET_SECONDS = 15.0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--run", metavar="DIR", help="an existing run folder (skips training)")
    parser.add_argument("--model", default="fism", help="model to train when no --run (fism)")
    parser.add_argument("--dataset", default="ml-100k", help="dataset to train on (ml-100k)")
    parser.add_argument("--device", default="auto", help="training device (auto)")
    args = parser.parse_args(argv)

    with tempfile.TemporaryDirectory(prefix="reclens-projection-bench-") as tmp:
        if args.run:
            folder = Path(args.run).expanduser()
        else:
            start = time.perf_counter()
            result = train_run(args.dataset, args.model, device=args.device, out=tmp)
            assert result.run_dir is not None
            folder = result.run_dir
            print(
                f"trained {args.model} on {args.dataset} in {time.perf_counter() - start:.1f} s "
                f"(ndcg@10 {result.metrics['ndcg@10']:.4f})"
            )
        run = load_run(folder)
        items, users = run.item_embeddings(), run.user_embeddings()
        print(
            f"run {folder.name}: {len(items.index)} items x {items.vectors.shape[1]}, "
            f"{len(users.index)} users x {users.vectors.shape[1]} ({items.kind} vectors)"
        )

        start = time.perf_counter()
        projection._import_umap()
        print(f"umap-learn import: {time.perf_counter() - start:.2f} s")
        start = time.perf_counter()
        projection.warm_up()
        print(f"numba kernels (compile or disk cache): {time.perf_counter() - start:.2f} s")

        totals: dict[str, float] = {}
        for method in ("umap", "pca"):
            totals[method] = 0.0
            for kind in ("items", "users"):
                start = time.perf_counter()
                coords = run_projection(run, kind, method, recompute=True)  # type: ignore[arg-type]
                seconds = time.perf_counter() - start
                totals[method] += seconds
                print(f"{method:>4} {kind:<5} {coords.shape[0]:>5} points: {seconds:6.2f} s")
            start = time.perf_counter()
            for kind in ("items", "users"):
                run_projection(run, kind, method)  # type: ignore[arg-type]
            reuse = time.perf_counter() - start
            print(
                f"{method:>4} items + users: {totals[method]:.2f} s "
                f"(stored, read back in {reuse:.3f} s)"
            )
        verdict = "ok" if totals["umap"] < TARGET_SECONDS else "slow"
        print(
            f"UMAP items + users {totals['umap']:.2f} s, target < {TARGET_SECONDS:.0f} s: {verdict}"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
