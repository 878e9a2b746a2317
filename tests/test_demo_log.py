"""``reclens demo`` off a terminal: progress lines, the time-budget notice, the leaderboard."""

from __future__ import annotations

import io
import socket
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
import pytest

from app import cli_serve
from app.cli import main
from app.train_log import EpochLog, budget_notice, finished_line, leaderboard
from engine.pipeline import RunResult
from engine.train import EpochReport


class Clock:
    """A settable time source."""

    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_epoch_log_writes_a_line_every_interval_and_at_the_last_epoch() -> None:
    out, clock = io.StringIO(), Clock()
    log = EpochLog("fism", "ndcg@10", stream=out, interval=5.0, clock=clock)
    for epoch in range(1, 11):
        clock.now = 2.0 * epoch
        valid = 0.1 + 0.01 * epoch if epoch % 2 == 0 else None
        log(EpochReport(epoch, 0.5, valid, clock.now, epochs=10, best=valid is not None))
    lines = out.getvalue().splitlines()
    assert [line.split(",")[0] for line in lines] == [
        "fism: epoch 1/10",  # the first
        "fism: epoch 4/10",  # 5 s after it
        "fism: epoch 7/10",
        "fism: epoch 10/10",  # the last
    ]
    assert (
        lines[1]
        == "fism: epoch 4/10, loss 0.5000, valid ndcg@10 0.1400 (best 0.1400 at epoch 4), 8.0 s"
    )
    log = EpochLog("ease", "recall@20", stream=out, clock=clock)
    log(EpochReport(0, None, 0.25, 1.5, epochs=0, best=True))
    assert (
        out.getvalue().splitlines()[-1]
        == "ease: fitted in closed form, valid recall@20 0.2500, 1.5 s"
    )


def result(stop: str, valid: list[float | None], best_epoch: int, **fields: Any) -> RunResult:
    history = [EpochReport(e, 0.3, v, e, epochs=30) for e, v in enumerate(valid, start=1)]
    kept = [v for v in valid if v is not None]
    return RunResult(
        model="fism",
        dataset="synthetic",
        seed=0,
        metrics={"ndcg@10": 0.25},
        per_user=pl.DataFrame(),
        valid={},
        seconds={"total": 20.0, "save": 1.0, "fit": 15.0},
        run_dir=None,
        history=history,
        best_epoch=best_epoch,
        epochs_run=len(valid),
        stop=stop,
        planned_epochs=30,
        budget_s=15.0,
        valid_metric="ndcg@10",
        best_valid=max(kept) if kept else None,
        **fields,
    )


def test_budget_notice_says_where_training_stopped_and_what_more_epochs_may_give() -> None:
    rising = result("budget", [None, 0.18, None, 0.20, None, 0.21], best_epoch=6)
    assert budget_notice(rising, "synthetic") == (
        "fism: time budget 15 s reached at epoch 6 of 30; training stopped there; validation "
        "ndcg@10 0.2100 at epoch 6, still its best, up 0.0100 since epoch 4: more epochs may "
        "improve it; run `reclens train --dataset synthetic --model fism` to train without a "
        "budget"
    )
    peaked = result("budget", [0.22, 0.20, 0.19], best_epoch=1)
    assert "best at epoch 1 (0.2200, the weights kept) and 0.1900 at epoch 3: it may have" in (
        budget_notice(peaked, "ml-100k") or ""
    )
    no_valid = result("budget", [None, None], best_epoch=2)
    assert "no validation users" in (budget_notice(no_valid, "synthetic") or "")
    assert budget_notice(result("patience", [0.2, 0.1], best_epoch=1), "synthetic") is None
    assert finished_line(result("patience", [0.2, 0.1], best_epoch=1)) == (
        "fism: stopped by patience at epoch 2 of 30, kept epoch 1; test ndcg@10 0.2500, 21.0 s"
    )


def test_leaderboard_names_dataset_model_metrics_epochs_and_seconds() -> None:
    rows = [
        {**result("budget", [0.2] * 6, 6).summary(), "metrics": {"ndcg@10": 0.2, "recall@10": 0.3}},
        {
            **result("closed-form", [], 0).summary(),
            "model": "ease",
            "metrics": {"ndcg@10": 0.3},
        },
    ]
    header, rule, first, second = leaderboard(rows).splitlines()
    assert header.split() == [
        "dataset", "model", "recall@10", "ndcg@10", "recall@20", "ndcg@20", "epochs", "fit",
        "s", "total", "s",
    ]  # fmt: skip
    assert set(rule) <= {"-", " "}
    assert first.split()[:2] == ["synthetic", "ease"] and "closed form" in first
    assert second.split()[:4] == ["synthetic", "fism", "0.3000", "0.2000"]
    assert "6/30 (budget)" in second and second.split()[-2:] == ["15.0", "20.0"]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_demo_off_a_terminal_logs_progress_the_budget_and_a_leaderboard(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The demo's whole path up to serving, with two of its models, a tiny budget and a small
    interactions file (the demo's synthetic data takes longer to train on)."""
    rng = np.random.default_rng(0)
    users, items = np.nonzero(rng.random((150, 120)) < 0.15)
    source = tmp_path / "small.csv"
    pl.DataFrame({"user_id": users, "item_id": items}).write_csv(source)
    served: list[Any] = []
    monkeypatch.setattr(cli_serve, "_serve", lambda service, args: served.append(service))
    monkeypatch.setattr("app.dashboard.engine_service.DEFAULT_MODELS", ("ease", "multvae"))
    runs = tmp_path / "runs"
    args = ["demo", "--runs", str(runs), "--dataset", str(source), "--port", str(free_port())]
    assert main([*args, "--budget", "0.05", "--projection", "pca"]) == 0
    out, err = capsys.readouterr()  # capsys's streams are not terminals: no bars
    assert served and "\r" not in err
    lines = err.splitlines()
    assert lines[0].startswith(f"reclens demo: no runs of {source} in {runs} yet: ")
    assert "training ease, multvae (at most 0.05 s of training each)" in lines[0]
    assert any(line.startswith("ease: fitted in closed form, valid ndcg@10 ") for line in lines)
    assert any(line.startswith("multvae: epoch 1/60, loss ") for line in lines)
    notice = [line for line in lines if line.startswith("multvae: time budget 0.05 s reached")]
    assert len(notice) == 1 and "of 60; training stopped there; validation ndcg@10" in notice[0]
    assert f"reclens train --dataset {source} --model multvae" in notice[0]
    header, _rule, *rows = out.strip().splitlines()
    assert header.split()[:4] == ["dataset", "model", "recall@10", "ndcg@10"]
    assert sorted(row.split()[1] for row in rows) == ["ease", "multvae"]
    assert all(row.startswith("small ") for row in rows)

    assert main([*args, "--projection", "pca"]) == 0  # the runs are there now: no training
    out, err = capsys.readouterr()
    assert "2 run(s) of small found" in err and "epoch" not in err
    assert sorted(row.split()[1] for row in out.strip().splitlines()[2:]) == ["ease", "multvae"]
