"""Training bench: run time and accuracy against RecBole, then MovieLens-1M-sized data.

Part 1, MovieLens 100K (random 8:1:1 split per user, full ranking, as RecBole): for each model,
``seconds.total`` of :func:`engine.pipeline.train_run` (loading, preparation, split, training
and evaluation, timed in-process like RecBole's figure; the dataset is loaded once and its
loading time counted for every model) is compared with RecBole's seconds (target: at most a
third of them), and the test Recall@10 / NDCG@10 averaged over the seeds with RecBole's
values minus 0.01.

With ``--dataset DIR`` naming a pre-split folder (``train.txt``/``valid.txt``/``test.txt``, as
``/work/shared/data/diffrec-ml1m``), part 1 is instead the given split against the DiffRec
paper's Table 2 (ML-1M clean): Recall and NDCG at 10 and 20 per model beside the paper's row
for it (``bpr`` beside MF), with the relative gap; ``--paper-configs`` starts the models that
have one from their named ML-1M configuration (:mod:`engine.presets`: ``diffrec-ml1m``,
``multvae-ml1m``, ``lightgcn-ml1m``).

Part 2: the same models on a synthetic dataset of MovieLens 1M size (6,000 users, 3,700 items,
1,000,000 interactions), with time and peak resident memory per model (Linux: VmHWM, reset
before each model through /proc/self/clear_refs; elsewhere the process-wide ru_maxrss).

Usage::

    python bench/train_bench.py                        # everything (long on 2 CPU cores)
    python bench/train_bench.py --models pop,ease --seeds 0 --skip-synthetic
    python bench/train_bench.py --dataset /work/shared/data/diffrec-ml1m --models bpr,lightgcn \
        --seeds 0 --skip-synthetic --paper-configs
"""

from __future__ import annotations

import argparse
import contextlib
import resource
import statistics
import sys
import time
from pathlib import Path

from engine import registry
from engine.pipeline import clear_cache, train_run

RECBOLE_SECONDS: dict[str, float] = {
    "pop": 2.7,
    "itemknn": 4.0,
    "fism": 21.5,
    "multvae": 43.2,
    "multdae": 34.9,
    "fism-neumf": 72.6,
    "ease": 3.2,
    "diffrec": 134.9,
    "ials": 21.5,
    "bpr": 21.5,
    "lightgcn": 127.8,
}
"""RecBole's ml-100k run time per model (BPR-MF for ``fism``, ``bpr`` and ``ials``; NeuMF for
``fism-neumf``), seconds."""

RECBOLE_METRICS: dict[str, tuple[float, float]] = {
    "pop": (0.0810, 0.1033),
    "itemknn": (0.2470, 0.2834),
    "fism": (0.2502, 0.2931),
    "multvae": (0.2558, 0.2942),
    "multdae": (0.2432, 0.2857),
    "fism-neumf": (0.2358, 0.2790),
    "ease": (0.2805, 0.3295),
    "diffrec": (0.2752, 0.3212),
    "ials": (0.2502, 0.2931),
    "bpr": (0.2502, 0.2931),
    "lightgcn": (0.2361, 0.2823),
}
"""RecBole 1.2.1's test Recall@10 and NDCG@10 on ml-100k (mean of its default runs); RecBole
has no iALS or FISM, so ``ials`` and ``fism`` are held to their nearest model, BPR-MF, and
``fism-neumf`` to NeuMF."""

PAPER_METRICS: dict[str, tuple[float, float, float, float]] = {
    "diffrec": (0.1058, 0.1787, 0.0901, 0.1148),
    "multvae": (0.1007, 0.1726, 0.0825, 0.1076),
    "lightgcn": (0.0987, 0.1707, 0.0833, 0.1083),
    "bpr": (0.0876, 0.1503, 0.0749, 0.0966),
}
"""DiffRec paper (Wang et al. 2023) Table 2, ML-1M clean: R@10, R@20, N@10, N@20 (``bpr``: MF)."""

