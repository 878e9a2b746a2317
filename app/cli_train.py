"""``reclens train``: train models on a dataset, evaluate them on the test split, rank them.

Example::

    reclens train --dataset ml-100k --model pop,ease,mf,multvae --seed 0
    reclens train --dataset synthetic --data-option n_users=500 --model ease --json
    reclens train --dataset ml-100k --model multvae --valid-metric recall@20 --patience 10
    reclens train --dataset DIR --protocol given --model diffrec --config diffrec-paper-ml1m

The leaderboard (or, with ``--json``, one JSON object per model and line) goes to stdout;
progress bars and messages go to stderr.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import sys
from collections.abc import Callable, Iterator
from typing import Any

from tqdm import tqdm

from app.cli_data import SOURCE_HELP, add_column_options, finite_float, int_in, seed_type
from data.errors import ReclensError
from engine import presets, registry
from engine.pipeline import KS, RunResult, train_run
from engine.train import EpochReport

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
    parser.set_defaults(func=cmd_train)


def parse_models(text: str) -> list[str]:
    """Model names from ``"ease,mf"`` (``all``: every available model); unknown ones raise."""
    names = [part.strip().lower() for part in text.split(",") if part.strip()]
    if not names:
        raise ReclensError("--model needs at least one model name")
    if names == ["all"]:
        return registry.available_models()
    for name in names:
        registry.model_class(name)
    return list(dict.fromkeys(names))


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
    }
    train_options = {key: value for key, value in selection.items() if value is not None}
    results: list[RunResult] = []
    for name in models:
        with epoch_bar(name, args.epochs, args.quiet) as (bar, on_epoch):
            result = train_run(
                args.dataset,
                name,
                seed=args.seed,
                device=args.device,
                epochs=args.epochs,
                out=args.out,
                prepare_options=prepare_options,
                protocol=args.protocol,
                progress=on_epoch,
                save=not args.no_save,
                load_options=load_options,
                train_options=train_options,
                preset=args.config,
            )
            bar.set_postfix_str(f"test ndcg@10 {result.metrics.get('ndcg@10', 0.0):.4f}")
        if not args.quiet and not _is_terminal(sys.stderr):  # no bar was drawn: one line
            print(
                f"{name}: {result.epochs_run} epochs (best {result.best_epoch}), "
                f"test ndcg@10 {result.metrics.get('ndcg@10', 0.0):.4f}, "
                f"{result.seconds['total']:.1f} s",
                file=sys.stderr,
                flush=True,
            )
        results.append(result)
        if args.json:
            print(json.dumps(result.summary()), flush=True)
    if not args.json:
        print(format_leaderboard(results))
    return 0


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


def format_leaderboard(results: list[RunResult]) -> str:
    """A text table, best NDCG@10 first: model, the metrics at 10 and 20, epochs, seconds."""
    if not results:
        return "(no models trained)"
    ordered = sorted(results, key=lambda r: r.metrics.get("ndcg@10", 0.0), reverse=True)
    headers = ["model", *TABLE_METRICS, "epochs", "fit s", "total s"]
    rows = [
        [
            r.model,
            *(f"{r.metrics.get(m, float('nan')):.4f}" for m in TABLE_METRICS),
            str(r.epochs_run),
            f"{r.seconds.get('fit', 0.0):.2f}",
            f"{r.seconds.get('total', 0.0):.2f}",
        ]
        for r in ordered
    ]
    widths = [max(len(h), *(len(row[i]) for row in rows)) for i, h in enumerate(headers)]

    def line(cells: list[str]) -> str:
        return "  ".join(
            c.ljust(w) if i == 0 else c.rjust(w)
            for i, (c, w) in enumerate(zip(cells, widths, strict=True))
        )

    lines = [line(headers), "  ".join("-" * w for w in widths), *map(line, rows)]
    first = results[0]
    lines.append("")
    lines.append(
        f"dataset {first.dataset}, seed {first.seed}, test users {first.per_user.height}, "
        f"K in {', '.join(map(str, KS))}"
    )
    for note in dict.fromkeys(note for r in results for note in r.notes):
        lines.append(f"note: {note}")
    for r in results:
        if r.run_dir is not None:
            lines.append(f"{r.model}: {r.run_dir}")
    return "\n".join(lines)
