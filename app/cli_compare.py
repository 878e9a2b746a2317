"""``reclens compare``: paired significance tests between saved runs, user by user.

Example::

    reclens compare --runs pop-20250101T120000Z,ease-20250101T121000Z --metric ndcg@10
    reclens compare --runs RUN_A,RUN_B,RUN_C --all-pairs --json

A RUN is a run folder, or the name of one under ``--runs-dir`` (default ``$RECLENS_HOME/runs``;
``<dataset>/<name>`` when a name is ambiguous). The runs' per-user test metrics are joined on
the user; runs of different datasets or evaluated on different users are refused. Each run is
compared with the baseline (``--baseline``, default the first run), or every pair with
``--all-pairs``: ``diff = mean over users of (b - a)`` with ``a`` the baseline (the earlier run
of a pair), its 95% bootstrap interval, the paired t-test and Wilcoxon signed-rank p-values,
and the ``--test`` p-value adjusted by Holm and Benjamini-Hochberg over all the comparisons
printed (see :mod:`engine.stats`). ``--json`` prints a JSON list, one object per comparison.
"""

from __future__ import annotations

import argparse
import json
import math
from itertools import combinations
from pathlib import Path

from app.cli_data import seed_type
from app.text_table import aligned
from data.errors import ReclensError
from engine.run_comparison import paired_values
from engine.runs import RunSummary, list_runs, runs_root
from engine.stats import CI_METHODS, DEFAULT_BOOT, TESTS, Comparison, compare_many


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add ``reclens compare``."""
    parser = subparsers.add_parser(
        "compare",
        help="paired significance tests between runs on the same users",
        description=(
            "Compare saved runs user by user on one test metric: mean difference with a "
            "bootstrap 95% CI, paired t-test and Wilcoxon p-values, Holm and BH corrections."
        ),
    )
    parser.add_argument(
        "--runs",
        required=True,
        metavar="RUN_A,RUN_B[,...]",
        help="comma-separated run folders, or run names under --runs-dir",
    )
    parser.add_argument("--metric", default="ndcg@10", help="per-user metric (ndcg@10)")
    pairs = parser.add_mutually_exclusive_group()
    pairs.add_argument("--baseline", metavar="RUN", help="the run others are compared with")
    pairs.add_argument("--all-pairs", action="store_true", help="compare every pair of runs")
    parser.add_argument(
        "--test",
        default="t",
        choices=tuple(TESTS),
        help="the test whose p-values are corrected (t)",
    )
    parser.add_argument(
        "--ci", default="bca", choices=tuple(CI_METHODS), help="bootstrap interval (bca)"
    )
    parser.add_argument(
        "--n-boot", type=int, default=DEFAULT_BOOT, help=f"bootstrap resamples ({DEFAULT_BOOT})"
    )
    parser.add_argument("--seed", type=seed_type, default=0, help="bootstrap seed (0)")
    parser.add_argument(
        "--runs-dir", metavar="DIR", help="runs folder (default $RECLENS_HOME/runs)"
    )
    parser.add_argument("--json", action="store_true", help="print a JSON list")
    parser.set_defaults(func=cmd_compare)


def resolve_run(token: str, root: Path) -> RunSummary:
    """The run ``token`` names: a run folder, else a run folder name under ``root``."""
    path = Path(token).expanduser()
    if path.is_dir():
        found = list_runs(path)
        if len(found) == 1 and found[0].path.resolve() == path.resolve():
            return found[0]
        raise ReclensError(f"{path}: not a complete run folder")
    matches = [
        s for s in list_runs(root) if token in (s.path.name, f"{s.path.parent.name}/{s.path.name}")
    ]
    if not matches:
        raise ReclensError(f"no run {token!r}: not a folder, and no run of that name under {root}")
    if len(matches) > 1:
        where = ", ".join(str(s.path) for s in matches)
        raise ReclensError(f"run name {token!r} is ambiguous: {where}")
    return matches[0]


def cmd_compare(args: argparse.Namespace) -> int:
    """Run ``reclens compare``."""
    tokens = [t.strip() for t in args.runs.split(",") if t.strip()]
    if len(tokens) < 2:
        raise ReclensError(f"--runs needs at least two runs, got {len(tokens)}")
    root = Path(args.runs_dir).expanduser() if args.runs_dir else runs_root()
    summaries = [resolve_run(t, root) for t in tokens]
    labels = run_labels(summaries)
    values = paired_values(dict(zip(labels, summaries, strict=True)), args.metric)
    baseline = resolve_run(args.baseline, root) if args.baseline is not None else None
    pairs = comparison_pairs(labels, summaries, baseline, args.all_pairs)
    results = compare_many(
        values,
        pairs,
        metric=args.metric,
        n_boot=args.n_boot,
        seed=args.seed,
        ci=args.ci,
        test=args.test,
    )
    if args.json:
        print(json.dumps([r.to_dict() for r in results], indent=2, allow_nan=False))
    else:
        print(format_report(results, summaries[0].dataset))
    return 0


def run_labels(summaries: list[RunSummary]) -> list[str]:
    """Run folder names, or full paths when two runs share a name; a run twice is refused."""
    paths = [str(s.path.resolve()) for s in summaries]
    for i, path in enumerate(paths):
        if path in paths[:i]:
            raise ReclensError(f"run {path} is listed twice")
    names = [s.path.name for s in summaries]
    return names if len(set(names)) == len(names) else paths


def comparison_pairs(
    labels: list[str], summaries: list[RunSummary], baseline: RunSummary | None, all_pairs: bool
) -> list[tuple[str, str]]:
    """``(a, b)`` label pairs: every pair in order, or the baseline against each other run."""
    if all_pairs:
        return list(combinations(labels, 2))
    index = 0
    if baseline is not None:
        paths = [s.path.resolve() for s in summaries]
        target = baseline.path.resolve()
        if target not in paths:
            raise ReclensError(f"--baseline {target} is not one of the --runs")
        index = paths.index(target)
    return [(labels[index], label) for i, label in enumerate(labels) if i != index]


def format_report(results: list[Comparison], dataset: str) -> str:
    """Header lines saying n, the tests, the interval and the correction; then the table."""
    first = results[0]
    lines = [
        f"{first.metric} on {dataset}: {first.n} users, paired by user; "
        "diff = mean(b - a), a = baseline",
        f"95% CI: {first.ci_method} bootstrap of diff, {first.n_boot} resamples, seed {first.seed}",
        f"tests (two-sided): p_t {TESTS['t']}; p_wilcoxon {TESTS['wilcoxon']}",
        f"correction: {first.correction}",
        "",
    ]
    headers = ["a", "b", "mean_a", "mean_b", "diff", "ci95", "p_t", "p_wilcoxon"]
    headers += ["p_holm", "p_bh", "d_z"]
    rows = [
        [
            r.a,
            r.b,
            _num(r.mean_a),
            _num(r.mean_b),
            _num(r.diff, signed=True),
            f"[{_num(r.ci95[0], signed=True)}, {_num(r.ci95[1], signed=True)}]",
            *(_p(p) for p in (r.p_t, r.p_wilcoxon, r.p_holm, r.p_bh)),
            _num(r.d_z, signed=True, digits=2),
        ]
        for r in results
    ]
    lines += aligned(headers, rows, left=2, strip=True)
    lines += [f"note: {r.a} vs {r.b}: {note}" for r in results for note in r.notes]
    return "\n".join(lines)


def _num(value: float, signed: bool = False, digits: int = 4) -> str:
    if not math.isfinite(value):
        return "-"
    return f"{value:+.{digits}f}" if signed else f"{value:.{digits}f}"


def _p(value: float) -> str:
    return f"{value:.1e}" if value < 1e-4 else f"{value:.4f}"
