"""``reclens metrics`` and :func:`engine.beyond.run_metrics` on real (small) saved runs."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import polars as pl
import pytest

from app.cli import main
from engine.beyond import recommendation_lists, run_metrics, user_metrics
from engine.catalogue import catalogue_values
from engine.runs import BEYOND_METRICS, BEYOND_PER_USER, load_run, read_manifest
from engine.session import OpenRun

SYNTHETIC = {"n_users": 150, "n_items": 120, "n_interactions": 3000, "seed": 3}
REQUIRED_USER = ("ild_genre", "novelty", "unexpectedness", "arp")
REQUIRED_CATALOGUE = (
    "coverage",
    "gini",
    "gini_corrected",
    "entropy_corrected",
    "jain_corrected",
    "personalization",
)


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    from engine.pipeline import train_run

    root = tmp_path_factory.mktemp("runs")
    out = {}
    for model in ("pop", "itemknn"):
        result = train_run("synthetic", model, load_options=SYNTHETIC, out=root, device="cpu")
        assert result.run_dir is not None
        out[model] = result.run_dir
    return out


def _json_run(capsys: pytest.CaptureFixture[str], *argv: str) -> dict:
    assert main(["metrics", *argv, "--json"]) == 0
    return json.loads(capsys.readouterr().out)


def test_training_stores_the_metrics_in_the_manifest(runs: dict[str, Path]) -> None:
    for run in runs.values():
        manifest = read_manifest(run)
        assert {BEYOND_METRICS, BEYOND_PER_USER} <= set(manifest)
        stored = OpenRun.open(run).stored_beyond()
        assert stored is not None and stored["k"] == 10


def test_json_output_has_both_tables(runs: dict[str, Path], capsys) -> None:
    run = runs["itemknn"]
    before = (run / BEYOND_METRICS).read_bytes()
    got = _json_run(capsys, "--run", str(run), "--no-save", "--k", "7")
    assert (run / BEYOND_METRICS).read_bytes() == before
    assert got["k"] == 7
    for name in REQUIRED_USER:
        assert isinstance(got["per_user_mean"][name], float)
    for name in REQUIRED_CATALOGUE:
        assert isinstance(got["catalogue"][name], float)
    assert 0.0 <= got["catalogue"]["gini_corrected"] <= 1.0
    assert 0.0 < got["catalogue"]["coverage"] <= 1.0
    assert "groups" not in got
    assert got["info"]["embedding_kind"] == "item-item"
    assert "ild_embedding" in got["per_user_mean"]


def test_metrics_are_stored_with_the_run(runs: dict[str, Path], capsys) -> None:
    run = runs["itemknn"]
    got = _json_run(capsys, "--run", str(run), "--k", "5")
    stored = OpenRun.open(run).stored_beyond()
    assert stored is not None and stored["k"] == 5
    assert stored["catalogue"] == got["catalogue"]
    per_user = pl.read_parquet(run / BEYOND_PER_USER)
    assert per_user.columns[:2] == ["user", "raw_id"]
    recs = load_run(run).recommendations()
    assert per_user.height == recs["user"].n_unique()
    assert per_user["novelty"].mean() == pytest.approx(got["per_user_mean"]["novelty"])


def test_run_metrics_matches_the_array_interface(runs: dict[str, Path]) -> None:
    opened = OpenRun.open(runs["pop"])
    split = opened.split
    result = run_metrics(opened.run, opened.dataset, split, k=10)
    recs, users = recommendation_lists(opened.run.recommendations(), 10)
    direct = user_metrics(recs, users, split.train, split.test)
    assert result.per_user["novelty"].to_list() == pytest.approx(direct["novelty"].to_list())
    assert result.per_user["arp"].to_list() == pytest.approx(direct["arp"].to_list())
    direct_catalogue = catalogue_values(recs, users, split.train, split.test)
    assert result.catalogue_dict() == pytest.approx(direct_catalogue, nan_ok=True)
    assert "ild_embedding" not in result.per_user.columns  # pop's vectors are just train columns
    assert np.isfinite(result.per_user_mean["calibration_kl"])


def test_group_by_reports_gaps(runs: dict[str, Path], capsys) -> None:
    got = _json_run(capsys, "--run", str(runs["itemknn"]), "--group-by", "community", "--no-save")
    groups = got["groups"]
    assert groups["by"] == "community"
    assert len(groups["means"]) >= 2
    assert sum(groups["n_users"].values()) == got["info"]["n_users"]
    assert groups["max_gap"]["novelty"] >= groups["mad"]["novelty"] >= 0.0


def test_text_output_prints_tables(runs: dict[str, Path], capsys) -> None:
    argv = ["metrics", "--run", str(runs["pop"]), "--group-by", "activity", "--no-save"]
    assert main(argv) == 0
    out = capsys.readouterr().out
    for text in ("Per user", "Catalogue", "gini_corrected", "Groups by activity", "max_gap", "Q4"):
        assert text in out


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--k", "1000"], "fewer than k=1000"),
        (["--group-by", "shoe_size"], "unknown user grouping 'shoe_size'"),
        (["--k", "0"], "--k must be at least 1"),
    ],
)
def test_user_mistakes_are_one_line_errors(
    runs: dict[str, Path], capsys, extra: list[str], message: str
) -> None:
    assert main(["metrics", "--run", str(runs["pop"]), "--no-save", *extra]) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and "\n" not in err


def test_missing_run_folder(tmp_path: Path, capsys) -> None:
    assert main(["metrics", "--run", str(tmp_path / "nope")]) == 2
    assert "no such run folder" in capsys.readouterr().err
