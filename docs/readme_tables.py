"""The README's fidelity and accuracy tables, as Markdown, from saved runs.

Fidelity: the per-user results ``reclens fidelity`` stored with each run under ``--fidelity-runs``
(one table per model: mean ± 95% CI of DEL, INS, POS@10 and CDCG AUCs and ms per explanation,
each SPINRec row named by the metric its path was selected on; then, per model, every SPINRec row
against every other explainer on the metrics its selection did not use, paired, Holm-corrected).
Accuracy: the seed sweep ``reclens train --seeds 0-2`` saved under ``--accuracy-runs`` (mean ±
95% CI over the split seeds; and on every seed whether the model differs from EASE on NDCG@10,
paired over the same test users, Holm over the models of that seed).

    .venv/bin/python docs/readme_tables.py --fidelity-runs DIR --accuracy-runs DIR
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import polars as pl

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from app.cli_fidelity import SELECTED_LABEL  # noqa: E402
from app.fidelity_stats import coinciding, compare_to_spinrec, verdict  # noqa: E402
from engine.run_comparison import paired_values  # noqa: E402
from engine.runs import list_runs  # noqa: E402
from engine.session import OpenRun  # noqa: E402
from engine.stats import compare_many, significant  # noqa: E402
from explainers.batch import REPORTED, mean_ci95  # noqa: E402

SHOWN = {"del_auc": "DEL-AUC", "ins_auc": "INS-AUC", "pos@10_auc": "POS@10-AUC",
         "cdcg_auc": "CDCG-AUC"}  # fmt: skip
ACCURACY = ("recall@10", "ndcg@10", "recall@20", "ndcg@20")


def cell(values: np.ndarray, digits: int) -> str:
    mean, half = mean_ci95(values)
    return f"{mean:.{digits}f} ± {half:.{digits}f}"


def fidelity(root: Path) -> str:
    out = []
    for summary in sorted(list_runs(root), key=lambda s: s.model):
        table = OpenRun.open(summary.path).stored_fidelity()
        if table is None:
            continue
        digits = 5 if float(table["del_auc"].mean()) < 0.05 else 4
        same = dict((b, a) for a, b in coinciding(table))
        n = table["user"].n_unique()
        out += [f"**{summary.model}** ({n} users)", "",
                "| explainer | " + " | ".join(SHOWN.values()) + " | ms |",
                "|---" * (len(SHOWN) + 2) + "|"]  # fmt: skip
        for name in [r for r in REPORTED if r in set(table["explainer"])]:
            if name in same:
                continue
            rows = table.filter(pl.col("explainer") == name)
            label = SELECTED_LABEL.get(name, name)
            if name == "spinrec_best_of_kappa":
                label = "SPINRec, best of kappa per metric (optimistic bound, not a competitor)"
            also = [b for b, a in same.items() if a == name]
            if also:
                label += f" (= {', '.join(also)}: identical per-user results)"
            cells = [cell(rows[m].to_numpy(), digits) for m in SHOWN]
            out.append(f"| {label} | " + " | ".join(cells) + f" | {rows['ms'].mean():.1f} |")
        out.append("")
        results = compare_to_spinrec(table, tuple(SHOWN))
        for ref in dict.fromkeys(r.a for r in results):
            mine = [r for r in results if r.a == ref]
            metrics = list(dict.fromkeys(r.metric for r in mine))
            parts = []
            for metric in metrics:
                wins = [r.b for r in mine if r.metric == metric and verdict(r) == f"{ref} better"]
                loses = [r.b for r in mine if r.metric == metric and verdict(r) == f"{r.b} better"]
                ties = [
                    r.b
                    for r in mine
                    if r.metric == metric and verdict(r) == "no significant difference"
                ]
                text = f"{SHOWN[metric]}: beats {', '.join(wins) or 'none'}"
                if loses:
                    text += f"; loses to {', '.join(loses)}"
                if ties:
                    text += f"; no significant difference from {', '.join(ties)}"
                parts.append(text)
            out.append(f"- {SELECTED_LABEL[ref]}, on metrics it was not selected on: "
                       + " · ".join(parts))  # fmt: skip
        if results:
            out.append(f"- (paired t-test over the {n} users, percentile bootstrap CIs, Holm over "
                       f"all {len(results)} comparisons of this model)")  # fmt: skip
        out.append("")
    return "\n".join(out)


def accuracy(root: Path) -> str:
    runs = list_runs(root)
    models = sorted({s.model for s in runs}, key=lambda m: [s.model for s in runs].index(m))
    seeds = sorted({s.seed for s in runs})
    verdicts: dict[str, list[str]] = {m: [] for m in models}
    for seed in seeds:
        of_seed = {s.model: s for s in runs if s.seed == seed}
        if "ease" not in of_seed:
            continue
        values = paired_values(of_seed, "ndcg@10")
        pairs = [("ease", m) for m in of_seed if m != "ease"]
        for r in compare_many(values, pairs, metric="ndcg@10", ci="percentile", n_boot=1000):
            word = ("higher" if r.diff > 0 else "lower") if significant(r) else "n.s."
            verdicts[r.b].append(word)
    out = ["| model | " + " | ".join(ACCURACY) + " | NDCG@10 vs EASE, per seed |",
           "|---" * (len(ACCURACY) + 2) + "|"]  # fmt: skip
    order = sorted(models, key=lambda m: -np.mean([s.metrics["ndcg@10"] for s in runs
                                                   if s.model == m]))  # fmt: skip
    for model in order:
        mine = [s for s in runs if s.model == model]
        cells = [cell(np.array([s.metrics[m] for s in mine]), 4) for m in ACCURACY]
        vs = "(baseline)" if model == "ease" else ", ".join(verdicts[model])
        out.append(f"| {model} | " + " | ".join(cells) + f" | {vs} |")
    out.append("")
    out.append(
        f"Split seeds {', '.join(map(str, seeds))}; mean ± 95% CI over the seeds "
        "(Student's t); the last column: paired t-test over the same test users on each "
        "seed, Holm over the models of that seed, higher/lower only where p_holm < 0.05."
    )
    return "\n".join(out)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--fidelity-runs", type=Path)
    parser.add_argument("--accuracy-runs", type=Path)
    args = parser.parse_args(argv)
    if args.fidelity_runs:
        print(fidelity(args.fidelity_runs))
    if args.accuracy_runs:
        print(accuracy(args.accuracy_runs))
    return 0


if __name__ == "__main__":
    sys.exit(main())
