"""MovieLens-10M size on one machine: time and peak memory of every step of RecLens's path.

The synthetic generator is run at MovieLens-10M size (70,000 users x 10,000 items x 10,000,000
interactions by default) and each step runs in its own child process, so that its peak memory
is its own: wall seconds are timed here, CPU seconds and the peak resident memory come from
``os.wait4``'s resource usage of that child (its own children included). Steps:

- ``data``: generate, prepare and split (target: under 60 s);
- ``train-<model>``: ``reclens train`` of pop, itemknn, ease, fism (the former mf), multvae and
  diffrec, gradient-trained ones with a wall-clock budget (``--max-seconds``; the epochs
  reached are printed); it includes loading the data again, the full-ranking evaluation of the
  test and valid parts, saving the run and its beyond-accuracy metrics (EASE fit: under 300 s);
- ``beyond``: ``reclens metrics`` (beyond-accuracy metrics) of the EASE run;
- ``fidelity``: ``reclens fidelity`` of one model's saved run on 1,000 test users;
- ``project``: ``reclens project`` of every run with embeddings: items and all users. PCA is
  the default here (``--projection umap`` for UMAP, much slower on two cores at this size);
- ``dashboard``: a ``reclens serve``-like server on the cached runs; time from accepting
  connections to the first complete page (Explain tab, target under 5 s) and to a user switch
  (target under 1 s), driven by Playwright with Debian's Chromium. Its peak memory is the
  server's (sampled from /proc), not the browser's.

Every step's target for peak memory is 12 GiB. The load average is printed beside each step:
on a shared machine the wall times grow with it, CPU seconds much less.

Measured at MovieLens-10M size on the 2-core CPU machine (2026-12-01; load average beside each
figure). Quiet machine (load 1 to 2), whole ``reclens train`` steps, wall / peak: pop 61.2 s /
6.2 GiB; itemknn 116.2 s / 4.0 GiB; ease 151.5 s / 4.6 GiB (fit 46.3 s, target < 300 s);
fism 197.4 s / 3.4 GiB (120 s budget, 8 epochs); multvae 260.8 s / 3.3 GiB (3 epochs); diffrec
327.9 s / 3.4 GiB (2 epochs); data 23.6 to 28.5 s inside each; beyond (EASE run) 47.6 s, peak
3.7 GiB. Shared machine: data 29.0 s (peak 3.3 GiB; load 1.8), 292 s at load 12 to 14;
fidelity (fism, 1,000 users) 99.5 s, peak 3.4 GiB; project (PCA, 2 runs) 10.1 s, peak 1.2 GiB;
dashboard: first page 2.97 s, user switch median 0.76 s, server warm-up 60 s, tree peak 3.5 GiB
(load 2.8).

    .venv/bin/python bench/scale_bench.py --small          # a quick check (seconds)
    nice -n 15 .venv/bin/python bench/scale_bench.py       # MovieLens-10M size
    .venv/bin/python bench/scale_bench.py --steps data,train-ease --budget fism=600
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

GIB = 1 << 30
RSS_TARGET_GIB = 12.0
FULL = {"n_users": 70_000, "n_items": 10_000, "n_interactions": 10_000_000}
SMALL = {"n_users": 3_000, "n_items": 1_500, "n_interactions": 150_000}
TRAINED = ("fism", "multvae", "diffrec")
"""Gradient-trained models: they get a wall-clock budget (closed-form ones fit once)."""
DEFAULT_BUDGET_S = 300.0
SMALL_BUDGET_S = 15.0
TARGETS = {"data": ("total s", 60.0), "train-ease": ("fit s", 300.0)}
DATA_CHILD = """
import json, sys, time
from engine.pipeline import build_data, prepare_spec, source_spec
spec = source_spec("synthetic", json.loads(sys.argv[1]))
prepared, parts, seconds = build_data(spec, prepare_spec({}), "random", 0)
print(json.dumps({**seconds, "nnz": int(parts.train.nnz), "users": int(prepared.n_users)}))
"""


@dataclass
class Step:
    """One measured step: what ran, how long, how much memory, and what it reported."""

    name: str
    wall: float = 0.0
    cpu: float = 0.0
    rss_gib: float = 0.0
    rc: int = 0
    load: tuple[float, float] = (0.0, 0.0)
    figures: dict[str, float] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    output: str = ""


def run_child(name: str, command: list[str], env: dict[str, str], log: Path) -> Step:
    """Run ``command`` as a child (niced like this process) and measure it with wait4."""
    load_before = os.getloadavg()[0]
    with open(log, "w") as err:
        start = time.perf_counter()
        process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=err, env=env, text=True)
        assert process.stdout is not None
        output = process.stdout.read()
        _, status, usage = os.wait4(process.pid, 0)
        wall = time.perf_counter() - start
    process.returncode = os.waitstatus_to_exitcode(status)
    step = Step(
        name,
        wall=wall,
        cpu=usage.ru_utime + usage.ru_stime,
        rss_gib=usage.ru_maxrss * 1024 / GIB,  # Linux: KiB
        rc=process.returncode,
        load=(load_before, os.getloadavg()[0]),
        output=output,
    )
    if step.rc != 0:
        tail = log.read_text().strip().splitlines()[-3:]
        step.notes.append(f"FAILED rc={step.rc}: {' | '.join(tail)[-300:]}")
    return step


def json_lines(text: str) -> list[dict]:
    """The JSON objects printed one per line in ``text`` (other lines are skipped)."""
    out = []
    for line in text.splitlines():
        if line.startswith("{"):
            try:
                out.append(json.loads(line))
            except json.JSONDecodeError:
                continue
    return out


def data_args(size: dict[str, int]) -> list[str]:
    """``--data-option`` arguments of the synthetic dataset at ``size``."""
    return [arg for key, value in size.items() for arg in ("--data-option", f"{key}={value}")]


def model_names() -> list[str]:
    """The benchmarked models, under the registry's current names (fism was mf)."""
    from engine import registry

    names = registry.model_names()
    return ["pop", "itemknn", "ease", "fism" if "fism" in names else "mf", "multvae", "diffrec"]


