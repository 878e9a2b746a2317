"""Diffusion tab: DiffRec's reverse process for the selected user, and the 2-D teaching model.

The per-user plots are computed once per (run, user, K, fan settings); the Player only moves
the step, which updates light overlays (a line, a marker, the top-K table) in place. The walk
starts, by default, from the history noised to the model's own largest training step T (step
0 of the Player), so the first x_0 prediction (step 1) shows the recommendation appear; every
control is bounded by the selected model (noise steps 0..T), and a note says in words how much
the walk moves (:func:`engine.trajectory.motion`).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Any

import holoviews as hv
import numpy as np
import pandas as pd
import panel as pn
import param

from app.dashboard import teaching
from app.dashboard.engine_service import DashboardError, EngineService
from app.dashboard.plots import diffusion as plots
from app.dashboard.views.common import (
    TabView,
    caption,
    divider,
    error_pane,
    friendly,
    guarded,
    hv_pane,
    live,
    markdown,
    md,
    no_selection,
)
from data.errors import ReclensError
from engine.trajectory import Motion, Trajectory, motion

SHAPES: tuple[str, ...] = ("moons", "spiral", "circle", "smiley", "item map")


class DiffusionView(TabView):
    """Reverse-process player for DiffRec runs and the 2-D toy diffusion."""

    step = param.Integer(default=0, bounds=(0, None), doc="Step shown (0: the start state).")
    fan = param.Integer(default=3, bounds=(1, 8), doc="Number of stochastic trajectories.")
    noise_steps = param.Integer(
        default=None, allow_None=True, bounds=(0, None),
        doc="Forward-noise steps on the history (None: the model's T; capped at T).",
    )  # fmt: skip
    sampling_noise = param.Boolean(default=False, doc="Add the posterior noise at each step.")
    shape = param.Selector(default="moons", objects=list(SHAPES))
    sampler = param.Selector(default="ddim", objects=["ddpm", "ddim"])
    schedule = param.Selector(default="linear", objects=["linear", "cosine"])
    toy_steps = param.Integer(
        default=teaching.TOY_SAMPLING_STEPS, bounds=(2, teaching.TOY_TRAIN_STEPS)
    )
    frame = param.Integer(default=0, bounds=(0, None))

    def __init__(self, **params: Any) -> None:
        super().__init__(**params)
        self._cache_traj: dict[tuple, Any] = {}
        self._player = pn.widgets.Player(
            label="Step 0 of 1", start=0, end=1, value=0, interval=900, loop_policy="once",
            width=420, show_loop_controls=False, show_value=False,
            css_classes=["reclens-diffusion-player"],
        )  # fmt: skip
        self._player.link(self, value="step", bidirectional=True)
        self._step_words = markdown("", css_classes=["reclens-diffusion-step"])
        self._noise = pn.widgets.IntSlider(
            label="Noise steps on the history", start=0, end=1, value=0, width=220,
            css_classes=["reclens-diffusion-noise"],
        )  # fmt: skip
        self._noise.param.watch(self._on_noise, "value_throttled")
        self._syncing = False
        self.state.param.watch(self._on_run, "run")
        self.param.watch(self._fit_noise_control, "noise_steps")
        self._topk = pn.widgets.Tabulator(
            pd.DataFrame(), disabled=True, show_index=False, height=300,
            sizing_mode="stretch_width",
        )  # fmt: skip
        self._toy_player = pn.widgets.Player(
            label="Sampling step", start=0, end=self.toy_steps, value=0, interval=150,
            loop_policy="once", width=420, show_loop_controls=False,
        )  # fmt: skip
        self._toy_player.link(self, value="frame", bidirectional=True)
        self.param.watch(self._on_step, "step")

    # -- data ------------------------------------------------------------------------------
    def model_steps(self) -> int:
        """T of the selected run's model (the walk has T reverse steps)."""
        return model_steps(self.service, self.state.run)

    def effective_noise(self) -> int:
        """The noise steps used: the chosen value capped at the model's T, or T by default."""
        steps = self.model_steps()
        return steps if self.noise_steps is None else int(min(max(self.noise_steps, 0), steps))

    def trajectory(self) -> Trajectory:
        """The selected user's trajectory (cached per session)."""
        noise = self.effective_noise()
        key = (self.state.run, self.state.user, self.state.k, self.fan, noise,
               self.sampling_noise)  # fmt: skip
        if key not in self._cache_traj:
            if len(self._cache_traj) > 16:
                self._cache_traj.clear()
            self._cache_traj[key] = self.service.trajectory(
                self.state.run, self.state.user, self.state.k, self.fan, noise,
                self.sampling_noise,
            )  # fmt: skip
        return self._cache_traj[key]

    def progress_frame(self) -> pd.DataFrame:
        """The walk as played (step 0 the start state, then each step), as pandas."""
        return self.trajectory().progress().to_pandas()

    def topk_at(self, step: int) -> pd.DataFrame:
        """Top-K of seed 0 at Player ``step`` (1..T: the step's prediction) with rank changes
        and held-out hits; empty at step 0, the start state, where nothing is ranked yet."""
        return topk_table(self.service, self.state.run, self.trajectory(), step)

    def step_words(self, step: int) -> str:
        """The Player's label: "Step s of S" and what that step is."""
        return step_label(self.trajectory(), step)

    def strip_columns(self) -> tuple[np.ndarray, list[str], list[str]]:
        """Heat-strip columns: history, held-out, then the final top-K items (no repeats)."""
        return strip_columns(self.service, self.state.run, self.trajectory())

    def _on_step(self, *_: Any) -> None:
        with contextlib.suppress(Exception):  # the trajectory panel shows any problem
            self._topk.value = self.topk_at(self.step)
            label = self.step_words(self.step)
            self._player.label = label.split(":")[0]
            self._step_words.object = md("**{label}**", label=label)

    def _on_run(self, *_: Any) -> None:
        """A new run starts at its own default noise (its T)."""
        with param.discard_events(self):
            self.noise_steps = None
        self._fit_noise_control()

    def _on_noise(self, event: param.parameterized.Event) -> None:
        if not self._syncing:
            self.noise_steps = int(event.new)

    def _fit_noise_control(self, *_: Any) -> None:
        """Bound the noise slider by the model's T and show the value in use (called outside
        the render, so the slider's browser model follows)."""
        try:
            steps, noise = self.model_steps(), self.effective_noise()
        except ReclensError:  # no run, or not a diffrec run: the panel says so
            steps = noise = 0
        self._syncing = True
        try:
            self._noise.param.update(end=max(steps, 1), value=noise, disabled=steps < 1)
        finally:
            self._syncing = False

    # -- plot callbacks --------------------------------------------------------------------
    def heat_element(self, run: str, user: str, k: int, fan: int, noise: int, sn: bool) -> Any:
        """Heat strip of predicted scores for the selected user."""
        return heat_element(self.service, self.state.run, self.trajectory())

    def metrics_element(self, run: str, user: str, k: int, fan: int, noise: int, sn: bool) -> Any:
        """Recall and NDCG along the walk."""
        return plots.metric_curves(self.progress_frame(), self.state.k)

    def rank_element(self, run: str, user: str, k: int, fan: int, noise: int, sn: bool) -> Any:
        """The best held-out rank along the walk."""
        return plots.heldout_rank_curve(self.progress_frame())

    def map_element(self, run: str, user: str, k: int, fan: int, noise: int, sn: bool) -> Any:
        """The trajectory fan on the item map."""
        return map_element(self.service, self.state.run, self.trajectory())

    def position_element(self, step: int, **_: Any) -> hv.Points:
        """The prediction's position at the current step."""
        try:
            return plots.trajectory_position(self.progress_frame(), step)
        except Exception:  # noqa: BLE001
            return hv.Points([], ["x", "y"])

    def motion_note(self) -> str:
        """In words: how much the walk moves, and why when it barely does."""
        traj = self.trajectory()
        return motion_words(motion(traj), traj.k)

    # -- panels ----------------------------------------------------------------------------
    @param.depends("state.run", "state.user", "state.k", "fan", "noise_steps", "sampling_noise")
    @guarded
    def trajectory_panel(self) -> pn.viewable.Viewable:
        """The reverse process of the selected user, driven by the Player."""
        if not (self.state.run and self.state.user):
            return no_selection("Pick a diffrec run and a user to watch the reverse process.")
        traj = self.trajectory()
        self._player.end = max(traj.n_steps, 1)
        self._player.value = min(self.step, traj.n_steps)
        self._on_step()
        deps = {
            "run": self.state.run, "user": self.state.user, "k": self.state.k, "fan": self.fan,
            "noise": self.effective_noise(), "sn": self.sampling_noise,
        }  # fmt: skip
        step = self.param.step
        heat = (
            self.heat_element(**deps) * hv.DynamicMap(pn.bind(plots.step_line, step=step))
        ).opts(legend_position="right")  # outside the strip, beside the colour bar
        metrics = (
            self.metrics_element(**deps) * hv.DynamicMap(pn.bind(plots.step_marker, step=step))
        ).opts(legend_position="top")  # legends above the plots, not over the data
        ranks = self.rank_element(**deps) * hv.DynamicMap(pn.bind(plots.step_marker, step=step))
        where = (
            self.map_element(**deps) * hv.DynamicMap(pn.bind(self.position_element, step=step))
        ).opts(legend_position="top", legend_cols=2)  # two rows
        return pn.Column(
            friendly(self.motion_note(), "info"),
            pn.Row(self._player, self._step_words, sizing_mode="stretch_width"),
            pn.Row(
                pn.Column(
                    hv_pane(heat),
                    caption(
                        "Each column is an item (black ticks: the user's history, green: held-out "
                        "test items, orange: the final top-K); row 0 is the start state (the "
                        "history, noised), each later row a reverse step's x0 prediction, "
                        "brighter = higher score; the red line is the current step."
                    ),
                    sizing_mode="stretch_width",
                ),
                pn.Column(
                    markdown(
                        md("**Top-K at this step** (move: rank change since the previous step)")
                    ),
                    self._topk,
                    sizing_mode="stretch_width",
                ),
                sizing_mode="stretch_width",
            ),
            pn.Row(
                pn.Column(
                    hv_pane(metrics),
                    caption(
                        "Recall and NDCG of each step's prediction against the held-out items "
                        "(step 0 ranks the start state as it is, by its noise alone; none "
                        "without noise); the last step is the model's recommendation."
                    ),
                    hv_pane(ranks),
                    caption(
                        "The best rank any held-out item reaches at each step: it moves even "
                        "when no held-out item is in the top-K (Recall and NDCG at 0)."
                    ),
                    sizing_mode="stretch_width",
                ),
                pn.Column(
                    hv_pane(where),
                    caption(
                        "The score-weighted centre of each step's top items on the item map, "
                        "from the centre of the history (step 0); each stochastic walk of the "
                        "fan has its own colour and dash (they overlap where the noise changes "
                        "little), the red diamonds mark the current step."
                    ),
                    sizing_mode="stretch_width",
                ),
                sizing_mode="stretch_width",
            ),
            sizing_mode="stretch_width",
        )

    def toy_extent(self, frames: np.ndarray, target: np.ndarray) -> tuple[float, ...]:
        """A square box (x0, y0, x1, y1) that holds the target and most final particles (the
        plot has equal units on both axes, so a square box is a square plot)."""
        pts = np.concatenate([target, frames[-1]])
        lo, hi = np.percentile(pts, 1, axis=0), np.percentile(pts, 99, axis=0)
        mid, half = (lo + hi) / 2, 0.75 * float((hi - lo).max()) + 1e-6
        return (mid[0] - half, mid[1] - half, mid[0] + half, mid[1] + half)

    def toy_frames(self) -> np.ndarray:
        """Particle frames of the teaching diffusion for the current settings."""
        return self.service.teaching.frames(
            self.shape, self.schedule, self.sampler, self.toy_steps, run_id=self.state.run
        )

    def toy_element(self, frame: int, **_: Any) -> hv.Overlay:
        """Particles at ``frame``."""
        frames = self.toy_frames()
        target = self.service.teaching.target(self.shape, self.state.run)
        frame = int(min(max(frame, 0), frames.shape[0] - 1))
        title = f"{self.sampler.upper()} step {frame}/{frames.shape[0] - 1} ({self.schedule})"
        return plots.particles(frames[frame], target, title, self.toy_extent(frames, target))

    @param.depends("shape", "sampler", "schedule", "toy_steps")
    async def toy_panel(self) -> AsyncIterator[pn.viewable.Viewable]:
        """The 2-D teaching diffusion with its Player; first a progress bar while the model of
        the chosen data and schedule trains (in a worker thread: the page stays live)."""
        page = self.service.teaching
        if not page.is_ready(self.shape, self.schedule, self.state.run):
            bar = pn.indicators.Progress(value=0, max=teaching.TOY_ITERS, width=420)
            yield pn.Column(
                markdown(
                    md("Training the toy model on **{shape}** ({n:,} iterations)\u2026",
                       shape=self.shape, n=teaching.TOY_ITERS)
                ),
                bar,
                sizing_mode="stretch_width",
            )  # fmt: skip
            work = asyncio.get_running_loop().run_in_executor(None, self.toy_frames)
            while not work.done():
                bar.value = min(page.progress(self.shape, self.schedule, self.state.run),
                                teaching.TOY_ITERS)  # fmt: skip
                await asyncio.wait({work}, timeout=0.25)
            if work.exception() is not None:
                yield error_pane(work.exception())
                return
        yield self.toy_body()

    @guarded
    def toy_body(self) -> pn.viewable.Viewable:
        """The Player and the particles of the (trained) teaching diffusion."""
        frames = self.toy_frames()
        model = self.service.teaching.model(self.shape, self.schedule, self.state.run)
        self._toy_player.end = frames.shape[0] - 1
        self._toy_player.value = 0
        dmap = hv.DynamicMap(
            pn.bind(self.toy_element, frame=self.param.frame,
                    key=(self.shape, self.sampler, self.schedule, self.toy_steps))
        )  # fmt: skip
        return pn.Column(
            self._toy_player,
            pn.pane.HoloViews(dmap, linked_axes=False),  # its own size: equal units on the axes
            caption(
                md(
                    "Particles start as pure noise (step 0) and are denoised step by step by a "
                    "small network trained on the grey points ({n:,} iterations in {s:.1f} s, "
                    "kept for the next visit); DDPM adds fresh noise at every step, DDIM is "
                    "deterministic and works with few steps.",
                    n=len(model.losses),
                    s=model.seconds,
                )
            ),
            sizing_mode="stretch_width",
        )

    def __panel__(self) -> pn.viewable.Viewable:
        self._fit_noise_control()
        fan = pn.Row(
            pn.widgets.IntSlider.from_param(self.param.fan, label="Fan (trajectories)", width=200),
            self._noise,
            pn.widgets.Checkbox.from_param(self.param.sampling_noise, label="Sampling noise"),
        )
        toy_controls = pn.Row(
            pn.widgets.Select.from_param(self.param.shape, label="Data", width=140),
            pn.widgets.Select.from_param(self.param.sampler, label="Sampler", width=110),
            pn.widgets.Select.from_param(self.param.schedule, label="Schedule", width=110),
            pn.widgets.IntSlider.from_param(self.param.toy_steps, label="Steps", width=200),
        )
        return pn.Column(
            markdown(md("### DiffRec: how the recommendation emerges, step by step")),
            fan,
            live(self.trajectory_panel),
            divider(),
            markdown(md("### Teaching diffusion in 2-D")),
            toy_controls,
            live(self.toy_panel),
            sizing_mode="stretch_width",
        )


