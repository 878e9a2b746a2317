"""``reclens train``: train models on a dataset, evaluate them on the test split, rank them.

Example::

    reclens train --dataset ml-100k --model pop,ease,fism,multvae --seed 0
    reclens train --dataset synthetic --data-option n_users=500 --model ease --json
    reclens train --dataset ml-100k --model multvae --valid-metric recall@20 --patience 10
    reclens train --dataset DIR --protocol given --model diffrec --config diffrec-paper-ml1m

The leaderboard (or, with ``--json``, one JSON object per model and line) goes to stdout;
progress bars and messages go to stderr.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import json
import sys
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np
from tqdm import tqdm

from app.cli_backend import add_backend_options, backend_options
from app.cli_data import SOURCE_HELP, add_column_options, finite_float, int_in, seed_type
from app.text_table import aligned
from app.train_job import summaries, train_tasks
from data.errors import ReclensError
from data.paths import reclens_home
from engine import presets, registry
from engine.executor import ShardStore, log_progress, run_tasks
from engine.pipeline import KS, train_run
from engine.train import EpochReport
from explainers.batch import mean_ci95

TABLE_METRICS: tuple[str, ...] = (
    "recall@10",
    "ndcg@10",
    "mrr@10",
    "hit@10",
    "precision@10",
    "map@10",
    "recall@20",
    "ndcg@20",
)


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add ``reclens train``."""
    parser = subparsers.add_parser(
        "train",
        help="train and evaluate models, print a leaderboard",
        description=(
            "Train each model on SOURCE, evaluate it on the test split (full ranking, "
            "train and valid items masked) and print a leaderboard. Each run is saved under "
            "$RECLENS_HOME/runs (or --out)."
        ),
    )
    parser.add_argument("--dataset", required=True, metavar="SOURCE", help=SOURCE_HELP)
    parser.add_argument(
        "--model",
        required=True,
        metavar="NAMES",
        help=f"comma-separated model names, or all ({', '.join(registry.model_names())})",
    )
    parser.add_argument("--seed", type=seed_type, default=0, help="split and training seed (0)")
    parser.add_argument(
        "--seeds",
        type=parse_seeds,
        metavar="LIST",
        help="a seed sweep: 0,1,2 or 0-4; each model is trained on each split seed and the "
        "leaderboard shows mean and 95%% CI across seeds",
    )
    parser.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N (auto)")
    parser.add_argument("--epochs", type=int_in(1), help="most training epochs (model default)")
    parser.add_argument("--out", metavar="DIR", help="runs folder (default $RECLENS_HOME/runs)")
    selection = parser.add_argument_group("model selection (on the validation part)")
    selection.add_argument(
        "--config",
        metavar="NAME",
        default="",
        help=f"named configuration of the model ({', '.join(presets.preset_names())})",
    )
    selection.add_argument("--valid-metric", metavar="METRIC@K", help="e.g. recall@20 (ndcg@10)")
    selection.add_argument("--patience", type=int, help="evaluations without improvement, 0: off")
    selection.add_argument("--eval-every", type=int, metavar="N", help="epochs between evaluations")
    selection.add_argument(
        "--min-epochs", type=int, metavar="N", help="epochs before stopping (half of --epochs)"
    )
    parser.add_argument(
        "--max-seconds",
        type=positive_seconds,
        metavar="S",
        help="training time budget per model: stop at the end of the epoch that passes it",
    )
    parser.add_argument("--json", action="store_true", help="one JSON object per model and line")
    parser.add_argument("--no-save", action="store_true", help="do not write run folders")
    parser.add_argument("--quiet", action="store_true", help="no progress bars on stderr")
    data = parser.add_argument_group("data")
    data.add_argument(
        "--protocol",
        default="random",
        choices=("random", "temporal", "strong", "given"),
        help="split protocol (random: per-user 8:1:1 as RecBole)",
    )
    data.add_argument("--threshold", type=finite_float, help="keep ratings >= this value")
    data.add_argument("--min-user-interactions", type=int_in(0), default=0, metavar="N")
    data.add_argument("--min-item-interactions", type=int_in(0), default=0, metavar="N")
    data.add_argument(
        "--data-option",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="loader option, repeatable (e.g. n_users=500 for synthetic)",
    )
    add_column_options(data)
    jobs = parser.add_argument_group("where the (model, seed) tasks run")
    add_backend_options(jobs)
    jobs.add_argument(
        "--resume", action="store_true", help="keep the runs an interrupted sweep finished"
    )
    parser.set_defaults(func=cmd_train)


def positive_seconds(text: str) -> float:
    """An argparse type: a finite number of seconds above 0."""
    value = finite_float(text)
    if value <= 0:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of seconds above 0")
    return value


