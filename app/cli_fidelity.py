"""``reclens fidelity``: how faithful are SPINRec and the baseline explainers to each model?

Example::

    reclens fidelity --dataset ml-100k --model fism,multvae,fism-neumf --explainers all --users 300
    reclens fidelity --dataset synthetic --model ease --explainers spinrec,lime,random --json

For each model, an existing run of the same dataset, model, seed and split protocol under
``--runs`` is reused (the newest); otherwise the model is trained and saved there. Then the
top-1 recommendation of ``--users`` test users (sampled with the seed; all by default) is
explained by every explainer and the counterfactual fidelity metrics are measured (see
:mod:`explainers.fidelity` and :mod:`explainers.batch`). The table (or, with ``--json``, one
JSON object per model and explainer and line) goes to stdout, progress lines to stderr. The
per-user results are written to Parquet: ``--out FILE``, or by default into each model's run
folder (``fidelity/per_user_seed<S>_<N>users.parquet``, recorded in the run's manifest).

The work is split into shards (model x explainer x ``--shard-users`` users, see
:mod:`app.fidelity_job`) run by :mod:`engine.executor`: in this process by default, by
``--workers N`` local processes, or on Ray (``--backend ray``, a local cluster unless
``--ray-address`` names one). Every finished shard is stored under
``$RECLENS_HOME/jobs/fidelity-<job hash>/``; ``--resume`` keeps them after an interruption.
The per-user results are identical whatever runs them.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import os
import sys
from dataclasses import replace
from pathlib import Path
from typing import Any

import polars as pl

from app.cli_backend import add_backend_options, backend_options
from app.cli_data import SOURCE_HELP, check_output_file, int_in, seed_type
from app.cli_train import epoch_bar, parse_models, parse_options
from app.fidelity_job import SHARD_USERS, RunHandle, combine, fidelity_tasks, run_handle
from app.fidelity_stats import coinciding, compare_to_spinrec, format_comparisons, verdict
from app.text_table import aligned
from data.errors import ReclensError
from data.paths import reclens_home
from engine.device import resolve_device
from engine.executor import ShardStore, log_progress, run_tasks, share
from engine.pipeline import prepare_spec, source_spec, train_run
from engine.runs import fidelity_file, list_runs, runs_root, write_derived
from engine.session import OpenRun
from explainers.batch import FidelityReport, sample_users
from explainers.fidelity import CURVES, EDIT_RULES, FIXED_LENGTHS
from explainers.registry import explainer_names, parse_names

TABLE_METRICS: tuple[str, ...] = tuple(f"{c}_auc" for c in CURVES)
FIXED_METRICS: tuple[str, ...] = (
    *(f"del@{k}" for k in FIXED_LENGTHS),
    *(f"ins@{k}" for k in FIXED_LENGTHS),
)


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add ``reclens fidelity``."""
    parser = subparsers.add_parser(
        "fidelity",
        help="measure the counterfactual fidelity of SPINRec and baseline explainers",
        description=(
            "Explain the top-1 recommendation of test users with each explainer and measure "
            "counterfactual fidelity (DEL, INS, POS@K, NEG@K, CDCG AUCs; fixed-length DEL/INS). "
            "Models are trained, or an existing run of the same dataset/model/seed is reused."
        ),
    )
    parser.add_argument("--dataset", required=True, metavar="SOURCE", help=SOURCE_HELP)
    parser.add_argument(
        "--model", required=True, metavar="NAMES", help="comma-separated model names, or all"
    )
    parser.add_argument(
        "--explainers",
        default="all",
        metavar="NAMES",
        help=f"all, or comma-separated names ({', '.join(explainer_names())})",
    )
    parser.add_argument(
        "--users", type=int, metavar="N", help="test users to explain, sampled (default: all)"
    )
    parser.add_argument(
        "--seed", type=seed_type, default=0, help="split, training, sampling seed (0)"
    )
    parser.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N (auto)")
    parser.add_argument("--runs", metavar="DIR", help="runs folder (default $RECLENS_HOME/runs)")
    parser.add_argument("--out", metavar="FILE", help="write all per-user results to this Parquet")
    parser.add_argument("--epochs", type=int_in(1), help="most training epochs when training")
    parser.add_argument("--kappa", type=int, default=16, help="SPINRec baselines (16)")
    parser.add_argument(
        "--edit-rule", choices=EDIT_RULES, default="round",
        help="fraction to count: round (round-half-up(f n), the default) or array_split (the "
        "SPINRec/LXR reference code's bins, to compare with the paper)",
    )  # fmt: skip
    parser.add_argument(
        "--select", default="del", metavar="LIST",
        help="SPINRec's path selection, one row each: del (the paper's: lowest deletion AUC), "
        "ins (best insertion AUC), none (one path, no selection); e.g. del,ins,none",
    )  # fmt: skip
    parser.add_argument("--steps", type=int, default=16, help="SPINRec/IG path steps J (16)")
    parser.add_argument(
        "--protocol",
        default="random",
        choices=("random", "temporal", "strong", "given"),
        help="split protocol (random)",
    )
    parser.add_argument(
        "--data-option",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="loader option, repeatable (e.g. n_users=500 for synthetic)",
    )
    parser.add_argument("--json", action="store_true", help="one JSON object per line")
    parser.add_argument(
        "--all-metrics", action="store_true", help="also show fixed-length DEL/INS in the table"
    )
    parser.add_argument("--quiet", action="store_true", help="no progress lines on stderr")
    add_backend_options(parser)
    parser.add_argument(
        "--shard-users", type=int_in(1), default=SHARD_USERS, metavar="N",
        help=f"users per shard ({SHARD_USERS})",
    )  # fmt: skip
    parser.add_argument(
        "--resume", action="store_true",
        help="keep the shards an interrupted run of the same job finished",
    )  # fmt: skip
    parser.add_argument(
        "--ship", action="store_true",
        help="send runs to the workers through the object store (default: only with "
        "--ray-address)",
    )  # fmt: skip
    parser.set_defaults(func=cmd_fidelity)