def model_steps(service: EngineService, run: str) -> int:
    """T, the number of diffusion steps of ``run``'s model (a clear error for another model)."""
    loaded = service.load(run)
    if not loaded.opened.is_diffusion:
        raise DashboardError(
            f"run {run!r} is a {loaded.model_name} model: the reverse process exists only for "
            "diffrec runs; pick a diffrec run in the sidebar"
        )
    return int(loaded.opened.model.steps)


def step_label(traj: Trajectory, step: int) -> str:
    """ "Step s of S: ..." for the Player position ``step`` (0: the start state)."""
    step = int(min(max(step, 0), traj.n_steps))
    head = f"Step {step} of {traj.n_steps}"
    if step == 0:
        if traj.noise_steps:
            return f"{head}: the history noised to t = {traj.noise_steps} (nothing ranked yet)"
        return f"{head}: the history itself, without noise (nothing ranked yet)"
    t = traj.n_steps - step
    return f"{head}: the x0 prediction of the reverse step at t = {t}"


def topk_table(service: EngineService, run: str, traj: Trajectory, step: int) -> pd.DataFrame:
    """The top-K of seed 0 at Player position ``step`` (empty at 0, the start state)."""
    columns = ["rank", "title", "score", "move", "hit"]
    steps = traj.steps.filter(traj.steps["seed"] == traj.seeds[0])
    step = int(min(max(step, 0), steps.height))
    if step == 0:  # typed like the other steps' tables, so the table keeps its formatters
        types = {"rank": "int64", "title": object, "score": "float64", "move": object,
                 "hit": bool}  # fmt: skip
        return pd.DataFrame({name: pd.Series([], dtype=types[name]) for name in columns})
    row = steps.row(step - 1, named=True)
    titles = service.load(run).items["title"].to_numpy()
    held = set(np.asarray(traj.heldout).tolist())
    changes = row["rank_change"] or [None] * len(row["topk"])
    return pd.DataFrame(
        {
            "rank": np.arange(1, len(row["topk"]) + 1),
            "title": titles[np.asarray(row["topk"], dtype=np.int64)],
            "score": np.round(row["topk_scores"], 4),
            "move": [_move(c) for c in changes],
            "hit": [int(i) in held for i in row["topk"]],
        }
    )[columns]


