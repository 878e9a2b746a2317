"""``reclens fidelity`` end to end on a small synthetic dataset."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import polars as pl
import pytest

from app.cli import main
from engine.runs import read_manifest
from explainers.batch import REPORTED, mean_ci95
from explainers.fidelity import METRICS

DATA = [
    "--dataset",
    "synthetic",
    "--data-option",
    "n_users=120",
    "--data-option",
    "n_items=80",
    "--data-option",
    "n_interactions=2000",
]


def run_cli(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    code = main(["fidelity", *DATA, *args])
    out, err = capsys.readouterr()
    return code, out, err


def test_json_lines_parquet_and_run_reuse(tmp_path: Path, capsys, monkeypatch):
    monkeypatch.setenv("RECLENS_HOME", str(tmp_path / "home"))
    runs = tmp_path / "runs"
    common = ["--model", "ease", "--users", "4", "--runs", str(runs), "--device", "cpu"]
    code, out, _ = run_cli(
        capsys, *common, "--explainers", "spinrec,random,cosine", "--kappa", "4", "--json"
    )
    assert code == 0
    every = [json.loads(line) for line in out.strip().splitlines()]
    lines = [r for r in every if r.get("kind") != "comparison"]
    comparisons = [r for r in every if r.get("kind") == "comparison"]
    assert {(c["a"], c["b"]) for c in comparisons} == {("spinrec", "cosine"), ("spinrec", "random")}
    assert all(c["n_users"] == 4 and len(c["ci95"]) == 2 and "verdict" in c for c in comparisons)
    assert [r["explainer"] for r in lines] == [
        "spinrec",
        "spinrec_best_of_kappa",
        "cosine",
        "random",
    ]
    for r in lines:
        assert r["model"] == "ease" and r["n_users"] == 4 and r["ms_per_explanation"] >= 0
        assert set(r["metrics"]) == set(METRICS)
        for stat in r["metrics"].values():
            assert set(stat) == {"mean", "ci95"}
    best = {r["explainer"]: r["metrics"] for r in lines}
    # the best of kappa maps is never worse than the fixed choice, on any metric
    assert (
        best["spinrec_best_of_kappa"]["pos@10_auc"]["mean"] <= best["spinrec"]["pos@10_auc"]["mean"]
    )
    assert best["spinrec_best_of_kappa"]["ins_auc"]["mean"] >= best["spinrec"]["ins_auc"]["mean"]
    assert best["spinrec_best_of_kappa"]["del_auc"]["mean"] == pytest.approx(
        best["spinrec"]["del_auc"]["mean"]
    )  # the fixed criterion is the deletion AUC
    run_dirs = [p for p in (runs / "synthetic").iterdir() if not p.name.startswith(".")]
    assert len(run_dirs) == 1
    files = list((run_dirs[0] / "fidelity").glob("*.parquet"))
    assert len(files) == 1
    assert f"fidelity/{files[0].name}" in read_manifest(run_dirs[0])
    frame = pl.read_parquet(files[0])
    assert frame.height == 4 * 4 and set(METRICS) <= set(frame.columns)
    spin = frame.filter(pl.col("explainer") == "spinrec")
    mean, _ = mean_ci95(spin["del_auc"].to_numpy())
    assert mean == pytest.approx(best["spinrec"]["del_auc"]["mean"])

    # the second call reuses the run, writes a table and the requested Parquet file
    out_file = tmp_path / "all.parquet"
    code, out, _ = run_cli(
        capsys, *common, "--explainers", "leave_one_out", "--out", str(out_file), "--quiet"
    )
    assert code == 0
    assert "leave_one_out" in out and "del_auc" in out
    assert len([p for p in (runs / "synthetic").iterdir() if not p.name.startswith(".")]) == 1
    assert pl.read_parquet(out_file)["explainer"].to_list() == ["leave_one_out"] * 4


def test_bad_arguments_are_one_line_errors(tmp_path: Path, capsys, monkeypatch):
    monkeypatch.setenv("RECLENS_HOME", str(tmp_path / "home"))
    code, _, err = run_cli(capsys, "--model", "ease", "--explainers", "shapley", "--users", "2")
    assert code == 2 and "unknown explainer 'shapley'" in err and len(err.strip().splitlines()) == 1
    code, _, err = run_cli(capsys, "--model", "nosuch", "--users", "2")
    assert code == 2 and "unknown model" in err
    code, _, err = run_cli(capsys, "--model", "ease", "--users", "0")
    assert code == 2 and "--users" in err


def test_mean_ci95():
    mean, ci = mean_ci95(np.array([1.0, 2.0, 3.0, 4.0]))
    assert mean == pytest.approx(2.5)
    # t(0.975, 3) = 3.1824; sd = 1.2910; half-width = t * sd / 2
    assert ci == pytest.approx(3.182446 * 1.290994 / 2, rel=1e-5)
    assert np.isnan(mean_ci95(np.array([1.0]))[1])
    assert REPORTED[0] == "spinrec" and REPORTED[1] == "spinrec_best_of_kappa"
