"""``reclens metrics``: beyond-accuracy metrics of a saved run.

Prints the per-user metrics (mean and distribution over the evaluated users), the catalogue
metrics (coverage, exposure fairness, popularity bias) and, with ``--group-by``, the per-group
means and gaps; ``--json`` prints one object with ``k``, ``per_user_mean``, ``catalogue``,
``info`` and ``groups``. The results are also stored in the run folder
(``beyond_metrics.json``, ``beyond_per_user.parquet``) unless ``--no-save`` is given.
"""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path
from typing import Any

import polars as pl

from app.cli_backend import add_backend_options, backend_options
from app.derive_job import metrics_tasks
from data.errors import ReclensError
from engine import beyond
from engine.executor import log_progress, run_tasks
from engine.runs import to_json
from engine.session import OpenRun

MANY_USER: tuple[str, ...] = ("novelty", "arp", "long_tail_share", "ild_cooccurrence")
MANY_CATALOGUE: tuple[str, ...] = ("coverage", "gini_corrected", "personalization")
"""Columns of the one-row-per-run table of ``reclens metrics`` over several runs."""


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add ``reclens metrics``."""
    parser = subparsers.add_parser(
        "metrics",
        help="beyond-accuracy metrics of a run (diversity, novelty, fairness, popularity bias)",
        description=(
            "Per-user and catalogue beyond-accuracy metrics of a saved run's top-K test lists."
        ),
    )
    parser.add_argument(
        "--run", required=True, action="append", metavar="RUN",
        help="a run folder; repeat for several runs (one task each on the executor)",
    )  # fmt: skip
    parser.add_argument("--k", type=int, default=10, help="list length K (default 10)")
    parser.add_argument(
        "--group-by",
        metavar="NAME",
        default=None,
        help="user grouping: a users column (gender, occupation, age, community) or "
        "age_band / activity",
    )
    parser.add_argument(
        "--position-weighted",
        action="store_true",
        help="also report fairness on position-weighted exposure (1/log2(rank+1))",
    )
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.add_argument(
        "--no-save", action="store_true", help="do not store the results in the run folder"
    )
    add_backend_options(parser)
    parser.set_defaults(func=cmd_metrics)


def cmd_metrics(args: argparse.Namespace) -> int:
    """Compute, store and print the run's beyond-accuracy metrics."""
    if args.k < 1:
        raise ReclensError(f"--k must be at least 1, got {args.k}")
    if len(args.run) > 1:
        return metrics_of_many(args)
    opened = OpenRun.open(args.run[0])
    result = beyond.run_metrics(
        opened.run,
        opened.dataset,
        opened.split,
        k=args.k,
        group_by=args.group_by,
        position_weighted=args.position_weighted,
    )
    if not args.no_save:
        beyond.save(opened.run, result, opened.dataset)
    if args.json:
        print(json.dumps(to_json(result.to_dict()), indent=2, allow_nan=False))
        return 0
    info = result.info
    print(
        f"run {info.get('run')}  model {info.get('model')}  dataset {info.get('dataset')}  "
        f"K={result.k}  users {info.get('n_users')}  items {info.get('n_items')}"
    )
    print()
    print(f"Per user (@{result.k}; mean over evaluated users and distribution)")
    print(format_table(beyond.summary_table(result.per_user)))
    print()
    print(f"Catalogue (@{result.k})")
    print(format_table(result.catalogue))
    if result.catalogue_dict().get("fsat_meaningful") == 0.0:
        print("note: km < n, so FSat is 1 whatever the lists are (not meaningful)")
    if result.groups is not None:
        groups = result.groups
        sizes = ", ".join(f"{g} {n}" for g, n in groups.means.select("group", "n_users").rows())
        print()
        print(f"Groups by {groups.by} (users: {sizes}); per-group means and gaps")
        print(format_table(group_table(groups.means, groups.gaps)))
    return 0


def metrics_of_many(args: argparse.Namespace) -> int:
    """Several runs: one task each; one JSON line per run, or one table row per run."""
    tasks = metrics_tasks(args.run, args.k, args.group_by, args.position_weighted, not args.no_save)
    frames = run_tasks(tasks, backend_options(args), progress=log_progress("metrics"))
    results = [json.loads(frame["result"][0]) for frame in frames]
    if args.json:
        for result in results:
            print(json.dumps(result, allow_nan=False))
        return 0
    rows = []
    for result in results:
        means, catalogue, info = result["per_user_mean"], result["catalogue"], result["info"]
        rows.append(
            {
                "run": Path(info["run"]).name,
                "model": info["model"],
                **{m: means.get(m) for m in MANY_USER},
                **{m: catalogue.get(m) for m in MANY_CATALOGUE},
            }
        )
    print(f"Beyond-accuracy metrics @{args.k} of {len(rows)} runs")
    print(format_table(pl.DataFrame(rows)))
    return 0


def group_table(means: pl.DataFrame, gaps: pl.DataFrame) -> pl.DataFrame:
    """One row per metric: its mean in each group, then ``max_gap`` and ``mad``."""
    metrics = [c for c in means.columns if c not in ("group", "n_users")]
    columns: dict[str, list] = {"metric": metrics}
    for row in means.iter_rows(named=True):
        columns[str(row["group"])] = [row[m] for m in metrics]
    by_metric = {r["metric"]: r for r in gaps.iter_rows(named=True)}
    columns["max_gap"] = [by_metric[m]["max_gap"] for m in metrics]
    columns["mad"] = [by_metric[m]["mad"] for m in metrics]
    schema = {name: (pl.String if name == "metric" else pl.Float64) for name in columns}
    return pl.DataFrame(columns, schema=schema)


def format_table(frame: pl.DataFrame, digits: int = 4) -> str:
    """Plain-text table of ``frame`` with every row and column (numbers to ``digits``)."""
    header = list(frame.columns)
    rows = [[_cell(v, digits) for v in row] for row in frame.iter_rows()]
    widths = [
        max(len(h), *(len(r[j]) for r in rows)) if rows else len(h) for j, h in enumerate(header)
    ]
    numeric = [frame[c].dtype.is_numeric() for c in header]

    def line(cells: list[str]) -> str:
        return "  ".join(
            c.rjust(w) if num else c.ljust(w)
            for c, w, num in zip(cells, widths, numeric, strict=True)
        ).rstrip()

    out = [line(header), line(["-" * w for w in widths])]
    out.extend(line(r) for r in rows)
    return "\n".join(out)


def _cell(value: Any, digits: int) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        if math.isnan(value):
            return "-"
        return f"{value:.{digits}f}"
    return str(value)