def strip_columns(
    service: EngineService, run: str, traj: Trajectory
) -> tuple[np.ndarray, list[str], list[str]]:
    """Heat-strip columns: history, held-out, then the final top-K items (no repeats)."""
    final = traj.steps.filter(traj.steps["seed"] == traj.seeds[0])["topk"][-1].to_list()
    cols: list[int] = []
    kinds: list[str] = []
    for items, kind in ((traj.history, "history"), (traj.heldout, "held out"),
                        (final, "recommended")):  # fmt: skip
        for i in np.asarray(items, dtype=np.int64).tolist():
            if i not in cols:
                cols.append(i)
                kinds.append(kind)
    labels = service.load(run).items["title"].to_numpy()[cols].tolist()
    return np.asarray(cols, dtype=np.int64), kinds, labels


def heat_element(service: EngineService, run: str, traj: Trajectory) -> hv.Overlay:
    """The heat strip of seed 0: the start state, then each step's prediction."""
    cols, kinds, labels = strip_columns(service, run, traj)
    strip = plots.heat_strip(traj.scores(0), cols, kinds, labels)
    return (strip * plots.strip_markers(kinds)).opts(legend_position="right")


def map_element(service: EngineService, run: str, traj: Trajectory) -> hv.Overlay:
    """The walks (one per seed) on the item map, with the history and held-out items."""
    ids = service.load(run).items["id"].to_numpy()
    return plots.trajectory_map(
        service.item_map(run),
        traj.progress().to_pandas(),
        ids[np.asarray(traj.history, dtype=np.int64)].tolist(),
        ids[np.asarray(traj.heldout, dtype=np.int64)].tolist(),
    )


