"""``reclens train``: JSON lines on stdout, a leaderboard, one-line errors."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from app.cli import main
from engine import pipeline
from engine.runs import BEYOND_METRICS, BEYOND_PER_USER, list_runs, load_run, read_manifest

SMALL = [
    "--dataset",
    "synthetic",
    "--data-option",
    "n_users=120",
    "--data-option",
    "n_items=80",
    "--data-option",
    "n_interactions=2000",
]
REQUIRED_METRICS = (
    "recall@10",
    "ndcg@10",
    "mrr@10",
    "hit@10",
    "precision@10",
    "map@10",
    "recall@20",
    "ndcg@20",
)


@pytest.fixture(autouse=True)
def fresh_cache() -> None:
    pipeline.clear_cache()


def test_json_lines_have_the_required_keys(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code = main(["train", *SMALL, "--model", "pop,ease,mf", "--epochs", "2", "--seed", "1",
                 "--device", "cpu", "--out", str(tmp_path), "--json"])  # fmt: skip
    out, err = capsys.readouterr()
    assert code == 0
    assert "mf: 2 epochs" in err  # progress goes to stderr (one line per model off a terminal)
    lines = out.strip().splitlines()
    assert len(lines) == 3  # nothing but one JSON object per model on stdout
    rows = [json.loads(line) for line in lines]
    assert [r["model"] for r in rows] == ["pop", "ease", "mf"]
    for row in rows:
        assert row["dataset"] == "synthetic" and row["seed"] == 1
        assert set(REQUIRED_METRICS) <= set(row["metrics"])
        assert all(0.0 <= row["metrics"][m] <= 1.0 for m in REQUIRED_METRICS)
        assert row["seconds"]["total"] >= row["seconds"]["fit"] > 0.0
        assert Path(row["run_dir"]).is_dir()
        manifest = read_manifest(row["run_dir"])  # beyond-accuracy metrics stored and listed
        assert {BEYOND_METRICS, BEYOND_PER_USER} <= set(manifest)
    assert {s.model for s in list_runs(tmp_path)} == {"pop", "ease", "mf"}
    mf = load_run(rows[2]["run_dir"])
    assert mf.config.train["epochs"] == 2 and mf.config.split.seed == 1
    assert mf.metrics["test"]["ndcg@10"] == pytest.approx(rows[2]["metrics"]["ndcg@10"])


def test_leaderboard_from_a_csv_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    rng = np.random.default_rng(0)
    rows = ["user_id,item_id,rating,timestamp"]
    for u in range(50):
        for i in rng.choice(30, size=8, replace=False):
            rows.append(f"{u},{i},{int(rng.integers(1, 6))},{u * 100 + i}")
    csv = tmp_path / "ratings.csv"
    csv.write_text("\n".join(rows) + "\n")
    code = main(["train", "--dataset", str(csv), "--model", "pop,itemknn", "--no-save",
                 "--threshold", "2", "--device", "cpu"])  # fmt: skip
    out, _ = capsys.readouterr()
    assert code == 0
    header, rule, *body = out.splitlines()
    assert header.split()[:3] == ["model", "recall@10", "ndcg@10"]
    assert header.split()[-4:] == ["fit", "s", "total", "s"]
    assert set(rule) <= {"-", " "}
    assert {body[0].split()[0], body[1].split()[0]} == {"pop", "itemknn"}
    assert "dataset ratings" in out


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--model", "nope"], "unknown model 'nope'"),
        (["--model", "pop", "--data-option", "n_users"], "expected KEY=VALUE"),
        (["--model", "pop", "--data-option", "colour=1"], "synthetic"),
        (["--model", "pop", "--device", "tpu"], "device"),
    ],
)
def test_mistakes_are_one_line_errors(
    args: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    code = main(["train", *SMALL, "--no-save", *args])
    out, err = capsys.readouterr()
    assert code == 2 and out == ""
    assert err.startswith("reclens: error:") and message in err
    assert len(err.strip().splitlines()) == 1