def find_run(
    root: str | Path | None,
    source: str,
    model: str,
    seed: int,
    protocol: str,
    load_options: dict[str, Any],
) -> Path | None:
    """The newest complete run of ``model`` on ``source`` with this seed and protocol.

    A run matches when its config names the same source (as :func:`source_spec` writes it),
    the same loader options and the default preparation.
    """
    spec = source_spec(source, load_options)
    prep = prepare_spec(None)
    for summary in list_runs(root):
        # a pre-split source is always split as given, whatever protocol was asked for
        same_split = summary.protocol in (protocol, "given")
        if summary.model != model or summary.seed != seed or not same_split:
            continue
        data = summary.config.dataset
        same = (data.kind, data.source, data.options) == (
            spec["kind"],
            spec["source"],
            spec["options"],
        )
        if same and summary.config.prepare == prep:
            return Path(summary.path)
    return None


def obtain(args: argparse.Namespace, name: str, load_options: dict[str, Any]) -> OpenRun:
    """The opened run of ``name``: an existing one reused when there is one, else trained."""
    found = find_run(args.runs, args.dataset, name, args.seed, args.protocol, load_options)
    if found is not None:
        opened = OpenRun.open(found, device=resolve_device(args.device))
        if not args.quiet:
            print(f"{name}: reusing run {found}", file=sys.stderr)
        return opened
    with epoch_bar(name, args.epochs, args.quiet) as (_, on_epoch):
        result = train_run(
            args.dataset,
            name,
            seed=args.seed,
            device=args.device,
            epochs=args.epochs,
            out=args.runs,
            protocol=args.protocol,
            progress=on_epoch,
            load_options=load_options,
        )
    if result.run_dir is None:
        raise ReclensError(f"training {name} gave no saved model")
    return OpenRun.open(result.run_dir, device=resolve_device(args.device))


def cmd_fidelity(args: argparse.Namespace) -> int:
    """Run ``reclens fidelity``: one shard per model x explainer x batch of users."""
    models = parse_models(args.model)
    names = with_selections(parse_names(args.explainers), args.select)
    if args.users is not None and args.users < 1:
        raise ReclensError(f"--users must be at least 1, got {args.users}")
    if args.kappa < 1 or args.steps < 1:
        raise ReclensError("--kappa and --steps must be at least 1")
    if args.out:
        check_output_file(args.out)
    if args.runs is None:
        args.runs = str(runs_root())
    options = backend_options(args)
    load_options = parse_options(args.data_option)
    params: dict[str, dict[str, Any]] = {
        **{
            name: {"kappa": args.kappa, "steps": args.steps, "edit_rule": args.edit_rule}
            for name in SELECTIONS.values()
        },
        "ig_zero": {"steps": args.steps},
    }
    opened = {name: obtain(args, name, load_options) for name in models}
    users = {name: sample_users(o.split, args.users, args.seed) for name, o in opened.items()}
    ship = args.ship or (options.backend == "ray" and options.ray_address is not None)
    handles = []
    for name, run in opened.items():
        handle = run_handle(run.path, name, ship=ship)
        handles.append(replace(handle, payload=share(handle.payload, options)))
    tasks = fidelity_tasks(
        handles, names, users, args.seed, params, args.shard_users, args.edit_rule
    )
    store = ShardStore(
        job_folder(handles, names, users, args.seed, params, args.shard_users, args.edit_rule)
    )
    progress = None if args.quiet else log_progress("fidelity")
    frames = run_tasks(tasks, options, store=store, resume=args.resume, progress=progress)
    per_user = combine(frames)
    for name in models:
        run_dir = opened[name].path
        table = per_user.filter(pl.col("model") == name)
        label = "all" if args.users is None else str(len(users[name]))
        target = run_dir / fidelity_file(args.seed, label)
        if args.out is None:
            write_derived(run_dir, {fidelity_file(args.seed, label): table.write_parquet})
        summary = FidelityReport(model=name, per_user=table).summary()
        comparisons = compare_to_spinrec(table, TABLE_METRICS, seed=args.seed)
        coincide = coinciding(table)
        same_as = {b: a for a, b in coincide}
        for row in summary:
            row["run_dir"] = str(run_dir)
            row["seed"] = args.seed
            if row["explainer"] in same_as:
                row["coincides_with"] = same_as[row["explainer"]]
            if args.json:
                print(json.dumps(_json_ready(row)), flush=True)
        if args.json:
            for result in comparisons:
                line = {"model": name, "kind": "comparison", **result.to_dict()}
                print(json.dumps(_json_ready({**line, "verdict": verdict(result)})), flush=True)
        else:
            shown = [row for row in summary if row["explainer"] not in same_as]
            print(format_table(shown, args.all_metrics))
            if comparisons:
                print()
                print(format_comparisons(comparisons, coincide, name))
            where = args.out if args.out is not None else target
            print(f"per-user results: {where}\n", flush=True)
    if args.out is not None:
        write_parquet(per_user, Path(args.out))
    return 0