def motion_words(m: Motion, k: int) -> str:
    """A plain note on how much a walk moves (see :class:`engine.trajectory.Motion`)."""
    if m.noise_steps:
        start = (
            f"The walk starts from the history noised to step t = {m.noise_steps} of "
            f"{m.n_steps}: it keeps {m.signal:.5f} of the history and gains noise of standard "
            f"deviation {m.noise_std:.4f} per item"
            + (f" ({m.noise_share:.1%} of the history's length)." if m.noise_share else ".")
        )
    else:
        start = "The walk starts from the history itself (no noise)."
    if m.static:
        body = (
            f" It is nearly static: after the first step no item enters the top-{k} and Recall "
            f"and NDCG do not change ({m.n_rank_moves} rank swaps inside the top-{k}). Why: "
            "DiffRec's noise scale is small (the paper's setting), so each reverse step has "
            "almost nothing to remove: the first x0 prediction (step 1) already makes the "
            "recommendation and the later steps only refine the scores."
        )
    else:
        spread = f" and Recall/NDCG vary by up to {m.metric_range:.3f}" if m.metric_range else ""
        body = (
            f" After the first step {m.n_entered} item(s) enter the top-{k}, ranks inside it move "
            f"{m.n_rank_moves} time(s){spread}."
        )
    if m.fan_spread is not None:
        same = "differ" if m.fan_topk_differ else "are the same"
        body += (
            f" The fan's walks lie at most {m.fan_spread:.3g} apart on the map; their final "
            f"top-{k} {same}."
        )
    return start + body


def _move(change: Any) -> str:
    """A rank change label: new (null), \u2191n, \u2193n or =."""
    if change is None or (isinstance(change, float) and np.isnan(change)):
        return "new"
    change = int(change)
    if change == 0:
        return "="
    return f"\u2191{change}" if change > 0 else f"\u2193{-change}"
