"""Data-layer timings: load + prepare + split MovieLens 100K, generate + split a 1M synthetic set.

Run ``RECLENS_DATA=/work/shared/data .venv/bin/python bench/data_bench.py``. One line per
figure, with its target beside it; ``--strict`` exits 1 when a target is missed (timings on a
busy machine vary, so by default a miss is only reported).
"""

from __future__ import annotations

import argparse
import resource
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from data import load
from data.paths import data_dirs
from data.prepare import prepare
from data.splits import split


def _timed(fn: Callable[[], Any]) -> tuple[float, Any]:
    start = time.perf_counter()
    out = fn()
    return time.perf_counter() - start, out


def _line(label: str, seconds: float, target: float, note: str = "") -> bool:
    ok = seconds < target
    verdict = "ok" if ok else "SLOW"
    extra = f"  ({note})" if note else ""
    print(f"{label:<58} {seconds:7.3f} s   target < {target:g} s   {verdict}{extra}")
    return ok


def bench_ml100k(repeats: int) -> bool | None:
    """Load ml-100k from its zip, prepare, build the CSR matrix and split (random)."""
    archive = next((d / "ml-100k.zip" for d in data_dirs() if (d / "ml-100k.zip").is_file()), None)
    if archive is None:
        print("ml-100k: skipped (no ml-100k.zip under $RECLENS_DATA)")
        return None

    def run() -> tuple[int, int]:
        ds = prepare(load(archive))
        matrix = ds.matrix()
        parts = split(ds, protocol="random", seed=0)
        return matrix.nnz, parts.train.nnz

    times = []
    for _ in range(repeats):
        seconds, (nnz, train_nnz) = _timed(run)
        times.append(seconds)
    note = f"first {times[0]:.3f} s, best of {repeats}; {nnz:,} pairs, {train_nnz:,} in train"
    return _line("ml-100k: zip load + prepare + matrix + random split", min(times), 1.0, note)


def bench_synthetic() -> bool:
    """Generate 6,000 users x 3,700 items x 1,000,000 interactions, then split it."""
    from data.synthetic import generate

    gen_s, ds = _timed(lambda: generate(n_users=6000, n_items=3700, n_interactions=1_000_000))
    split_s, parts = _timed(lambda: split(ds, protocol="random", seed=0))
    note = (
        f"generate {gen_s:.2f} s + split {split_s:.2f} s; "
        f"{ds.n_users:,} x {ds.n_items:,}, {ds.n_interactions:,} interactions"
    )
    return _line("synthetic 6000 x 3700 x 1M: generate + random split", gen_s + split_s, 5.0, note)


def bench_csv() -> bool:
    """Load a 1,000,000-row user,item,rating,timestamp CSV through the generic table path."""
    rng = np.random.default_rng(0)
    n = 1_000_000
    frame = pl.DataFrame(
        {
            "userId": rng.integers(0, 20_000, n),
            "movieId": rng.integers(0, 5_000, n),
            "rating": rng.integers(1, 6, n).astype(np.float64),
            "timestamp": rng.integers(900_000_000, 1_000_000_000, n),
        }
    )
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "ratings.csv"
        frame.write_csv(path)
        seconds, ds = _timed(lambda: load(path))
    note = f"{ds.n_interactions:,} rows, {ds.n_users:,} users, {ds.n_items:,} items"
    return _line("1M-row CSV: generic load (informal target)", seconds, 2.0, note)


def peak_memory_mb() -> float:
    """Peak resident memory of this process so far, in MiB (``ru_maxrss``)."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / 1024 / 1024 if sys.platform == "darwin" else peak / 1024


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3, help="ml-100k runs (best is shown)")
    parser.add_argument("--strict", action="store_true", help="exit 1 when a target is missed")
    args = parser.parse_args(argv)
    results = [bench_ml100k(args.repeats), bench_synthetic(), bench_csv()]
    peak = peak_memory_mb()
    print(f"{'peak memory (ru_maxrss)':<58} {peak:7.0f} MiB  target < 2048 MiB  "
          f"{'ok' if peak < 2048 else 'HIGH'}")  # fmt: skip
    missed = [r for r in results if r is False] or peak >= 2048
    return 1 if args.strict and missed else 0


if __name__ == "__main__":
    sys.exit(main())