def parse_seeds(text: str) -> list[int]:
    """``"0,1,2"`` or ``"0-4"`` (or a mix) -> distinct seeds in the order given."""
    seeds: list[int] = []
    for part in (p.strip() for p in text.split(",")):
        lo, sep, hi = part.partition("-")
        try:
            values = range(int(lo), int(hi) + 1) if sep and lo else [int(part)]
        except ValueError:
            raise argparse.ArgumentTypeError(f"{part!r} is not a seed or a range A-B") from None
        for value in values:
            seeds.append(seed_type(str(value)))
    if not seeds:
        raise argparse.ArgumentTypeError("no seeds given")
    return list(dict.fromkeys(seeds))


def parse_models(text: str) -> list[str]:
    """Model names from ``"ease,fism"`` (``all``: every available model); unknown and retired
    names (``mf``, ``neumf``: :data:`engine.registry.RETIRED`) raise."""
    names = [part.strip().lower() for part in text.split(",") if part.strip()]
    if not names:
        raise ReclensError("--model needs at least one model name")
    if names == ["all"]:
        return registry.available_models()
    return list(dict.fromkeys(registry.check_new(name) for name in names))


def parse_options(pairs: list[str]) -> dict[str, Any]:
    """``["n_users=500", "noise=0.2"]`` -> ``{"n_users": 500, "noise": 0.2}`` (JSON values)."""
    options: dict[str, Any] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key.strip():
            raise ReclensError(f"--data-option {pair!r}: expected KEY=VALUE")
        try:
            options[key.strip()] = json.loads(value)
        except json.JSONDecodeError:
            options[key.strip()] = value
    return options


def cmd_train(args: argparse.Namespace) -> int:
    """Run ``reclens train``."""
    models = parse_models(args.model)
    load_options = {
        **parse_options(args.data_option),
        "user_col": args.user_col,
        "item_col": args.item_col,
        "rating_col": args.rating_col,
        "time_col": args.time_col,
        "items_path": args.items_path,
    }
    prepare_options = {
        "threshold": args.threshold,
        "min_user_interactions": args.min_user_interactions,
        "min_item_interactions": args.min_item_interactions,
    }
    selection = {
        "valid_metric": args.valid_metric,
        "patience": args.patience,
        "eval_every": args.eval_every,
        "min_epochs": args.min_epochs,
        "max_seconds": args.max_seconds,
    }
    train_options = {key: value for key, value in selection.items() if value is not None}
    seeds = args.seeds or [args.seed]
    options = {
        "device": args.device,
        "epochs": args.epochs,
        "out": args.out,
        "prepare_options": prepare_options,
        "protocol": args.protocol,
        "save": not args.no_save,
        "load_options": load_options,
        "train_options": train_options,
        "preset": args.config,
    }
    backend = backend_options(args)
    if backend.backend == "local" and backend.workers == 1:
        results = [train_here(args, name, seed, options) for name in models for seed in seeds]
    else:
        tasks = train_tasks(args.dataset, models, seeds, options)
        digest = hashlib.sha256(
            json.dumps([args.dataset, models, seeds, options], sort_keys=True, default=str).encode()
        ).hexdigest()
        store = ShardStore(reclens_home() / "jobs" / f"train-{digest[:16]}")
        progress = None if args.quiet else log_progress("train")
        results = summaries(run_tasks(tasks, backend, store, args.resume, progress))
        if args.json:
            for summary in results:
                print(json.dumps(summary), flush=True)
    if len(seeds) > 1:
        groups = seed_groups(results)
        if args.json:
            for group in groups:
                print(json.dumps(group), flush=True)
        else:
            print(format_seed_table(groups, results))
    elif not args.json:
        print(format_leaderboard(results))
    return 0


def train_here(
    args: argparse.Namespace, name: str, seed: int, options: dict[str, Any]
) -> dict[str, Any]:
    """Train one (model, seed) in this process, with a progress bar (one line off a TTY)."""
    with epoch_bar(name, args.epochs, args.quiet) as (bar, on_epoch):
        result = train_run(args.dataset, name, seed=seed, progress=on_epoch, **options)
        bar.set_postfix_str(f"test ndcg@10 {result.metrics.get('ndcg@10', 0.0):.4f}")
    if not args.quiet and not _is_terminal(sys.stderr):  # no bar was drawn: one line
        print(
            f"{name}: {result.epochs_run} epochs (best {result.best_epoch}), "
            f"test ndcg@10 {result.metrics.get('ndcg@10', 0.0):.4f}, "
            f"{result.seconds['total']:.1f} s",
            file=sys.stderr,
            flush=True,
        )
    summary = result.summary()
    if args.json:
        print(json.dumps(summary), flush=True)
    return summary