SELECTIONS = {"del": "spinrec", "ins": "spinrec_ins", "none": "spinrec_single"}
"""``--select`` values and the SPINRec row each gives."""
SELECTED_LABEL = {
    "spinrec": "spinrec [path selected on DEL]",
    "spinrec_ins": "spinrec [path selected on INS]",
    "spinrec_single": "spinrec [one path, no selection]",
}


def with_selections(names: list[str], select: str) -> list[str]:
    """``names`` with SPINRec replaced by one row per ``--select`` criterion (in that order)."""
    chosen = [part.strip() for part in select.split(",") if part.strip()]
    unknown = [c for c in chosen if c not in SELECTIONS]
    if unknown or not chosen:
        raise ReclensError(
            f"unknown --select {', '.join(unknown) or repr(select)}: use del, ins or none"
        )
    if "spinrec" not in names:
        return names
    at = names.index("spinrec")
    variants = [SELECTIONS[c] for c in dict.fromkeys(chosen)]
    rest = [n for n in names if n != "spinrec" and n not in variants]
    return [*rest[:at], *variants, *rest[at:]]


def job_folder(
    handles: list[RunHandle],
    explainers: list[str],
    users: dict[str, Any],
    seed: int,
    params: dict[str, Any],
    shard_users: int,
    edit_rule: str,
) -> Path:
    """Where the shards of this exact job are stored: the same job gives the same folder."""
    spec = {
        "runs": [(h.path, h.manifest_sha) for h in handles],
        "explainers": explainers,
        "users": {k: [int(u) for u in v] for k, v in users.items()},
        "seed": seed,
        "params": params,
        "shard_users": shard_users,
        "edit_rule": edit_rule,
    }
    digest = hashlib.sha256(json.dumps(spec, sort_keys=True).encode()).hexdigest()[:16]
    return reclens_home() / "jobs" / f"fidelity-{digest}"


def write_parquet(frame: pl.DataFrame, path: Path) -> None:
    """Write ``frame`` to ``path`` through a temporary file renamed into place."""
    path = Path(path).expanduser()
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.tmp")
        frame.write_parquet(tmp)
        os.replace(tmp, path)
    except OSError as err:
        raise ReclensError(f"{path}: cannot write the results ({err.strerror or err})") from err


def _json_ready(value: Any) -> Any:
    """``value`` with NaN and infinities turned into ``None`` (strict JSON)."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: _json_ready(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_json_ready(v) for v in value]
    return value


def _cell(stat: dict[str, float]) -> str:
    mean, ci = stat["mean"], stat["ci95"]
    if not math.isfinite(mean):
        return "n/a"
    if not math.isfinite(ci):
        return f"{mean:.4f}"
    return f"{mean:.4f}±{ci:.4f}"


def format_table(summary: list[dict[str, Any]], all_metrics: bool = False) -> str:
    """A text table for one model: rows explainer, columns metric mean ± 95% CI, ms."""
    if not summary:
        return "(no explanations)"
    metrics = TABLE_METRICS + (FIXED_METRICS if all_metrics else ())
    headers = ["explainer", *metrics, "ms"]
    rows = [
        [
            SELECTED_LABEL.get(row["explainer"], row["explainer"]),
            *(_cell(row["metrics"][m]) for m in metrics),
            f"{row['ms_per_explanation']:.1f}",
        ]
        for row in summary
    ]
    first = summary[0]
    lines = [
        f"model {first['model']}: {first['n_users']} users, mean ± 95% CI "
        "(del, pos, cdcg: lower is better; ins, neg: higher is better)",
        *aligned(headers, rows),
    ]
    if any(r["explainer"] == "spinrec_best_of_kappa" for r in summary):
        lines.append(
            "spinrec_best_of_kappa: best of the kappa SPINRec maps per metric, an optimistic "
            "upper bound"
        )
    return "\n".join(lines)