def step_train(name: str, args: argparse.Namespace, env: dict, runs: Path, logs: Path) -> Step:
    reclens = [sys.executable, "-m", "app.cli", "train", "--dataset", "synthetic"]
    command = [*reclens, *data_args(args.size), "--model", name, "--device", "cpu"]
    command += ["--json", "--quiet", "--out", str(runs), "--seed", "0"]
    from engine import registry

    if registry.model_class(name).trainable:
        command += ["--max-seconds", str(args.budgets.get(name, args.default_budget))]
        if args.epochs:
            command += ["--epochs", str(args.epochs)]
    step = run_child(f"train-{name}", command, env, logs / f"train-{name}.log")
    for summary in json_lines(step.output):
        seconds = summary["seconds"]
        step.figures = {
            "data s": seconds["load"] + seconds["prepare"] + seconds["split"],
            "fit s": seconds["fit"],
            "eval s": seconds["evaluate"],
            "save s": seconds.get("save", 0.0),
            "ndcg@10": summary["metrics"]["ndcg@10"],
        }
        if registry.model_class(name).trainable:
            step.notes.append(
                f"{summary['epochs_run']} epochs in the budget (best {summary['best_epoch']})"
            )
        step.notes.append(f"run {summary['run_dir']}")
    return step


def run_dirs(runs: Path) -> dict[str, Path]:
    """The newest saved run folder of each model under ``runs``."""
    found: dict[str, Path] = {}
    for config in sorted(runs.glob("*/*/config.json")):
        model = json.loads(config.read_text())["model"]
        found[model] = config.parent
    return found


def report(steps: list[Step]) -> str:
    """The table of steps beside their targets."""
    lines = [
        f"{'step':<16} {'wall s':>8} {'cpu s':>8} {'peak GiB':>9} {'load':>11}  figures / notes",
        "-" * 100,
    ]
    for s in steps:
        figures = ", ".join(f"{k} {v:.4g}" for k, v in s.figures.items())
        target = TARGETS.get(s.name)
        checks = [f"RSS {'ok' if s.rss_gib < RSS_TARGET_GIB else 'MISSED'} (< 12 GiB)"]
        if target and target[0] in s.figures:
            ok = s.figures[target[0]] < target[1]
            checks.append(f"{target[0]} {'ok' if ok else 'MISSED'} (< {target[1]:g})")
        lines.append(
            f"{s.name:<16} {s.wall:>8.1f} {s.cpu:>8.1f} {s.rss_gib:>9.2f} "
            f"{s.load[0]:>5.1f}-{s.load[1]:<5.1f}  {figures}"
        )
        for note in [*checks, *s.notes]:
            lines.append(f"{'':<57}{note}")
    return "\n".join(lines)


