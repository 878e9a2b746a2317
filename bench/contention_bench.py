"""Training on a shared CPU: alone and beside one busy process, on MovieLens-1M-sized data.

Trains fism and multvae (a few epochs each, ``--epochs``) on synthetic data of MovieLens 1M size
(6,000 users, 3,700 items, 1,000,000 interactions; random 8:1:1 split) in three settings, each
in a fresh worker process that times :func:`engine.train.fit` only:

1. ``today``: torch's own thread count, fixed (``RECLENS_THREADS`` = the usable cores), alone;
2. ``alone``: the thread governor (:class:`engine.device.ThreadGovernor`), alone;
3. ``busy``: the governor beside one busy process (a Python loop on one core, started by the
   bench before the worker and stopped after it).

Prints each time, ``busy / alone`` (target: at most 2.5x) and ``alone / today`` (target: at
most 1.1x), with the load averages before and after (the machine may be shared). With
``--today-busy`` it also times today's setting beside the busy process (the collapse the
governor avoids; slow). Every setting runs ``--repeats`` times and every value is printed.

Run: ``.venv/bin/python bench/contention_bench.py``.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

SIZE = {"n_users": 6000, "n_items": 3700, "n_interactions": 1_000_000}
MODELS: tuple[str, ...] = ("fism", "multvae")
ROOT = Path(__file__).resolve().parents[1]


def worker(models: list[str], epochs: int) -> None:
    """Train ``models`` on the synthetic data; print one JSON line of fit seconds per model."""
    import torch

    from data.loaders import load
    from data.prepare import prepare
    from data.splits import split
    from engine import registry
    from engine.train import config_for, fit

    dataset = prepare(load("synthetic", **SIZE))
    parts = split(dataset, "random", seed=0)
    out: dict[str, object] = {"threads_at_start": torch.get_num_threads()}
    for name in models:
        torch.manual_seed(0)
        model = registry.create(name, dataset.n_items)
        config = config_for(model, epochs=epochs, patience=0, eval_every=epochs, seed=0)
        start = time.perf_counter()
        fit(model, parts, config)
        out[name] = time.perf_counter() - start
    print(json.dumps(out), flush=True)


def run_worker(models: list[str], epochs: int, threads: str, busy: bool) -> dict[str, float]:
    """One worker process with ``RECLENS_THREADS=threads``, beside a busy process if asked."""
    env = dict(os.environ, RECLENS_THREADS=threads)
    hog = None
    if busy:
        hog = subprocess.Popen([sys.executable, "-c", "while True: pass"])
        time.sleep(0.5)  # let it take its core
    try:
        cmd = [sys.executable, __file__, "--worker", "--models", ",".join(models)]
        done = subprocess.run(
            [*cmd, "--epochs", str(epochs)],
            env=env,
            cwd=ROOT,
            capture_output=True,
            text=True,
            check=True,
        )
    finally:
        if hog is not None:
            hog.kill()
            hog.wait()
    return json.loads(done.stdout.strip().splitlines()[-1])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default=",".join(MODELS), help="models (fism,multvae)")
    parser.add_argument("--epochs", type=int, default=2, help="epochs per model (2)")
    parser.add_argument("--repeats", type=int, default=1, help="runs of each setting (1)")
    parser.add_argument("--today-busy", action="store_true", help="also today's setting, busy")
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    models = [m for m in args.models.split(",") if m]
    if args.worker:
        worker(models, args.epochs)
        return 0
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    settings = {"today": (str(cores), False), "alone": ("auto", False), "busy": ("auto", True)}
    if args.today_busy:
        settings["today busy"] = (str(cores), True)
    print(f"synthetic {SIZE}, {args.epochs} epochs per model, {cores} cores")
    print("load average before: " + " ".join(f"{v:.2f}" for v in os.getloadavg()))
    times: dict[str, dict[str, list[float]]] = {s: {m: [] for m in models} for s in settings}
    for i in range(args.repeats):
        for setting, (threads, busy) in settings.items():
            got = run_worker(models, args.epochs, threads, busy)
            for m in models:
                times[setting][m].append(float(got[m]))
            shown = ", ".join(f"{m} {got[m]:.1f} s" for m in models)
            print(f"repeat {i + 1}, {setting} (RECLENS_THREADS={threads}): {shown}", flush=True)
    for m in models:
        med = {s: statistics.median(v[m]) for s, v in times.items()}
        line = (
            f"{m}: today {med['today']:.1f} s, alone {med['alone']:.1f} s, busy "
            f"{med['busy']:.1f} s -> busy/alone {med['busy'] / med['alone']:.2f}x "
            f"[target <= 2.5x], alone/today {med['alone'] / med['today']:.2f}x [target <= 1.1x]"
        )
        if "today busy" in med:
            line += (
                f"; today busy {med['today busy']:.1f} s ({med['today busy'] / med['today']:.1f}x)"
            )
        print(line)
    print("load average after: " + " ".join(f"{v:.2f}" for v in os.getloadavg()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
