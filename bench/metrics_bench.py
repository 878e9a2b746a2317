"""Time the beyond-accuracy metrics and tabulate them per model next to accuracy.

Usage::

    .venv/bin/python bench/metrics_bench.py [--dataset ml-100k] [--models pop,ease,...]
        [--epochs 20] [--k 10] [--repeat 3] [--random] [--device cpu]

For every model (default: every available one) the model is trained through
:func:`engine.pipeline.train_run` (not saved), its top-K test lists are taken with the
test-time mask (train + valid items), and the per-user table (:func:`engine.beyond.user_metrics`
with genre vectors and the run's item vectors) and the catalogue table
(:func:`engine.catalogue.catalogue_metrics`) are computed ``--repeat`` times; the best time of
the two together is reported. ``--random`` times random lists of the dataset's size instead of
training anything. The last output is a markdown table of the metrics per model beside
NDCG@10 / Recall@10.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from data.errors import ReclensError  # noqa: E402
from engine.beyond import genre_matrix, user_means, user_metrics  # noqa: E402
from engine.catalogue import catalogue_values  # noqa: E402

COLUMNS: tuple[tuple[str, str], ...] = (
    ("ndcg@10", "acc"),
    ("recall@10", "acc"),
    ("ild_genre", "user"),
    ("ild_embedding", "user"),
    ("novelty", "user"),
    ("unexpectedness", "user"),
    ("serendipity", "user"),
    ("arp", "user"),
    ("long_tail_share", "user"),
    ("calibration_kl", "user"),
    ("coverage", "cat"),
    ("gini", "cat"),
    ("gini_corrected", "cat"),
    ("entropy_corrected", "cat"),
    ("jain_corrected", "cat"),
    ("personalization", "cat"),
    ("pop_rsp", "cat"),
    ("pop_reo", "cat"),
)


def timed(recs, users, train, heldout, genres, emb, repeat: int):
    """Best wall time of per-user + catalogue tables over ``repeat`` runs, and the results."""
    best = float("inf")
    per_user = catalogue = None
    for _ in range(repeat):
        start = time.perf_counter()
        per_user = user_metrics(recs, users, train, heldout, genres, emb)
        catalogue = catalogue_values(recs, users, train, heldout)
        best = min(best, time.perf_counter() - start)
    return best, per_user, catalogue


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", default="ml-100k")
    parser.add_argument("--models", default=None, help="comma-separated (default: all available)")
    parser.add_argument("--epochs", type=int, default=20, help="epochs of gradient models")
    parser.add_argument("--k", type=int, default=10)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--random", action="store_true", help="random lists, no training")
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args(argv)

    from data.loaders import load
    from data.prepare import prepare
    from data.splits import split as make_split

    dataset = prepare(load(args.dataset))
    parts = make_split(dataset, "random", seed=0)
    users = parts.eval_users("test")
    genres, _ = genre_matrix(dataset.items)
    genres = genres if genres.nnz else None
    print(
        f"{args.dataset}: {dataset.n_users} users, {dataset.n_items} items, "
        f"{parts.train.nnz} train interactions, {len(users)} test users, K={args.k}"
    )
    rows: dict[str, dict[str, float]] = {}
    if args.random:
        rng = np.random.default_rng(0)
        scores = rng.random((len(users), dataset.n_items))
        scores[parts.mask("test")[users].toarray() > 0] = -1.0
        recs = np.argsort(-scores, axis=1)[:, : args.k]
        emb = rng.normal(size=(dataset.n_items, 64))
        seconds, per_user, catalogue = timed(
            recs, users, parts.train, parts.test, genres, emb, args.repeat
        )
        print(f"random lists: per-user + catalogue tables in {seconds:.3f} s")
        rows["random"] = {**user_means(per_user), **catalogue, "seconds": seconds}
    else:
        rows.update(_models(args, dataset, parts, users, genres))
    print()
    print(markdown(rows))
    return 0


def _models(args, dataset, parts, users, genres) -> dict[str, dict[str, float]]:
    from engine import registry
    from engine.evaluate import top_k
    from engine.pipeline import train_run
    from engine.runs import representations

    names = args.models.split(",") if args.models else registry.available_models()
    rows = {}
    for name in names:
        start = time.perf_counter()
        try:
            result = train_run(
                args.dataset, name, epochs=args.epochs, device=args.device, save=False
            )
        except ReclensError as err:
            print(f"{name}: skipped ({err})")
            continue
        model = result.recommender
        train_s = time.perf_counter() - start
        recs, _ = top_k(model, parts.train, users, args.k, parts.mask("test"))
        items, _ = representations(model, dataset, parts)
        emb = None if items.kind == "interactions" else items.vectors.astype(np.float64)
        seconds, per_user, catalogue = timed(
            recs, users, parts.train, parts.test, genres, emb, args.repeat
        )
        print(
            f"{name}: trained in {train_s:.1f} s; per-user + catalogue tables "
            f"in {seconds:.3f} s (vectors: {items.kind})"
        )
        rows[name] = {**result.metrics, **user_means(per_user), **catalogue, "seconds": seconds}
    return rows


def markdown(rows: dict[str, dict[str, float]]) -> str:
    """Markdown table: one row per model, accuracy first, then beyond-accuracy, then time."""
    header = ["model", *[c for c, _ in COLUMNS], "seconds"]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for model, values in rows.items():
        cells = [model]
        for col in header[1:]:
            v = values.get(col)
            cells.append("-" if v is None or not np.isfinite(v) else _fmt(col, v))
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _fmt(col: str, v: float) -> str:
    if col == "arp":
        return f"{v:.1f}"
    if col == "seconds":
        return f"{v:.3f}"
    return f"{v:.3f}" if col in ("novelty", "calibration_kl") else f"{v:.4f}"


if __name__ == "__main__":
    sys.exit(main())
