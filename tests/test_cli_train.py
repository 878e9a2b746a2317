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
    code = main(["train", *SMALL, "--model", "pop,ease,fism", "--epochs", "2", "--seed", "1",
                 "--device", "cpu", "--out", str(tmp_path), "--json"])  # fmt: skip
    out, err = capsys.readouterr()
    assert code == 0
    assert "fism: 2 epochs" in err  # progress goes to stderr (one line per model off a terminal)
    lines = out.strip().splitlines()
    assert len(lines) == 3  # nothing but one JSON object per model on stdout
    rows = [json.loads(line) for line in lines]
    assert [r["model"] for r in rows] == ["pop", "ease", "fism"]
    for row in rows:
        assert row["dataset"] == "synthetic" and row["seed"] == 1
        assert set(REQUIRED_METRICS) <= set(row["metrics"])
        assert all(0.0 <= row["metrics"][m] <= 1.0 for m in REQUIRED_METRICS)
        assert row["seconds"]["total"] >= row["seconds"]["fit"] > 0.0
        assert Path(row["run_dir"]).is_dir()
        manifest = read_manifest(row["run_dir"])  # beyond-accuracy metrics stored and listed
        assert {BEYOND_METRICS, BEYOND_PER_USER} <= set(manifest)
    assert {s.model for s in list_runs(tmp_path)} == {"pop", "ease", "fism"}
    fism = load_run(rows[2]["run_dir"])
    assert fism.config.train["epochs"] == 2 and fism.config.split.seed == 1
    assert fism.metrics["test"]["ndcg@10"] == pytest.approx(rows[2]["metrics"]["ndcg@10"])


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
        (["--model", "ease,mf"], "'mf' is retired: it was a history-encoder (FISM-style) model"),
        (["--model", "neumf"], "now 'fism-neumf'; for the classic BPR matrix factorisation use"),
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


def test_a_seed_sweep_groups_each_model_over_its_seeds(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = ["train", *SMALL, "--model", "pop,ease", "--seeds", "0-2", "--device", "cpu",
            "--out", str(tmp_path), "--json", "--quiet"]  # fmt: skip
    assert main(argv) == 0
    lines = [json.loads(line) for line in capsys.readouterr().out.strip().splitlines()]
    runs, groups = lines[:6], lines[6:]
    assert [(r["model"], r["seed"]) for r in runs] == [
        (m, s) for m in ("pop", "ease") for s in (0, 1, 2)
    ]
    assert [g["model"] for g in groups] == ["pop", "ease"]
    for group in groups:
        values = [r["metrics"]["ndcg@10"] for r in runs if r["model"] == group["model"]]
        stat = group["metrics"]["ndcg@10"]
        assert stat["values"] == values and stat["mean"] == pytest.approx(np.mean(values))
        half = 4.302653 * np.std(values, ddof=1) / np.sqrt(3)  # t(0.975, 2 df)
        assert stat["ci95"] == pytest.approx(half, rel=1e-5)
    assert len(list_runs(tmp_path)) == 6


def test_a_seed_sweep_on_worker_processes_gives_the_same_metrics(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    base = ["train", *SMALL, "--model", "ease", "--seeds", "0,1", "--device", "cpu",
            "--no-save", "--json", "--quiet"]  # fmt: skip
    assert main(base) == 0
    here = [json.loads(x) for x in capsys.readouterr().out.strip().splitlines()]
    assert main([*base, "--workers", "2"]) == 0
    pooled = [json.loads(x) for x in capsys.readouterr().out.strip().splitlines()]
    assert [r["metrics"] for r in pooled[:2]] == [r["metrics"] for r in here[:2]]


@pytest.mark.parametrize("text", ["0,x", "3-1x", ","])
def test_bad_seed_lists_are_one_line_errors(text: str, capsys) -> None:
    with pytest.raises(SystemExit) as info:
        main(["train", *SMALL, "--model", "pop", "--seeds", text])
    assert info.value.code == 2
    assert "--seeds" in capsys.readouterr().err
