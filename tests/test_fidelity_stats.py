"""Explainers against SPINRec: paired, Holm-corrected, coinciding explainers shown once."""

from __future__ import annotations

import numpy as np
import polars as pl
import pytest
import scipy.stats

from app.fidelity_stats import coinciding, compare_to_spinrec, format_comparisons, verdict
from explainers.fidelity import METRICS


def table(values: dict[str, np.ndarray]) -> pl.DataFrame:
    """A per-user fidelity table: every metric of an explainer equals its given values."""
    frames = []
    for name, v in values.items():
        frames.append(
            pl.DataFrame(
                {
                    "explainer": name,
                    "user": np.arange(len(v)),
                    **{m: v.astype(np.float64) for m in METRICS},
                }
            )  # fmt: skip
        )
    return pl.concat(frames)


@pytest.fixture()
def per_user() -> pl.DataFrame:
    rng = np.random.default_rng(0)
    spin = rng.uniform(0.2, 0.4, 200)
    ig = spin + rng.normal(0, 0.05, spin.shape[0])  # no real difference
    return table(
        {
            "spinrec": spin,
            "spinrec_best_of_kappa": spin - 0.01,
            "spinrec_single": spin + 0.001,
            "ig_zero": ig,
            "grad_x_input": ig.copy(),  # the same explainer under another name
            "random": spin + 0.2 + rng.normal(0, 0.05, spin.shape[0]),  # clearly higher
        }
    )


def test_coinciding_explainers_are_found(per_user: pl.DataFrame) -> None:
    assert coinciding(per_user) == [("ig_zero", "grad_x_input")]


def test_comparisons_are_paired_corrected_and_never_on_the_selection_metric(
    per_user: pl.DataFrame,
) -> None:
    metrics = ("del_auc", "ins_auc")
    results = compare_to_spinrec(per_user, metrics)
    # spinrec is selected on the deletion AUC: compared on INS only; spinrec_single on both
    assert [(r.a, r.b, r.metric) for r in results] == [
        ("spinrec", "ig_zero", "ins_auc"), ("spinrec", "random", "ins_auc"),
        ("spinrec_single", "ig_zero", "del_auc"), ("spinrec_single", "random", "del_auc"),
        ("spinrec_single", "ig_zero", "ins_auc"), ("spinrec_single", "random", "ins_auc"),
    ]  # fmt: skip
    single = per_user.filter(pl.col("explainer") == "spinrec_single")["del_auc"].to_numpy()
    rand = per_user.filter(pl.col("explainer") == "random")["del_auc"].to_numpy()
    by = {(r.a, r.b, r.metric): r for r in results}
    got = by["spinrec_single", "random", "del_auc"]
    assert got.p_t == pytest.approx(scipy.stats.ttest_rel(rand, single).pvalue)
    assert all(r.family == 6 for r in results)
    raw = sorted(r.p_t for r in results)
    assert min(r.p_holm for r in results) == pytest.approx(min(1.0, 6 * raw[0]))
    assert verdict(got) == "spinrec_single better"  # del: lower is better
    assert verdict(by["spinrec", "random", "ins_auc"]) == "random better"  # ins: higher better
    assert verdict(by["spinrec", "ig_zero", "ins_auc"]) == "no significant difference"
    text = format_comparisons(results, coinciding(per_user), "mf")
    assert "grad_x_input gives the same per-user results as ig_zero" in text
    assert "over the same 200 users" in text and "not selected on" in text


def test_evidence_names_only_significant_results(per_user: pl.DataFrame) -> None:
    from app.fidelity_stats import evidence

    text = evidence(per_user)
    assert text.startswith("Across 200 users (stored reclens fidelity results, paired, Holm")
    assert "spinrec_single beats random on deletion AUC" in text  # lower is better
    assert "random beats spinrec on insertion AUC" in text  # higher is better
    assert "spinrec beats random on deletion AUC" not in text  # its own selection metric
    assert "ig_zero" not in text  # no real difference: not named
    assert "grad_x_input" not in text


def test_stored_fidelity_is_summarised_for_the_dashboard(tmp_path, capsys) -> None:
    from app.cli import main
    from app.fidelity_stats import evidence_of
    from engine.session import OpenRun

    argv = ["fidelity", "--dataset", "synthetic", "--model", "ease", "--explainers",
            "spinrec,random", "--users", "8", "--kappa", "4", "--steps", "4",
            "--runs", str(tmp_path), "--quiet",
            "--data-option=n_users=100", "--data-option=n_items=60",
            "--data-option=n_interactions=1500"]  # fmt: skip
    assert main(argv) == 0
    capsys.readouterr()
    run = next(p for p in (tmp_path / "synthetic").iterdir() if not p.name.startswith("."))
    stored = OpenRun.open(run).stored_fidelity()
    assert stored is not None and stored["user"].n_unique() == 8
    assert evidence_of(stored).startswith("Across 8 users")
    assert evidence_of(None) == ""