def seed_groups(results: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Per model: the seeds, every metric's per-seed values, mean and 95% CI half-width
    (Student's t over the seeds)."""
    groups = []
    for model in dict.fromkeys(r["model"] for r in results):
        runs = [r for r in results if r["model"] == model]
        metrics = {}
        for metric in runs[0]["metrics"]:
            values = np.array([r["metrics"].get(metric, np.nan) for r in runs], dtype=np.float64)
            mean, half = mean_ci95(values)
            metrics[metric] = {"values": values.tolist(), "mean": mean, "ci95": half}
        groups.append(
            {
                "model": model,
                "dataset": runs[0]["dataset"],
                "seeds": [r["seed"] for r in runs],
                "metrics": metrics,
                "seconds_total": [r["seconds"].get("total") for r in runs],
            }
        )
    return groups


def format_seed_table(groups: list[dict[str, Any]], results: list[dict[str, Any]]) -> str:
    """Mean ± 95% CI across seeds per model and metric (best mean NDCG@10 first), and the
    per-seed NDCG@10."""
    ordered = sorted(groups, key=lambda g: g["metrics"]["ndcg@10"]["mean"], reverse=True)
    shown = ("recall@10", "ndcg@10", "recall@20", "ndcg@20")
    headers = ["model", *shown, "ndcg@10 per seed"]
    rows = []
    for g in ordered:
        cells = [g["model"]]
        for metric in shown:
            stat = g["metrics"][metric]
            ci = f" ± {stat['ci95']:.4f}" if np.isfinite(stat["ci95"]) else ""
            cells.append(f"{stat['mean']:.4f}{ci}")
        cells.append(", ".join(f"{v:.4f}" for v in g["metrics"]["ndcg@10"]["values"]))
        rows.append(cells)
    lines = aligned(headers, rows)
    seeds = ", ".join(str(s) for s in ordered[0]["seeds"]) if ordered else ""
    lines += ["", f"dataset {results[0]['dataset']}, split seeds {seeds}; mean ± 95% CI "
              "(Student's t over the seeds)"]  # fmt: skip
    lines += [f"{r['model']} seed {r['seed']}: {r['run_dir']}" for r in results if r["run_dir"]]
    return "\n".join(lines)


@contextlib.contextmanager
def epoch_bar(
    name: str, epochs: int | None, quiet: bool
) -> Iterator[tuple[tqdm, Callable[[EpochReport], None]]]:
    """A tqdm bar on stderr for one model, and the epoch callback that moves it."""
    trainable = registry.model_class(name).trainable
    total = (epochs or registry.default_train(name).get("epochs", 50)) if trainable else 1
    bar = tqdm(
        total=total,
        desc=f"{name:>8}",
        unit="epoch",
        file=sys.stderr,
        disable=True if quiet else None,
        dynamic_ncols=True,
    )

    last_valid: list[float] = []

    def update(report: EpochReport) -> None:
        parts = []
        if report.loss is not None:
            parts.append(f"loss {report.loss:.4f}")
        if report.valid is not None:
            last_valid[:] = [report.valid]
        if last_valid:  # the latest evaluated epoch's value (models validate every few epochs)
            parts.append(f"valid {last_valid[0]:.4f}")
        bar.set_postfix_str(", ".join(parts), refresh=False)
        bar.update(1)

    try:
        yield bar, update
    finally:
        bar.close()


def _is_terminal(stream: object) -> bool:
    """Whether ``stream`` is a terminal (tqdm draws its bars only there)."""
    isatty = getattr(stream, "isatty", None)
    return bool(isatty and isatty())


def format_leaderboard(results: list[dict[str, Any]]) -> str:
    """A text table of run summaries, best NDCG@10 first: model, the metrics at 10 and 20,
    epochs, seconds."""
    if not results:
        return "(no models trained)"
    ordered = sorted(results, key=lambda r: r["metrics"].get("ndcg@10", 0.0), reverse=True)
    headers = ["model", *TABLE_METRICS, "epochs", "fit s", "total s"]
    rows = [
        [
            r["model"],
            *(f"{r['metrics'].get(m, float('nan')):.4f}" for m in TABLE_METRICS),
            str(r["epochs_run"]),
            f"{r['seconds'].get('fit', 0.0):.2f}",
            f"{r['seconds'].get('total', 0.0):.2f}",
        ]
        for r in ordered
    ]
    lines = aligned(headers, rows)
    first = results[0]
    lines.append("")
    lines.append(
        f"dataset {first['dataset']}, seed {first['seed']}, test users "
        f"{first['n_test_users']}, K in {', '.join(map(str, KS))}"
    )
    for note in dict.fromkeys(note for r in results for note in r["notes"]):
        lines.append(f"note: {note}")
    for r in results:
        if r["run_dir"] is not None:
            lines.append(f"{r['model']}: {r['run_dir']}")
    return "\n".join(lines)
