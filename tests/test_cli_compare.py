"""``reclens compare`` on small saved runs: the table, the JSON, and the refusals."""

from __future__ import annotations

import dataclasses
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import scipy.stats

from app.cli import main
from data.synthetic import generate
from engine.runs import PER_USER, read_table

SYNTHETIC = {"n_users": 150, "n_items": 120, "n_interactions": 3000, "seed": 3}


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """pop, itemknn, ease on one synthetic dataset; pop on a renamed copy, on another split
    seed and on fewer users."""
    from engine.pipeline import train_run

    root = tmp_path_factory.mktemp("runs")
    out = {}
    for model in ("pop", "itemknn", "ease"):
        out[model] = train_run("synthetic", model, load_options=SYNTHETIC, out=root, device="cpu")
    renamed = dataclasses.replace(generate(**SYNTHETIC), name="synthetic-copy")
    out["other_dataset"] = train_run(renamed, "pop", out=root, device="cpu")
    out["other_seed"] = train_run(
        "synthetic", "pop", seed=1, load_options=SYNTHETIC, out=root, device="cpu"
    )
    fewer = {**SYNTHETIC, "n_users": 120}
    out["fewer_users"] = train_run("synthetic", "pop", load_options=fewer, out=root, device="cpu")
    return {name: Path(result.run_dir) for name, result in out.items()}


def _cli(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(["compare", *argv])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def _paths(runs: dict[str, Path], *names: str) -> str:
    return ",".join(str(runs[n]) for n in names)


def test_json_matches_scipy_on_the_per_user_columns(runs: dict[str, Path], capsys) -> None:
    code, out, _ = _cli(capsys, "--runs", _paths(runs, "pop", "itemknn", "ease"), "--json")
    assert code == 0
    got = json.loads(out)
    assert [(g["a"], g["b"]) for g in got] == [
        (runs["pop"].name, runs["itemknn"].name),
        (runs["pop"].name, runs["ease"].name),
    ]
    base = read_table(runs["pop"], PER_USER).sort("user")["ndcg@10"].to_numpy()
    for row, name in zip(got, ("itemknn", "ease"), strict=True):
        other = read_table(runs[name], PER_USER).sort("user")["ndcg@10"].to_numpy()
        assert row["metric"] == "ndcg@10" and row["n_users"] == len(base) == 150
        assert row["mean_a"] == pytest.approx(base.mean())
        assert row["diff"] == pytest.approx(row["mean_b"] - row["mean_a"])
        assert row["p_t"] == pytest.approx(scipy.stats.ttest_rel(other, base).pvalue)
        wilcoxon = scipy.stats.wilcoxon(other - base, zero_method="pratt").pvalue
        assert row["p_wilcoxon"] == pytest.approx(wilcoxon)
        assert row["ci95"][0] <= row["diff"] <= row["ci95"][1]
        assert (row["test"], row["ci_method"], row["zero_method"]) == ("t", "BCa", "pratt")
    p = [row["p_t"] for row in got]
    low = min(1.0, 2 * min(p))  # Holm over two: 2 p_min, then max(that, p_max)
    holm = [low if x == min(p) else max(low, x) for x in p]
    assert [row["p_holm"] for row in got] == pytest.approx(holm)
    assert all("over 2 comparisons" in row["correction"] for row in got)


def test_text_table_names_n_tests_interval_and_correction(runs: dict[str, Path], capsys) -> None:
    names = ",".join(f"synthetic/{runs[n].name}" for n in ("pop", "itemknn", "ease"))
    root = str(runs["pop"].parents[1])
    argv = ["--runs", names, "--runs-dir", root, "--baseline", runs["ease"].name]
    code, out, _ = _cli(capsys, *argv, "--ci", "percentile", "--metric", "recall@20")
    assert code == 0
    lines = out.splitlines()
    assert lines[0].startswith("recall@20 on synthetic: 150 users")
    assert "percentile bootstrap" in out and "2000 resamples" in out
    assert "ttest_rel" in out and "zero_method=pratt" in out
    assert "Holm and Benjamini-Hochberg over 2 comparisons of p_t" in out
    header = next(line for line in lines if line.startswith("a "))
    assert header.split() == [
        "a", "b", "mean_a", "mean_b", "diff", "ci95", "p_t", "p_wilcoxon", "p_holm", "p_bh", "d_z",
    ]  # fmt: skip
    rows = lines[lines.index(header) + 2 :]
    assert [r.split()[:2] for r in rows] == [
        [runs["ease"].name, runs["pop"].name],
        [runs["ease"].name, runs["itemknn"].name],
    ]


def test_all_pairs(runs: dict[str, Path], capsys) -> None:
    argv = ["--runs", _paths(runs, "pop", "itemknn", "ease"), "--all-pairs", "--json"]
    code, out, _ = _cli(capsys, *argv, "--test", "wilcoxon", "--n-boot", "200")
    assert code == 0
    got = json.loads(out)
    assert len(got) == 3 and all(row["test"] == "wilcoxon" for row in got)
    p = np.array([row["p_wilcoxon"] for row in got])
    bh = scipy.stats.false_discovery_control(p, method="bh")
    assert [row["p_bh"] for row in got] == pytest.approx(list(bh))


@pytest.mark.parametrize(
    ("names", "extra", "message"),
    [
        (("pop", "other_dataset"), [], "different datasets"),
        (("pop", "fewer_users"), [], "trained on different splits of synthetic"),
        (("pop", "other_seed"), [], "(split seed 1, random)"),
        (("pop", "itemknn"), ["--metric", "ndcg@5"], "unknown metric 'ndcg@5': available"),
        (("pop",), [], "at least two runs"),
        (("pop", "pop"), [], "listed twice"),
        (("pop", "itemknn"), ["--baseline", "ease"], "no run 'ease'"),
        (("pop", "itemknn"), ["--n-boot", "0"], "n_boot >= 1"),
    ],
)
def test_refusals_are_one_line_errors(
    runs: dict[str, Path], capsys, names: tuple[str, ...], extra: list[str], message: str
) -> None:
    argv = ["--runs", _paths(runs, *names), "--runs-dir", "/nonexistent", *extra]
    code, out, err = _cli(capsys, *argv)
    assert code == 2 and out == ""
    assert err.startswith("reclens: error: ") and err.count("\n") == 1
    assert message in err


def test_identical_runs_report_p_one(runs: dict[str, Path], tmp_path: Path, capsys) -> None:
    twin = tmp_path / "twin"
    shutil.copytree(runs["pop"], twin)
    code, out, _ = _cli(capsys, "--runs", f"{runs['pop']},{twin}")
    assert code == 0
    notes = [line for line in out.splitlines() if line.startswith("note:")]
    assert len(notes) == 1 and "twin: every user's difference is zero" in notes[0]
