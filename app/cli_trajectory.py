"""``reclens trajectory``: DiffRec's denoising trajectory for one user of a saved run.

Prints one row per reverse step (t = T-1 .. 0): the step's Recall@K and NDCG@K against the
user's test items, how far the x_0 prediction moved, how many items entered the top K, the 2D
position of the prediction on the run's item map and the top-K raw item ids. ``--json``
prints one object with ``user``, the settings and ``steps`` (a list; per step ``seed``, ``t``,
``recall@K``, ``ndcg@K``, ``topk`` (raw ids), ``x``, ``y``, the schedule's coefficients and
more). ``--noise-steps`` > 0 noises the history first; with several ``--seeds`` that gives a
fan of trajectories.
"""

from __future__ import annotations

import argparse
import json

import polars as pl

from data.errors import ReclensError
from engine.session import OpenRun


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add ``reclens trajectory``."""
    parser = subparsers.add_parser(
        "trajectory",
        help="DiffRec's step-by-step denoising of one user's history",
        description=(
            "The reverse diffusion trajectory of one user of a saved diffrec run: per step, "
            "the top K, its recall and NDCG on the user's test items and its place on the "
            "item map."
        ),
    )
    parser.add_argument("--run", required=True, metavar="RUN", help="a diffrec run folder")
    parser.add_argument("--user", required=True, metavar="U", help="the user's raw id")
    parser.add_argument("--k", type=int, default=10, help="list length K (default 10)")
    parser.add_argument(
        "--top-n", type=int, default=20, help="items whose centroid places a step (default 20)"
    )
    parser.add_argument(
        "--noise-steps",
        type=int,
        default=0,
        help="forward-noise the history this many steps first (default 0, as in the paper)",
    )
    parser.add_argument(
        "--sampling-noise",
        action="store_true",
        help="add the posterior noise at every reverse step (a stochastic walk)",
    )
    parser.add_argument(
        "--seeds", default="0", help="comma-separated noise seeds (default 0), e.g. 0,1,2"
    )
    parser.add_argument(
        "--map",
        choices=("umap", "pca"),
        default="umap",
        help="item map the x, y positions refer to (default umap, stored with the run)",
    )
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.set_defaults(func=cmd_trajectory)


def cmd_trajectory(args: argparse.Namespace) -> int:
    """Load the run, record the user's trajectory and print it."""
    if args.k < 1 or args.top_n < 1:
        raise ReclensError(f"--k and --top-n must be at least 1, got {args.k} and {args.top_n}")
    seeds = parse_seeds(args.seeds)
    opened = OpenRun.open(args.run)
    traj = opened.trajectory(
        opened.user_index(args.user),
        k=args.k,
        top_n=args.top_n,
        noise_steps=args.noise_steps,
        seeds=seeds,
        sampling_noise=args.sampling_noise,
        map_method=args.map,
    )
    if args.json:
        out = {"run": str(opened.path), **traj.to_dict()}
        print(json.dumps(out, indent=2, allow_nan=False))
        return 0
    stochastic = args.noise_steps > 0 or args.sampling_noise
    print(
        f"run {opened.path}  user {traj.user}  history {len(traj.history)} items  "
        f"test {len(traj.heldout)} items  T={traj.n_steps}  noise steps {traj.noise_steps}"
        + ("" if stochastic else "  (deterministic)")
    )
    print(format_steps(traj.steps, traj.k, with_seed=len(traj.seeds) > 1))
    return 0


def parse_seeds(text: str) -> list[int]:
    """``"0,1,2"`` -> [0, 1, 2]; a :class:`ReclensError` for anything else."""
    from data.errors import ReclensError

    try:
        seeds = [int(part) for part in str(text).split(",") if part.strip()]
    except ValueError as err:
        raise ReclensError(f"--seeds must be comma-separated integers, got {text!r}") from err
    if not seeds:
        raise ReclensError("--seeds needs at least one seed")
    return seeds


def format_steps(steps: pl.DataFrame, k: int, with_seed: bool = False, shown: int = 5) -> str:
    """Plain-text table of a trajectory's steps (the first ``shown`` top-K ids per step)."""
    header = (["seed"] if with_seed else []) + [
        "step",
        "t",
        f"recall@{k}",
        f"ndcg@{k}",
        "x0_change",
        "new",
        "x",
        "y",
        f"top-{k} (first {shown})",
    ]
    rows = []
    for row in steps.iter_rows(named=True):
        cells = [str(row["seed"])] if with_seed else []
        cells += [
            str(row["step"]),
            str(row["t"]),
            _num(row[f"recall@{k}"]),
            _num(row[f"ndcg@{k}"]),
            _num(row["x0_change"]),
            str(row["n_new"]),
            _num(row["x"], 3),
            _num(row["y"], 3),
            " ".join(row["topk_raw"][:shown]),
        ]
        rows.append(cells)
    widths = [max(len(h), *(len(r[j]) for r in rows)) for j, h in enumerate(header)]
    last = len(header) - 1

    def line(cells: list[str]) -> str:
        return "  ".join(
            c.ljust(w) if j == last else c.rjust(w)
            for j, (c, w) in enumerate(zip(cells, widths, strict=True))
        ).rstrip()

    return "\n".join([line(header), line(["-" * w for w in widths]), *map(line, rows)])


def _num(value: float | None, digits: int = 4) -> str:
    return "-" if value is None else f"{value:.{digits}f}"