def parse_budgets(text: str) -> dict[str, float]:
    """``"fism=300,multvae=200"`` -> ``{"fism": 300.0, "multvae": 200.0}``."""
    out = {}
    for part in filter(None, (p.strip() for p in text.split(","))):
        key, sep, value = part.partition("=")
        if not sep:
            raise argparse.ArgumentTypeError(f"{part!r}: expected MODEL=SECONDS")
        out[key.strip()] = float(value)
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--users", type=int, help=f"synthetic users ({FULL['n_users']})")
    parser.add_argument("--items", type=int, help=f"synthetic items ({FULL['n_items']})")
    parser.add_argument("--interactions", type=int, help=f"({FULL['n_interactions']})")
    parser.add_argument("--small", action="store_true", help=f"a quick check at {SMALL}")
    parser.add_argument("--steps", default="all", help="comma-separated steps (all)")
    parser.add_argument("--models", default="", help="comma-separated (pop,...,diffrec)")
    parser.add_argument(
        "--budget", type=parse_budgets, default={}, help="training seconds per model, fism=300"
    )
    parser.add_argument("--epochs", type=int, default=0, help="most epochs (model default)")
    parser.add_argument("--fidelity-model", default="fism", help="model explained (fism)")
    parser.add_argument("--fidelity-users", type=int, default=1000)
    parser.add_argument("--explainers", default="spinrec,cosine,random")
    parser.add_argument("--projection", choices=("pca", "umap"), default="pca")
    parser.add_argument("--dashboard-model", default="fism", help="run served (fism)")
    parser.add_argument("--home", default="/tmp/scale-bench-home", help="RECLENS_HOME")
    parser.add_argument("--switches", type=int, default=5, help="user switches measured")
    args = parser.parse_args()
    size = dict(SMALL if args.small else FULL)
    for key, value in (("n_users", args.users), ("n_items", args.items)):
        size[key] = value or size[key]
    size["n_interactions"] = args.interactions or size["n_interactions"]
    args.size = size
    args.budgets = args.budget
    args.default_budget = SMALL_BUDGET_S if args.small else DEFAULT_BUDGET_S
    models = [m for m in args.models.split(",") if m] or model_names()
    steps = args.steps.split(",") if args.steps != "all" else None
    home = Path(args.home)
    runs, logs = home / "runs", home / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "RECLENS_HOME": str(home), "PYTHONPATH": str(ROOT)}

    def wanted(name: str) -> bool:
        return steps is None or name in steps

    print(
        f"scale bench: {size['n_users']:,} users x {size['n_items']:,} items x "
        f"{size['n_interactions']:,} interactions, {os.cpu_count()} CPUs; "
        f"load average {os.getloadavg()[0]:.1f} at start",
        flush=True,
    )
    done: list[Step] = []

    def record(step: Step) -> None:
        done.append(step)
        print(report([step]).split("\n", 2)[2], flush=True)

    if wanted("data"):
        step = run_child(
            "data",
            [sys.executable, "-c", DATA_CHILD, json.dumps(size)],
            env,
            logs / "data.log",
        )
        for values in json_lines(step.output):
            step.figures = {k: values[k] for k in ("load", "prepare", "split")}
            step.figures["total s"] = sum(step.figures.values())
        record(step)
    for name in models:
        if wanted(f"train-{name}") or wanted("train"):
            record(step_train(name, args, env, runs, logs))
    found = run_dirs(runs) if runs.exists() else {}
    cli = [sys.executable, "-m", "app.cli"]
    if wanted("beyond") and "ease" in found:
        step = run_child(
            "beyond",
            [*cli, "metrics", "--run", str(found["ease"]), "--json", "--no-save"],
            env,
            logs / "beyond.log",
        )
        record(step)
    if wanted("fidelity") and args.fidelity_model in found:
        command = [*cli, "fidelity", "--dataset", "synthetic", *data_args(size)]
        command += ["--model", args.fidelity_model, "--users", str(args.fidelity_users)]
        command += ["--runs", str(runs), "--explainers", args.explainers, "--json", "--quiet"]
        command += ["--device", "cpu"]
        step = run_child("fidelity", command, env, logs / "fidelity.log")
        rows = json_lines(step.output)
        step.notes.append(f"{len(rows)} result rows; {args.fidelity_model}, {args.explainers}")
        step.figures = {"users": float(args.fidelity_users)}
        record(step)
    if wanted("project"):
        with_maps = [str(d) for m, d in found.items() if m not in ("pop",)]
        command = [*cli, "project", "--method", args.projection, "--json"]
        command += [arg for d in with_maps for arg in ("--run", d)]
        step = run_child("project", command, env, logs / "project.log")
        rows = json_lines(step.output)
        step.notes.append(f"{args.projection}: {len(rows)} runs projected")
        record(step)
    if wanted("dashboard"):
        from scale_dashboard import dashboard_step  # bench/scale_dashboard.py

        record(dashboard_step(runs, found, args, env, logs))
    print("\nsummary (wall and CPU seconds, peak resident memory of each step's process tree)")
    print(report(done))
    return 1 if any(s.rc for s in done) else 0


if __name__ == "__main__":
    sys.exit(main())
