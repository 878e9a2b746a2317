"""Explainers compared with SPINRec the way a claim must be made: paired over the same users,
with a confidence interval and a correction for the many comparisons.

For one model's per-user fidelity table, every explainer (SPINRec's best-of-kappa bound is not
a competitor and is left out) is compared with each SPINRec variant present, on every reported
metric that variant's path selection did not use (:data:`explainers.spinrec.SELECTED_ON`: a
path picked for its deletion AUC would otherwise "win" on the deletion AUC, POS@K and CDCG by
construction): ``diff = mean(explainer - spinrec)`` per user with a 95% bootstrap interval, the
paired t-test (:mod:`engine.stats`), Holm-corrected over all of that model's comparisons. A
winner is named only where the corrected p-value is below 0.05; otherwise the comparison says
"no significant difference". Explainers whose per-user results coincide on every metric (IG from
the zero baseline and gradient x input on models whose scores are linear in the history) are
reported once, with a note, instead of as two competitors.
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import polars as pl

from app.text_table import aligned
from engine.stats import Comparison, correct, paired_comparison, significant
from explainers.fidelity import LOWER_IS_BETTER, METRICS
from explainers.spinrec import SELECTED_ON
from explainers.target import BEST_OF_KAPPA

ALPHA = 0.05
CI = "percentile"
"""Bootstrap interval method (percentile: many comparisons per model, each fast)."""


def coinciding(
    per_user: pl.DataFrame, columns: tuple[str, ...] = METRICS, atol: float = 0.0
) -> list[tuple[str, str]]:
    """Pairs of explainers whose per-user values are equal on every one of ``columns`` (first,
    later); ``atol`` > 0: equal within ``atol`` (the same users, every value that close)."""
    names = list(dict.fromkeys(per_user["explainer"].to_list()))
    tables = {
        n: per_user.filter(pl.col("explainer") == n).sort("user").select(["user", *columns])
        for n in names
    }

    def same(a: pl.DataFrame, b: pl.DataFrame) -> bool:
        if atol <= 0 or a.height != b.height or not a["user"].equals(b["user"]):
            return a.equals(b)
        x, y = a.select(columns).to_numpy(), b.select(columns).to_numpy()
        return bool(np.allclose(x, y, rtol=0.0, atol=atol, equal_nan=True))

    pairs, seen = [], set()
    for i, a in enumerate(names):
        for b in names[i + 1 :]:
            if b not in seen and same(tables[a], tables[b]):
                pairs.append((a, b))
                seen.add(b)
    return pairs


def compare_to_spinrec(
    per_user: pl.DataFrame, metrics: tuple[str, ...], seed: int = 0
) -> list[Comparison]:
    """Every other explainer against each SPINRec variant present, on every metric of
    ``metrics`` that the variant's path selection did not use (:data:`SELECTED_ON`), one Holm
    family over all of them."""
    duplicates = {b for _, b in coinciding(per_user)}
    present = [n for n in dict.fromkeys(per_user["explainer"].to_list()) if n not in duplicates]
    references = [n for n in present if n in SELECTED_ON]
    names = [n for n in present if n not in SELECTED_ON and n != BEST_OF_KAPPA]
    if not references or not names:
        return []
    by_name = {n: per_user.filter(pl.col("explainer") == n).sort("user") for n in present}
    results = [
        paired_comparison(
            by_name[ref][metric].to_numpy().astype(np.float64),
            by_name[name][metric].to_numpy().astype(np.float64),
            name_a=ref,
            name_b=name,
            metric=metric,
            seed=seed,
            ci=CI,
        )
        for ref in references
        for metric in metrics
        if metric not in SELECTED_ON[ref]
        for name in names
    ]
    if not results:
        return []
    raw = [r.p_t for r in results]
    holm, bh = correct(raw, "holm"), correct(raw, "bh")
    label = f"Holm and Benjamini-Hochberg over {len(results)} comparisons of p_t"
    return [
        replace(r, p_holm=float(h), p_bh=float(f), family=len(results), correction=label)
        for r, h, f in zip(results, holm, bh, strict=True)
    ]


def verdict(result: Comparison) -> str:
    """``<spinrec variant> better``, ``<explainer> better`` or ``no significant difference``."""
    if not significant(result, ALPHA, "p_holm") or result.diff == 0:
        return "no significant difference"
    explainer_higher = result.diff > 0
    lower_better = result.metric in LOWER_IS_BETTER
    explainer_wins = explainer_higher != lower_better
    return f"{result.b} better" if explainer_wins else f"{result.a} better"


NAMES = {"del_auc": "deletion AUC", "ins_auc": "insertion AUC", "pos@10_auc": "POS@10 AUC",
         "cdcg_auc": "CDCG AUC"}  # fmt: skip
"""The metrics the dashboard states across users, in words."""


def evidence(per_user: pl.DataFrame) -> str:
    """The significant results of :func:`compare_to_spinrec` on a stored per-user table, in
    words (Holm over the whole family); a plain statement when none is significant."""
    results = compare_to_spinrec(per_user, tuple(NAMES))
    if not results:
        return ""
    said = []
    for r in results:
        words = verdict(r)
        if words.endswith(" better"):
            winner = words.removesuffix(" better")
            loser = r.b if winner == r.a else r.a
            said.append(f"{winner} beats {loser} on {NAMES[r.metric]} (p_holm {r.p_holm:.2g})")
    head = (
        f"Across {results[0].n} users (stored reclens fidelity results, paired, Holm over "
        f"{len(results)} comparisons): "
    )
    if not said:
        return head + "no explainer differs significantly from SPINRec."
    return head + "; ".join(said) + "; no other difference is significant."


def evidence_of(per_user: pl.DataFrame | None) -> str:
    """:func:`evidence` of a stored table, or "" when there is none."""
    return "" if per_user is None else evidence(per_user)


def format_comparisons(
    results: list[Comparison], coincide: list[tuple[str, str]], model: str
) -> str:
    """A text table: explainer, metric, diff (explainer - spinrec) [95% CI], p_t, p_holm,
    verdict; then a line per pair of coinciding explainers."""
    if not results:
        return ""
    headers = ["spinrec", "vs", "metric", "diff", "95% CI", "p_t", "p_holm", "verdict"]
    rows = [
        [
            r.a,
            r.b,
            r.metric,
            f"{r.diff:+.5f}",
            f"[{r.ci95[0]:+.5f}, {r.ci95[1]:+.5f}]",
            f"{r.p_t:.2g}",
            f"{r.p_holm:.2g}",
            verdict(r),
        ]
        for r in results
    ]
    lines = [
        f"model {model}: each explainer against SPINRec over the same {results[0].n} users, "
        "only on metrics the SPINRec row was not selected on (spinrec: deletion AUC, so not "
        "DEL, POS@K, CDCG; spinrec_ins: insertion AUC; spinrec_single: no selection); "
        f"diff = explainer - spinrec, {CI} bootstrap CI, paired t-test, "
        f"{results[0].correction}; a winner only where p_holm < {ALPHA}",
        *aligned(headers, rows, left=len(headers), strip=True),
    ]
    for a, b in coincide:
        lines.append(
            f"note: {b} gives the same per-user results as {a} on every metric for this model "
            f"(shown once, as {a})"
        )
    return "\n".join(lines)
