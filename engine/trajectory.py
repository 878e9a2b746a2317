"""DiffRec's reverse trajectory for one user, as tables the dashboard and CLI can draw.

At inference DiffRec starts from the user's history x (noised ``noise_steps`` steps, usually
not at all) and walks t = T-1 .. 0, each step predicting x_0 from the current state x_t and
moving to the posterior mean of q(x_{t-1} | x_t, x0_hat). With the paper's tiny noise x_t
barely moves, so the story is told by the x_0 prediction of each step: which items rise into
the top K, how the ranking metrics against the user's held-out items evolve, and where the
prediction sits on the 2D item map (the score-weighted centroid of its top-N items).

:func:`trajectory` records one user's walk for one or several noise seeds (a "fan" when
``noise_steps > 0`` or with ``sampling_noise``); :meth:`engine.session.OpenRun.trajectory`
does the same for a user of a saved run, with the run's split and item map.
:func:`motion` measures how much a trajectory moves (top-K turnover, metric range, the size of
the starting noise), so a view can say plainly when the walk is nearly static and why.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import polars as pl
import torch

from data.errors import ReclensError
from engine.evaluate import ranking_metrics
from engine.models.diffrec import DiffRec


@dataclass(frozen=True)
class Trajectory:
    """One user's reverse trajectories, one per noise seed.

    ``steps``: one row per (seed, step), ordered by seed then step, columns

    - ``seed``, ``step`` (0 .. T-1, in walking order), ``t`` (the diffusion step, T-1 .. 0);
    - schedule: ``beta``, ``alpha_bar``, ``alpha_bar_prev``, ``coef_x0`` and ``coef_xt`` (the
      posterior mean is ``coef_x0 * x0_hat + coef_xt * x_t``), ``posterior_variance``;
    - state x_t fed to the step: ``xt_norm`` (L2), ``xt_dist`` (L2 distance to the history),
      ``xt_move`` (L2 distance to the previous step's state, 0 at step 0);
    - prediction x0_hat: ``x0_norm``, ``x0_change`` (L2 distance to the previous step's
      prediction, null at step 0), ``x0_history`` / ``x0_heldout`` / ``x0_other`` (mean
      predicted value over history, held-out and remaining items; null when empty);
    - ranking (masked items excluded): ``topk`` (item indices, List[Int64]), ``topk_raw`` (raw
      ids, List[String]), ``topk_scores`` (List[Float64]), ``rank_change`` (List[Int64]: previous
      step's rank minus this rank, positive = moved up; nulls at step 0), ``n_new`` (top-K items
      not in the previous step's top K; K at step 0), ``recall@K``, ``ndcg@K`` and
      ``best_heldout_rank`` (the best rank of a held-out item; all null when the user has no
      held-out items);
    - ``x``, ``y``: score-weighted centroid of the top-N items on the item map (null without
      coordinates).

    ``items``: one row per (seed, step, tracked item) for a heat strip; the tracked items are
    the union of every step's top N. Columns ``seed``, ``step``, ``t``, ``item``, ``raw_id``,
    ``score``, ``rank`` (1-based among unmasked items, null when masked), ``in_topk``,
    ``heldout``.

    ``start``: one row per seed, the state before the first step (the noised history, or the
    history itself without noise): ``seed``, ``noise_norm`` (L2 distance to the history),
    ``noise_share`` (that over the history's L2 norm), ``recall@K``, ``ndcg@K`` and
    ``best_heldout_rank`` of ranking that state as it is (what is recommended before any
    denoising: the noise alone orders the unmasked items; null without noise, when they all
    tie), ``x``, ``y`` (centroid of the history's items on the item map).

    ``predictions``: float32 [n_seeds, T, n_items], each step's x_0 prediction (the last one is
    the model's score for the user); ``states``: float32 [n_seeds, T + 1, n_items], the state
    fed to each step and then the final one; ``history`` / ``heldout``: item indices.
    """

    steps: pl.DataFrame
    items: pl.DataFrame
    predictions: np.ndarray
    states: np.ndarray
    seeds: tuple[int, ...]
    k: int
    top_n: int
    noise_steps: int
    sampling_noise: bool
    history: np.ndarray
    heldout: np.ndarray
    user: str | None = None
    start: pl.DataFrame | None = None

    @property
    def n_steps(self) -> int:
        """T, the number of reverse steps."""
        return int(self.predictions.shape[1])

    def progress(self) -> pl.DataFrame:
        """The walk as the dashboard plays it: one row per (seed, position), position 0 the
        start state (:attr:`start`) and position s the x_0 prediction of the s-th reverse step.

        Columns ``seed``, ``step`` (the position, 0 .. T), ``t`` (null at the start),
        ``recall@K``, ``ndcg@K``, ``best_heldout_rank``, ``x``, ``y``.
        """
        cols = ["seed", "step", "t", f"recall@{self.k}", f"ndcg@{self.k}", "best_heldout_rank"]
        walked = self.steps.select(*cols, "x", "y").with_columns(pl.col("step") + 1)
        if self.start is None:
            return walked
        begin = self.start.select(
            "seed",
            pl.lit(0, pl.Int64).alias("step"),
            pl.lit(None, pl.Int64).alias("t"),
            *cols[3:],
            "x",
            "y",
        )
        return pl.concat([begin, walked]).sort("seed", "step")

    def scores(self, seed_index: int = 0) -> np.ndarray:
        """[T + 1, n_items]: the start state, then each step's x_0 prediction (one seed)."""
        return np.vstack([self.states[seed_index, :1], self.predictions[seed_index]])

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict: ``user``, settings and ``steps`` (a list, one object a row).

        Each step has ``seed``, ``step``, ``t``, ``recall@K``, ``ndcg@K``, ``topk`` (raw item
        ids), ``topk_index``, ``topk_scores``, ``rank_change``, ``x``, ``y`` and the schedule and
        state columns; NaN becomes null.
        """
        rows = []
        for row in self.steps.iter_rows(named=True):
            row["topk_index"] = row.pop("topk")
            row["topk"] = row.pop("topk_raw")
            rows.append({key: _clean(value) for key, value in row.items()})
        return {
            "user": self.user,
            "k": self.k,
            "top_n": self.top_n,
            "noise_steps": self.noise_steps,
            "sampling_noise": self.sampling_noise,
            "seeds": list(self.seeds),
            "n_steps": self.n_steps,
            "steps": rows,
            "start": [
                {key: _clean(value) for key, value in row.items()}
                for row in (self.start.iter_rows(named=True) if self.start is not None else ())
            ],
        }


@dataclass(frozen=True)
class Motion:
    """How much one trajectory moves (see :func:`motion`).

    ``noise_std``: the standard deviation of the noise the walk starts from (0 without noise,
    else ``sqrt(1 - abar)`` at step T'-1) and ``signal`` the history's factor ``sqrt(abar)``;
    ``noise_share``: the starting noise's L2 norm over the history's (mean over seeds);
    ``n_entered``: items of the last step's top K that were not in the first step's (seed 0);
    ``n_rank_moves``: top-K rank changes after the first step (seed 0); ``metric_range``: the
    largest spread (max - min over the steps) of recall@K and NDCG@K (seed 0; None without
    held-out items); ``fan_spread``: the largest distance between two seeds' map positions at
    one step (None with one seed or no map); ``fan_topk_differ``: whether the seeds' last top K
    differ; ``static``: after the first step no item enters the top K and recall and NDCG stay
    the same (ranks may still swap inside the top K).
    """

    n_steps: int
    noise_steps: int
    noise_std: float
    signal: float
    noise_share: float | None
    n_entered: int
    n_rank_moves: int
    metric_range: float | None
    fan_spread: float | None
    fan_topk_differ: bool
    static: bool


def motion(traj: Trajectory) -> Motion:
    """Measure how much ``traj`` moves: a walk whose top K is settled by the first x_0
    prediction (DiffRec's small noise: the state barely changes between steps) is ``static``."""
    steps = traj.steps
    first = steps.filter(pl.col("seed") == traj.seeds[0]).sort("step")
    tops = first["topk"].to_list()
    n_entered = len(set(tops[-1]) - set(tops[0]))
    moves = [c for row in first["rank_change"].to_list()[1:] for c in row if c]
    spreads = [
        float(first[f"{name}@{traj.k}"].max() - first[f"{name}@{traj.k}"].min())
        for name in ("recall", "ndcg")
        if first[f"{name}@{traj.k}"].null_count() == 0
    ]
    if traj.noise_steps > 0:
        abar = float(steps.filter(pl.col("t") == traj.noise_steps - 1)["alpha_bar"][0])
    else:
        abar = 1.0
    share = traj.start["noise_share"].mean() if traj.start is not None else None
    last_tops = [tuple(steps.filter(pl.col("seed") == s)["topk"].to_list()[-1]) for s in traj.seeds]
    return Motion(
        n_steps=traj.n_steps,
        noise_steps=traj.noise_steps,
        noise_std=math.sqrt(max(1.0 - abar, 0.0)),
        signal=math.sqrt(abar),
        noise_share=float(share) if share is not None else None,
        n_entered=n_entered,
        n_rank_moves=len(moves),
        metric_range=max(spreads) if spreads else None,
        fan_spread=_fan_spread(steps) if len(traj.seeds) > 1 else None,
        fan_topk_differ=len(set(last_tops)) > 1,
        static=n_entered == 0 and (not spreads or max(spreads) < 1e-9),
    )


@torch.no_grad()
def trajectory(
    model: DiffRec,
    history: np.ndarray | torch.Tensor,
    heldout_items: Sequence[int] | np.ndarray,
    coords: np.ndarray | None = None,
    *,
    k: int = 10,
    top_n: int = 20,
    noise_steps: int = 0,
    seeds: Sequence[int] = (0,),
    sampling_noise: bool = False,
    mask: np.ndarray | None = None,
    item_raw_ids: Sequence[str] | np.ndarray | None = None,
    user: str | None = None,
) -> Trajectory:
    """Record the reverse trajectory of one user (see :class:`Trajectory`).

    ``history``: the model's input [n_items] (0/1); ``heldout_items``: item indices the metrics
    count as relevant; ``coords``: item map [n_items, 2] or None; ``mask``: bool [n_items] of
    items excluded from ranking (default: the history's items); ``noise_steps`` T' noises the
    history first and ``sampling_noise`` adds the posterior noise, both drawn per seed.
    The model is run in eval mode (its mode is restored after).
    """
    if not isinstance(model, DiffRec):
        raise ReclensError(f"trajectories need a diffrec model, got {type(model).__name__}")
    n_items = model.n_items
    x = torch.as_tensor(np.asarray(history, dtype=np.float32)).reshape(-1)
    if x.shape[0] != n_items:
        raise ReclensError(f"history has {x.shape[0]} items, the model {n_items}")
    if k < 1 or top_n < 1:
        raise ReclensError(f"k and top_n must be at least 1, got k={k}, top_n={top_n}")
    if not 0 <= noise_steps <= model.steps:
        raise ReclensError(
            f"noise steps must be within 0..{model.steps} (this model's number of diffusion "
            f"steps T), got {noise_steps}"
        )
    if coords is not None and np.shape(coords) != (n_items, 2):
        raise ReclensError(f"item coordinates must be [{n_items}, 2], got {np.shape(coords)}")
    seeds = tuple(int(s) for s in seeds) or (0,)
    hist_np = x.numpy()
    masked = hist_np > 0 if mask is None else np.asarray(mask, dtype=bool).reshape(-1)
    heldout = np.unique(np.asarray(heldout_items, dtype=np.int64))
    raw = np.asarray(item_raw_ids if item_raw_ids is not None else np.arange(n_items)).astype(str)
    k_eff = min(k, int((~masked).sum()))
    if k_eff < 1:
        raise ReclensError("every item is masked: nothing left to rank")

    predictions, states = _walk(model, x, noise_steps, seeds, sampling_noise)
    sched = model.schedule
    ts = list(reversed(range(model.steps)))
    is_heldout = np.zeros(n_items, dtype=bool)
    is_heldout[heldout] = True
    groups = {
        "x0_history": hist_np > 0,
        "x0_heldout": is_heldout,
        "x0_other": ~(hist_np > 0) & ~is_heldout,
    }

    step_rows: list[dict[str, Any]] = []
    ranks_all = np.empty((len(seeds), len(ts), n_items), dtype=np.int64)
    top_items: set[int] = set()
    for si, seed in enumerate(seeds):
        prev_rank: np.ndarray | None = None
        prev_top: np.ndarray | None = None
        for step, t in enumerate(ts):
            scores = predictions[si, step]
            state = states[si, step]
            ranked, rank = _ranking(scores, masked)
            ranks_all[si, step] = rank
            top = ranked[:k_eff]
            top_items.update(ranked[:top_n].tolist())
            xy = _centroid(scores, ranked[:top_n], coords)
            row: dict[str, Any] = {
                "seed": seed,
                "step": step,
                "t": t,
                "beta": float(sched["betas"][t]),
                "alpha_bar": float(sched["alphas_cumprod"][t]),
                "alpha_bar_prev": float(sched["alphas_cumprod_prev"][t]),
                "coef_x0": float(sched["posterior_mean_coef1"][t]),
                "coef_xt": float(sched["posterior_mean_coef2"][t]),
                "posterior_variance": float(sched["posterior_variance"][t]),
                "xt_norm": float(np.linalg.norm(state)),
                "xt_dist": float(np.linalg.norm(state - hist_np)),
                "xt_move": float(np.linalg.norm(state - states[si, step - 1])) if step else 0.0,
                "x0_norm": float(np.linalg.norm(scores)),
                "x0_change": (
                    float(np.linalg.norm(scores - predictions[si, step - 1])) if step else None
                ),
                **{
                    name: float(scores[sel].mean()) if sel.any() else None
                    for name, sel in groups.items()
                },
                "topk": top.tolist(),
                "topk_raw": raw[top].tolist(),
                "topk_scores": scores[top].astype(np.float64).tolist(),
                "rank_change": (
                    (prev_rank[top] - rank[top]).tolist()
                    if prev_rank is not None
                    else [None] * len(top)
                ),
                "n_new": int(len(top) - len(np.intersect1d(top, prev_top)))
                if prev_top is not None
                else len(top),
                **_accuracy(ranked, rank, heldout, k_eff, k),
                "x": xy[0],
                "y": xy[1],
            }
            step_rows.append(row)
            prev_rank, prev_top = rank, top

    steps = pl.DataFrame(step_rows, schema=_steps_schema(k))
    start = _start_table(seeds, states[:, 0], hist_np, masked, heldout, coords, k_eff, k)
    items = _items_table(
        seeds,
        ts,
        np.array(sorted(top_items)),
        predictions,
        ranks_all,
        masked,
        k_eff,
        is_heldout,
        raw,
    )
    return Trajectory(
        steps=steps,
        items=items,
        predictions=predictions,
        states=states,
        seeds=seeds,
        k=k,
        top_n=top_n,
        noise_steps=noise_steps,
        sampling_noise=sampling_noise,
        history=np.flatnonzero(hist_np > 0),
        heldout=heldout,
        user=user,
        start=start,
    )


# -- helpers --------------------------------------------------------------------------------------
def _accuracy(
    ranked: np.ndarray, rank: np.ndarray, heldout: np.ndarray, k_eff: int, k: int
) -> dict[str, float | int | None]:
    """``recall@k``, ``ndcg@k`` and ``best_heldout_rank`` of one ranking (None without
    held-out items)."""
    if not len(heldout):
        return {f"recall@{k}": None, f"ndcg@{k}": None, "best_heldout_rank": None}
    is_heldout = np.zeros(rank.shape[0], dtype=bool)
    is_heldout[heldout] = True
    hits = torch.from_numpy(is_heldout[ranked[:k_eff]].astype(np.float64))[None]
    metrics = ranking_metrics(hits, torch.tensor([float(len(heldout))]), (k_eff,))
    best = int(rank[heldout].min())
    return {
        f"recall@{k}": float(metrics[f"recall@{k_eff}"][0]),
        f"ndcg@{k}": float(metrics[f"ndcg@{k_eff}"][0]),
        "best_heldout_rank": best if best <= ranked.shape[0] else None,
    }


def _start_table(
    seeds: tuple[int, ...],
    starts: np.ndarray,
    history: np.ndarray,
    masked: np.ndarray,
    heldout: np.ndarray,
    coords: np.ndarray | None,
    k_eff: int,
    k: int,
) -> pl.DataFrame:
    """The ``start`` table of :class:`Trajectory`: each seed's state before the first step."""
    hist_norm = float(np.linalg.norm(history))
    hist_items = np.flatnonzero(history > 0)
    xy = _centroid(history, hist_items, coords)
    rows = []
    for seed, state in zip(seeds, starts, strict=True):
        ranked, rank = _ranking(state, masked)
        noise = float(np.linalg.norm(state - history))
        ordered = np.ptp(state[~masked]) > 0  # without noise every unmasked item ties: no order
        rows.append(
            {
                "seed": seed,
                "noise_norm": noise,
                "noise_share": noise / hist_norm if hist_norm > 0 else None,
                **_accuracy(ranked, rank, heldout if ordered else heldout[:0], k_eff, k),
                "x": xy[0],
                "y": xy[1],
            }
        )
    f = pl.Float64
    schema = {"seed": pl.Int64, "noise_norm": f, "noise_share": f, f"recall@{k}": f,
              f"ndcg@{k}": f, "best_heldout_rank": pl.Int64, "x": f, "y": f}  # fmt: skip
    return pl.DataFrame(rows, schema=schema)


def _walk(
    model: DiffRec, x: torch.Tensor, noise_steps: int, seeds: tuple[int, ...], sampling_noise: bool
) -> tuple[np.ndarray, np.ndarray]:
    """x_0 predictions [n_seeds, T, n_items] and states [n_seeds, T + 1, n_items]."""
    device = model.device
    was_training = model.training
    model.eval()
    preds = np.empty((len(seeds), model.steps, model.n_items), dtype=np.float32)
    states = np.empty((len(seeds), model.steps + 1, model.n_items), dtype=np.float32)
    try:
        xb = x.to(device)[None]
        for si, seed in enumerate(seeds):
            gen = torch.Generator(device=device).manual_seed(seed)
            walk = model.reverse(xb, noise_steps, sampling_noise, gen)
            for step, out in enumerate(walk):
                preds[si, step] = out.x0[0].float().cpu().numpy()
                states[si, step] = out.x_t[0].float().cpu().numpy()
                states[si, step + 1] = out.x_prev[0].float().cpu().numpy()
    finally:
        model.train(was_training)
    return preds, states


def _fan_spread(steps: pl.DataFrame) -> float | None:
    """The largest distance between two seeds' map positions at the same step."""
    located = steps.drop_nulls(["x", "y"])
    if located.is_empty():
        return None
    widest = 0.0
    for _, group in located.group_by("step"):
        xy = group.select("x", "y").to_numpy()
        widest = max(widest, float(np.linalg.norm(xy[:, None] - xy[None], axis=-1).max()))
    return widest


def _ranking(scores: np.ndarray, masked: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Unmasked items by decreasing score [n_unmasked], and each item's 1-based rank [n_items]
    (``n_items + 1`` for masked items). Ties keep the lower item index first."""
    s = np.where(masked, -np.inf, scores.astype(np.float64))
    order = np.argsort(-s, kind="stable")
    ranked = order[: int((~masked).sum())]
    rank = np.full(scores.shape[0], scores.shape[0] + 1, dtype=np.int64)
    rank[ranked] = np.arange(1, ranked.shape[0] + 1)
    return ranked, rank


def _centroid(
    scores: np.ndarray, top: np.ndarray, coords: np.ndarray | None
) -> tuple[float | None, float | None]:
    """Centroid of ``coords[top]`` weighted by the positive part of the scores."""
    if coords is None or len(top) == 0:
        return None, None
    w = np.clip(scores[top].astype(np.float64), 0.0, None)
    if w.sum() <= 0:
        w = np.ones(len(top))
    xy = (np.asarray(coords, dtype=np.float64)[top] * w[:, None]).sum(0) / w.sum()
    return float(xy[0]), float(xy[1])


def _items_table(
    seeds: tuple[int, ...],
    ts: list[int],
    tracked: np.ndarray,
    predictions: np.ndarray,
    ranks: np.ndarray,
    masked: np.ndarray,
    k: int,
    is_heldout: np.ndarray,
    raw: np.ndarray,
) -> pl.DataFrame:
    """Long table of the tracked items' scores and ranks at every (seed, step)."""
    n_s, n_t, n_i = len(seeds), len(ts), len(tracked)
    shape = (n_s, n_t, n_i)
    rank = ranks[:, :, tracked].reshape(-1)
    table = pl.DataFrame(
        {
            "seed": np.broadcast_to(np.array(seeds)[:, None, None], shape).reshape(-1),
            "step": np.broadcast_to(np.arange(n_t)[None, :, None], shape).reshape(-1),
            "t": np.broadcast_to(np.array(ts)[None, :, None], shape).reshape(-1),
            "item": np.broadcast_to(tracked[None, None, :], shape).reshape(-1),
            "raw_id": np.broadcast_to(raw[tracked][None, None, :], shape).reshape(-1),
            "score": predictions[:, :, tracked].reshape(-1).astype(np.float64),
            "rank": rank,
            "_masked": np.broadcast_to(masked[tracked], shape).reshape(-1),
            "in_topk": rank <= k,
            "heldout": np.broadcast_to(is_heldout[tracked], shape).reshape(-1),
        },
        schema={
            "seed": pl.Int64,
            "step": pl.Int64,
            "t": pl.Int64,
            "item": pl.Int64,
            "raw_id": pl.String,
            "score": pl.Float64,
            "rank": pl.Int64,
            "_masked": pl.Boolean,
            "in_topk": pl.Boolean,
            "heldout": pl.Boolean,
        },
    )
    rank_or_null = pl.when(pl.col("_masked")).then(None).otherwise(pl.col("rank"))
    return table.with_columns(rank_or_null.alias("rank")).drop("_masked")


def _steps_schema(k: int) -> dict[str, pl.DataType]:
    f, i = pl.Float64, pl.Int64
    return {
        "seed": i,
        "step": i,
        "t": i,
        "beta": f,
        "alpha_bar": f,
        "alpha_bar_prev": f,
        "coef_x0": f,
        "coef_xt": f,
        "posterior_variance": f,
        "xt_norm": f,
        "xt_dist": f,
        "xt_move": f,
        "x0_norm": f,
        "x0_change": f,
        "x0_history": f,
        "x0_heldout": f,
        "x0_other": f,
        "topk": pl.List(i),
        "topk_raw": pl.List(pl.String),
        "topk_scores": pl.List(f),
        "rank_change": pl.List(i),
        "n_new": i,
        f"recall@{k}": f,
        f"ndcg@{k}": f,
        "best_heldout_rank": i,
        "x": f,
        "y": f,
    }


def _clean(value: Any) -> Any:
    """NaN/inf floats become None, recursively through lists."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, list):
        return [_clean(v) for v in value]
    return value
