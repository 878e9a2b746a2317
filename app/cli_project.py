"""``reclens project``: the 2-D maps (UMAP or PCA) of the items and users of saved runs.

Example::

    reclens project --run RUN_A --run RUN_B --method umap --workers 2

Each run is one task on the executor (local by default; ``--backend ray`` for a cluster); the
maps are stored with each run (recorded in its manifest), where the dashboard and
``reclens trajectory`` find them.
"""

from __future__ import annotations

import argparse
import json

from app.cli_backend import add_backend_options, backend_options
from app.derive_job import projection_tasks
from engine.executor import log_progress, run_tasks
from engine.projection import METHODS


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add ``reclens project``."""
    parser = subparsers.add_parser(
        "project",
        help="compute and store the 2-D maps of runs' items and users",
        description="Project the item and user vectors of each run to 2-D and store the maps.",
    )
    parser.add_argument(
        "--run", required=True, action="append", metavar="RUN", help="a run folder (repeatable)"
    )
    parser.add_argument("--method", choices=METHODS, default="umap", help="umap (cosine) or pca")
    parser.add_argument("--json", action="store_true", help="one JSON object per run")
    add_backend_options(parser)
    parser.set_defaults(func=cmd_project)


def cmd_project(args: argparse.Namespace) -> int:
    """Run ``reclens project``."""
    tasks = projection_tasks(args.run, args.method)
    frames = run_tasks(tasks, backend_options(args), progress=log_progress("project"))
    for frame in frames:
        row = frame.row(0, named=True)
        if args.json:
            print(json.dumps(row))
        else:
            print(f"{row['run']}: {row['method']} maps of {row['items']} items and "
                  f"{row['users']} users stored")  # fmt: skip
    return 0
