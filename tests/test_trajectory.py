"""DiffRec trajectories: tables, consistency with scoring and evaluation, the CLI."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import polars as pl
import pytest
import torch

from app.cli import main
from data.errors import ReclensError
from data.splits import Split, split
from data.synthetic import generate
from engine.evaluate import evaluate
from engine.models.diffrec import DiffRec
from engine.train import TrainConfig, fit
from engine.trajectory import Trajectory, trajectory

SYNTHETIC = {"n_users": 150, "n_items": 100, "n_interactions": 3000, "seed": 5}


@pytest.fixture(scope="module")
def trained() -> tuple[DiffRec, Split, np.ndarray]:
    """A small DiffRec trained a few epochs on synthetic data, its split and item coords."""
    ds = generate(**SYNTHETIC)
    parts = split(ds, "random", seed=0)
    torch.manual_seed(0)
    model = DiffRec(ds.n_items, dims=[32])
    fit(model, parts, TrainConfig(**{**DiffRec.default_train, "epochs": 8, "patience": 0}))
    coords = np.random.default_rng(0).normal(size=(ds.n_items, 2))
    return model, parts, coords


def _user_inputs(parts: Split, u: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    history = np.asarray(parts.train[u].todense(), dtype=np.float32).ravel()
    heldout = parts.test[u].indices
    mask = np.asarray(parts.mask("test")[u].todense()).ravel() > 0
    return history, heldout, mask


def test_steps_table_and_last_step_is_the_score(trained) -> None:
    model, parts, coords = trained
    u = int(parts.eval_users("test")[0])
    history, heldout, mask = _user_inputs(parts, u)
    traj = trajectory(model, history, heldout, coords, k=5, top_n=8, mask=mask)
    assert isinstance(traj, Trajectory)
    steps = traj.steps
    assert steps.height == model.steps
    assert steps["t"].to_list() == list(range(model.steps - 1, -1, -1))
    assert steps["step"].to_list() == list(range(model.steps))
    for col in ("recall@5", "ndcg@5", "x", "y", "beta", "alpha_bar", "coef_x0", "coef_xt"):
        assert steps[col].null_count() == 0, col
    assert steps["topk"].list.len().to_list() == [5] * model.steps
    # the last prediction is the model's score for the user
    score = model.eval()(torch.from_numpy(history)[None])[0].detach().numpy()
    np.testing.assert_allclose(traj.predictions[0, -1], score, rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(traj.states[0, -1], score, rtol=1e-6, atol=1e-6)
    # no masked item is ever ranked
    for top in steps["topk"].to_list():
        assert not mask[top].any()
    # the last top K is the model's own top K
    expected_top = np.argsort(-np.where(mask, -np.inf, score), kind="stable")[:5]
    assert steps["topk"].to_list()[-1] == expected_top.tolist()
    # the schedule columns are the model's
    np.testing.assert_allclose(
        steps["alpha_bar"].to_numpy(), model.schedule["alphas_cumprod"][::-1], rtol=1e-12
    )


def test_last_step_metrics_equal_the_evaluation(trained) -> None:
    model, parts, coords = trained
    per_user = evaluate(model, parts, "test", ks=(10,)).per_user
    for u in parts.eval_users("test")[:6]:
        history, heldout, mask = _user_inputs(parts, int(u))
        last = trajectory(model, history, heldout, coords, mask=mask).steps.row(-1, named=True)
        row = per_user.filter(pl.col("user") == int(u)).row(0, named=True)
        assert last["recall@10"] == pytest.approx(row["recall@10"])
        assert last["ndcg@10"] == pytest.approx(row["ndcg@10"])


def test_position_rank_changes_and_item_table(trained) -> None:
    model, parts, coords = trained
    u = int(parts.eval_users("test")[1])
    history, heldout, mask = _user_inputs(parts, u)
    traj = trajectory(model, history, heldout, coords, k=4, top_n=6, mask=mask)
    items = traj.items
    for step in range(model.steps):
        row = traj.steps.row(step, named=True)
        scores = traj.predictions[0, step]
        order = np.argsort(-np.where(mask, -np.inf, scores), kind="stable")[:6]
        w = np.clip(scores[order], 0, None)
        xy = (coords[order] * w[:, None]).sum(0) / w.sum()
        assert (row["x"], row["y"]) == pytest.approx(tuple(xy))
        this = items.filter(pl.col("step") == step)
        rank = dict(zip(this["item"].to_list(), this["rank"].to_list(), strict=True))
        assert [rank[i] for i in row["topk"]] == [1, 2, 3, 4]
        if step == 0:
            assert row["rank_change"] == [None] * 4 and row["n_new"] == 4
        else:
            prev = dict(
                zip(
                    *items.filter(pl.col("step") == step - 1).select("item", "rank"),
                    strict=True,
                )
            )
            assert row["rank_change"] == [prev[i] - rank[i] for i in row["topk"]]
    # every step's top 6 is tracked, held-out flags are right, masked items have no rank
    tracked = set(items["item"].to_list())
    assert items.height == model.steps * len(tracked)
    assert set(items.filter(pl.col("heldout"))["item"].to_list()) <= set(heldout.tolist())
    assert items.filter(pl.col("in_topk"))["rank"].max() <= 4


def test_fan_of_noisy_trajectories(trained) -> None:
    model, parts, coords = trained
    u = int(parts.eval_users("test")[2])
    history, heldout, mask = _user_inputs(parts, u)
    fan = trajectory(
        model, history, heldout, coords, noise_steps=3, seeds=(0, 1, 2), sampling_noise=True
    )
    assert fan.steps["seed"].unique().sort().to_list() == [0, 1, 2]
    assert fan.steps.height == 3 * model.steps
    assert fan.predictions.shape == (3, model.steps, model.n_items)
    assert not np.allclose(fan.states[0, 0], fan.states[1, 0])  # different noise
    assert not np.allclose(fan.states[0, 0], history)  # the history was noised
    again = trajectory(
        model, history, heldout, coords, noise_steps=3, seeds=(1,), sampling_noise=True
    )
    np.testing.assert_array_equal(again.predictions[0], fan.predictions[1])
    # deterministic walks ignore the seed
    plain = trajectory(model, history, heldout, None, seeds=(0, 1))
    np.testing.assert_array_equal(plain.predictions[0], plain.predictions[1])
    assert plain.steps["x"].null_count() == plain.steps.height


def test_to_dict_is_json(trained) -> None:
    model, parts, coords = trained
    history, heldout, mask = _user_inputs(parts, int(parts.eval_users("test")[0]))
    raw = np.array([f"i{j}" for j in range(model.n_items)])
    traj = trajectory(model, history, heldout, coords, mask=mask, item_raw_ids=raw, user="u7")
    out = json.loads(json.dumps(traj.to_dict(), allow_nan=False))
    assert out["user"] == "u7" and len(out["steps"]) == model.steps
    first = out["steps"][0]
    for key in ("t", "recall@10", "ndcg@10", "topk", "x", "y", "topk_index"):
        assert key in first
    assert first["topk"] == [f"i{j}" for j in first["topk_index"]]


def test_bad_inputs(trained) -> None:
    model, parts, coords = trained
    history = np.zeros(model.n_items, dtype=np.float32)
    with pytest.raises(ReclensError, match="noise steps"):
        trajectory(model, history, [], coords, noise_steps=model.steps + 1)
    with pytest.raises(ReclensError, match="coordinates"):
        trajectory(model, history, [], coords[:5])
    with pytest.raises(ReclensError, match="history"):
        trajectory(model, history[:3], [], None)
    # no held-out items: metrics are null, not NaN
    steps = trajectory(model, history, [], None).steps
    assert steps["recall@10"].null_count() == steps.height


# -- runs and the CLI --------------------------------------------------------------------------
@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    from engine.pipeline import train_run

    root = tmp_path_factory.mktemp("runs")
    out = {}
    for model, epochs in (("diffrec", 3), ("pop", None)):
        result = train_run(
            "synthetic",
            model,
            load_options=SYNTHETIC,
            out=root,
            device="cpu",
            epochs=epochs,
            hparams={"dims": [32]} if model == "diffrec" else None,
        )
        assert result.run_dir is not None
        out[model] = result.run_dir
    return out


def test_open_run_trajectory_matches_the_saved_metrics(runs) -> None:
    from engine.session import OpenRun

    opened = OpenRun.open(runs["diffrec"])
    row = opened.run.per_user_metrics().row(0, named=True)
    raw = row["raw_id"]
    traj = opened.trajectory(opened.user_index(raw), map_method="pca")
    last = traj.steps.row(-1, named=True)
    assert last["ndcg@10"] == pytest.approx(row["ndcg@10"], abs=1e-6)
    assert last["recall@10"] == pytest.approx(row["recall@10"], abs=1e-6)
    assert traj.user == str(raw)


def test_cli_json(runs, capsys) -> None:
    argv = ["trajectory", "--run", str(runs["diffrec"]), "--user", "3", "--map", "pca"]
    assert main([*argv, "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["user"] == "3"
    assert len(out["steps"]) == 5
    for step in out["steps"]:
        for key in ("t", "recall@10", "ndcg@10", "topk", "x", "y"):
            assert key in step
        assert len(step["topk"]) == 10 and all(isinstance(i, str) for i in step["topk"])
    assert [s["t"] for s in out["steps"]] == [4, 3, 2, 1, 0]


def test_cli_table_with_seeds(runs, capsys) -> None:
    argv = ["trajectory", "--run", str(runs["diffrec"]), "--user", "3", "--map", "pca"]
    assert main([*argv, "--noise-steps", "2", "--seeds", "0,1"]) == 0
    text = capsys.readouterr().out
    lines = text.strip().splitlines()
    assert "user 3" in lines[0]
    assert lines[1].split()[:4] == ["seed", "step", "t", "recall@10"]
    assert len(lines) == 3 + 2 * 5


def test_cli_errors(runs, capsys) -> None:
    assert main(["trajectory", "--run", str(runs["diffrec"]), "--user", "nobody"]) == 2
    err = capsys.readouterr().err.strip()
    assert "nobody" in err and len(err.splitlines()) == 1
    assert main(["trajectory", "--run", str(runs["pop"]), "--user", "3"]) == 2
    err = capsys.readouterr().err.strip()
    assert "diffrec" in err and "pop" in err and len(err.splitlines()) == 1
    assert main(["trajectory", "--run", str(runs["diffrec"]), "--user", "3", "--seeds", "a"]) == 2
    assert "--seeds" in capsys.readouterr().err


# -- the walk as played: start state, progress, motion -------------------------------------------
def test_start_state_and_progress(trained) -> None:
    model, parts, coords = trained
    u = int(parts.eval_users("test")[0])
    history, heldout, mask = _user_inputs(parts, u)
    plain = trajectory(model, history, heldout, coords, k=5, mask=mask)
    assert plain.start is not None and plain.start.height == 1
    first = plain.start.row(0, named=True)
    assert first["noise_norm"] == 0.0 and first["noise_share"] == 0.0
    # without noise every unmasked item ties in the start state: nothing is ranked
    assert first["recall@5"] is None and first["best_heldout_rank"] is None
    # the start sits at the history's centre on the map
    assert (first["x"], first["y"]) == pytest.approx(tuple(coords[history > 0].mean(0)))
    noised = trajectory(model, history, heldout, coords, k=5, mask=mask, noise_steps=model.steps)
    row = noised.start.row(0, named=True)
    expected = np.linalg.norm(noised.states[0, 0] - history)
    assert row["noise_norm"] == pytest.approx(expected) and row["noise_norm"] > 0
    assert row["noise_share"] == pytest.approx(expected / np.linalg.norm(history))
    assert 1 <= row["best_heldout_rank"] <= int((~mask).sum())
    # progress: position 0 is the start, position s the s-th step's prediction
    prog = noised.progress()
    assert prog["step"].to_list() == list(range(model.steps + 1))
    assert prog["t"].to_list() == [None, *range(model.steps - 1, -1, -1)]
    assert prog["ndcg@5"].to_list()[1:] == noised.steps["ndcg@5"].to_list()
    assert prog["ndcg@5"][0] == row["ndcg@5"]
    scores = noised.scores(0)
    assert scores.shape == (model.steps + 1, model.n_items)
    np.testing.assert_array_equal(scores[0], noised.states[0, 0])
    np.testing.assert_array_equal(scores[1:], noised.predictions[0])
    # the best held-out rank is the best rank of a test item in each step's ranking
    for step in range(model.steps):
        s = np.where(mask, -np.inf, noised.predictions[0, step])
        order = np.argsort(-s, kind="stable")
        ranks = {int(i): r + 1 for r, i in enumerate(order)}
        best = min(ranks[int(i)] for i in heldout)
        assert noised.steps["best_heldout_rank"][step] == best


def test_motion_of_a_static_and_a_moving_walk(trained) -> None:
    from engine.trajectory import motion

    model, parts, coords = trained
    u = int(parts.eval_users("test")[0])
    history, heldout, mask = _user_inputs(parts, u)
    traj = trajectory(
        model, history, heldout, coords, k=5, mask=mask, noise_steps=model.steps, seeds=(0, 1)
    )
    m = motion(traj)
    abar = model.schedule["alphas_cumprod"][model.steps - 1]
    assert m.noise_std == pytest.approx(np.sqrt(1 - abar)) and m.signal == pytest.approx(
        np.sqrt(abar)
    )
    tops = traj.steps.filter(pl.col("seed") == 0)["topk"].to_list()
    assert m.n_entered == len(set(tops[-1]) - set(tops[0]))
    ndcg = traj.steps.filter(pl.col("seed") == 0)["ndcg@5"]
    recall = traj.steps.filter(pl.col("seed") == 0)["recall@5"]
    spread = max(ndcg.max() - ndcg.min(), recall.max() - recall.min())
    assert m.metric_range == pytest.approx(spread)
    assert m.static == (m.n_entered == 0 and spread < 1e-9)
    xy = traj.steps.select("seed", "step", "x", "y").to_pandas()
    widest = max(
        float(np.linalg.norm(g[["x", "y"]].to_numpy()[0] - g[["x", "y"]].to_numpy()[1]))
        for _, g in xy.groupby("step")
    )
    assert m.fan_spread == pytest.approx(widest) and m.fan_spread > 0
    # a walk built so that the top K never changes is static; one whose top K turns over is not
    frozen = Trajectory(
        steps=traj.steps.filter(pl.col("seed") == 0).with_columns(
            pl.lit(tops[0]).alias("topk"),
            pl.lit(float(recall[0])).alias("recall@5"),
            pl.lit(float(ndcg[0])).alias("ndcg@5"),
            pl.lit([0] * len(tops[0])).alias("rank_change"),
        ),
        items=traj.items,
        predictions=traj.predictions[:1],
        states=traj.states[:1],
        seeds=(0,),
        k=5,
        top_n=traj.top_n,
        noise_steps=0,
        sampling_noise=False,
        history=traj.history,
        heldout=traj.heldout,
    )
    still = motion(frozen)
    assert still.static and still.n_entered == 0 and still.metric_range == 0.0
    assert still.noise_std == 0.0 and still.signal == 1.0 and still.fan_spread is None
    others = [i for i in range(model.n_items) if i not in tops[0]][:5]
    turned = Trajectory(
        **{
            **vars(frozen),
            "steps": frozen.steps.with_columns(
                pl.Series("topk", [tops[0]] * (model.steps - 1) + [others])
            ),
        }
    )
    assert motion(turned).n_entered == 5 and not motion(turned).static


def test_noise_steps_are_bounded_by_the_model(trained) -> None:
    model, parts, coords = trained
    history = np.zeros(model.n_items, dtype=np.float32)
    history[:3] = 1
    for bad in (-1, model.steps + 1, 50):
        with pytest.raises(ReclensError, match=rf"within 0\.\.{model.steps} .*diffusion steps T"):
            trajectory(model, history, [], coords, noise_steps=bad)
    assert (
        trajectory(model, history, [], coords, noise_steps=model.steps).noise_steps == model.steps
    )