PAPER_PRESETS: dict[str, str] = {
    "diffrec": "diffrec-ml1m",
    "multvae": "multvae-ml1m",
    "lightgcn": "lightgcn-ml1m",
}
GIVEN_METRICS: tuple[str, ...] = ("recall@10", "recall@20", "ndcg@10", "ndcg@20")

MARGIN = 0.01
BARS: dict[str, tuple[float, float]] = {
    name: (recall - MARGIN, ndcg - MARGIN) for name, (recall, ndcg) in RECBOLE_METRICS.items()
}
"""Recall@10 and NDCG@10 bars on ml-100k: RecBole's values minus 0.01."""

TARGET_RATIO = 1 / 3
SYNTHETIC_1M = {"n_users": 6000, "n_items": 3700, "n_interactions": 1_000_000}


def peak_rss_mb() -> float:
    """Peak resident memory in MB since the last :func:`reset_peak` (Linux), else since start."""
    with contextlib.suppress(OSError, ValueError):
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    scale = 1 if sys.platform == "darwin" else 1024  # bytes on macOS, KiB on Linux
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * scale / 2**20


def reset_peak() -> bool:
    """Reset the peak RSS counter (Linux >= 4.0); False when that is not possible."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
    except OSError:
        return False
    return True


def part_movielens(models: list[str], seeds: list[int], dataset: str, device: str) -> int:
    """Print the ml-100k table; return how many models miss a target."""
    print(f"== {dataset}: seeds {', '.join(map(str, seeds))}, device {device}")
    header = (
        f"{'model':<8} {'total s':>8} {'RecBole s':>9} {'ratio':>6}  "
        f"{'recall@10':>9} {'bar':>6}  {'ndcg@10':>7} {'bar':>6}  {'epochs':>6}  verdict"
    )
    print(header)
    print("-" * len(header))
    misses = 0
    for name in models:
        totals, recalls, ndcgs, epochs = [], [], [], []
        for seed in seeds:
            result = train_run(dataset, name, seed=seed, device=device, save=False)
            totals.append(result.seconds["total"])
            recalls.append(result.metrics["recall@10"])
            ndcgs.append(result.metrics["ndcg@10"])
            epochs.append(result.epochs_run)
        total = statistics.mean(totals)
        recall, ndcg = statistics.mean(recalls), statistics.mean(ndcgs)
        ref = RECBOLE_SECONDS.get(name)
        bar_recall, bar_ndcg = BARS.get(name, (float("nan"), float("nan")))
        ratio = total / ref if ref else float("nan")
        fast = ref is None or ratio <= TARGET_RATIO
        good = name not in BARS or (recall >= bar_recall and ndcg >= bar_ndcg)
        verdict = (
            "ok"
            if fast and good
            else ", ".join(
                part for part, bad in (("slow", not fast), ("below bar", not good)) if bad
            )
        )
        misses += verdict != "ok"
        print(
            f"{name:<8} {total:>8.2f} {ref or float('nan'):>9.1f} {ratio:>6.3f}  "
            f"{recall:>9.4f} {bar_recall:>6.4f}  {ndcg:>7.4f} {bar_ndcg:>6.4f}  "
            f"{statistics.mean(epochs):>6.1f}  {verdict}",
            flush=True,
        )
    print(f"target: total <= {TARGET_RATIO:.3f} x RecBole's seconds, metrics >= bars")
    return misses


def is_given_split(dataset: str) -> bool:
    """Whether ``dataset`` is a folder holding a given split (``train.txt`` and the others)."""
    folder = Path(dataset).expanduser()
    return all((folder / f"{part}.txt").is_file() for part in ("train", "valid", "test"))


def part_given(
    models: list[str], seeds: list[int], dataset: str, device: str, paper_configs: bool
) -> None:
    """Print each model's test metrics on the given split beside the DiffRec paper's row."""
    print(f"== {dataset} (given split): seeds {', '.join(map(str, seeds))}, device {device}")
    cells = "  ".join(f"{m:>9} {'paper':>6} {'gap':>6}" for m in GIVEN_METRICS)
    header = f"{'model':<8} {'config':<20} {cells}  {'best/run':>8} {'total s':>8}"
    print(header)
    print("-" * len(header))
    for name in models:
        preset = PAPER_PRESETS.get(name, "") if paper_configs else ""
        for seed in seeds:
            result = train_run(dataset, name, seed=seed, device=device, save=False,
                               protocol="given", preset=preset)  # fmt: skip
            paper = PAPER_METRICS.get(name, (float("nan"),) * 4)
            parts = []
            for metric, ref in zip(GIVEN_METRICS, paper, strict=True):
                value = result.metrics[metric]
                parts.append(f"{value:>9.4f} {ref:>6.4f} {value / ref - 1:>+6.1%}")
            print(
                f"{name:<8} {preset or 'defaults':<20} {'  '.join(parts)}  "
                f"{result.best_epoch:>3}/{result.epochs_run:<4} {result.seconds['total']:>8.1f}",
                flush=True,
            )
    print("gap: relative difference to the paper (acceptance: within 3-5%, see issue 17)")


def part_synthetic(models: list[str], device: str) -> None:
    """Print time and peak memory per model on MovieLens-1M-sized synthetic data."""
    sizes = ", ".join(f"{k}={v:,}" for k, v in SYNTHETIC_1M.items())
    print(f"\n== synthetic ({sizes}), seed 0, device {device}")
    exact = reset_peak()
    print(f"{'model':<8} {'total s':>8} {'fit s':>8} {'load s':>7} {'peak MB':>8}  ndcg@10")
    for name in models:
        reset_peak()
        start = time.perf_counter()
        result = train_run("synthetic", name, seed=0, device=device, save=False,
                           load_options=SYNTHETIC_1M)  # fmt: skip
        wall = time.perf_counter() - start
        print(
            f"{name:<8} {result.seconds['total']:>8.2f} {result.seconds['fit']:>8.2f} "
            f"{result.seconds['load']:>7.2f} {peak_rss_mb():>8.0f}  "
            f"{result.metrics['ndcg@10']:.4f}   (wall {wall:.1f} s)",
            flush=True,
        )
    if not exact:
        print("peak MB is the process-wide maximum so far (no per-model reset on this system)")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--models",
        default=",".join(m for m in RECBOLE_SECONDS if m in registry.available_models()),
        help="comma-separated model names (default: every available benchmarked model)",
    )
    parser.add_argument("--seeds", default="0,1,2", help="comma-separated seeds (0,1,2)")
    parser.add_argument(
        "--dataset",
        default="ml-100k",
        help="part 1 dataset (ml-100k), or a given-split folder compared with the DiffRec paper",
    )
    parser.add_argument(
        "--paper-configs",
        action="store_true",
        help="given split: start models from their paper configuration where one exists",
    )
    parser.add_argument("--device", default="auto", help="auto, cpu, cuda (auto)")
    parser.add_argument("--skip-synthetic", action="store_true", help="skip part 2")
    parser.add_argument("--skip-movielens", action="store_true", help="skip part 1")
    args = parser.parse_args(argv)
    models = [m.strip().lower() for m in args.models.split(",") if m.strip()]
    for name in models:
        registry.model_class(name)
    seeds = [int(s) for s in args.seeds.split(",") if s.strip()]
    misses = 0
    if not args.skip_movielens and is_given_split(args.dataset):
        part_given(models, seeds, args.dataset, args.device, args.paper_configs)
        clear_cache()
    elif not args.skip_movielens:
        misses = part_movielens(models, seeds, args.dataset, args.device)
        clear_cache()
    if not args.skip_synthetic:
        part_synthetic(models, args.device)
    if misses:
        print(f"{misses} model(s) missed a target")
    return 0


if __name__ == "__main__":
    sys.exit(main())
