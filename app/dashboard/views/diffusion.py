"""Diffusion tab: DiffRec's reverse process for the selected user, and the 2-D teaching model.

The per-user plots are computed once per (run, user, K, fan settings); the Player only moves
the step, which updates light overlays (a line, a marker, the top-K table) in place.
"""

from __future__ import annotations

import contextlib
from typing import Any

import holoviews as hv
import numpy as np
import pandas as pd
import panel as pn
import param

from app.dashboard.plots import diffusion as plots
from app.dashboard.views.common import (
    TabView,
    caption,
    divider,
    guarded,
    hv_pane,
    live,
    markdown,
    md,
    no_selection,
)

SHAPES: tuple[str, ...] = ("moons", "spiral", "circle", "smiley", "item map")


class DiffusionView(TabView):
    """Reverse-process player for DiffRec runs and the 2-D toy diffusion."""

    step = param.Integer(default=0, bounds=(0, None), doc="Reverse step shown.")
    fan = param.Integer(default=1, bounds=(1, 8), doc="Number of stochastic trajectories.")
    noise_steps = param.Integer(default=0, bounds=(0, 50), doc="Noise added to the history.")
    sampling_noise = param.Boolean(default=False, doc="Add the posterior noise at each step.")
    shape = param.Selector(default="moons", objects=list(SHAPES))
    sampler = param.Selector(default="ddim", objects=["ddpm", "ddim"])
    schedule = param.Selector(default="linear", objects=["linear", "cosine"])
    toy_steps = param.Integer(default=25, bounds=(2, 100))
    frame = param.Integer(default=0, bounds=(0, None))

    def __init__(self, **params: Any) -> None:
        super().__init__(**params)
        self._cache_traj: dict[tuple, Any] = {}
        self._player = pn.widgets.Player(
            label="Reverse step", start=0, end=1, value=0, interval=600, loop_policy="once",
            width=420, show_loop_controls=False,
        )  # fmt: skip
        self._player.link(self, value="step", bidirectional=True)
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
    def trajectory(self) -> Any:
        """The selected user's trajectory (cached per session)."""
        key = (self.state.run, self.state.user, self.state.k, self.fan, self.noise_steps,
               self.sampling_noise)  # fmt: skip
        if key not in self._cache_traj:
            if len(self._cache_traj) > 16:
                self._cache_traj.clear()
            self._cache_traj[key] = self.service.trajectory(
                self.state.run, self.state.user, self.state.k, self.fan, self.noise_steps,
                self.sampling_noise,
            )  # fmt: skip
        return self._cache_traj[key]

    def steps_frame(self) -> pd.DataFrame:
        """The trajectory's per-step table as pandas."""
        return self.trajectory().steps.to_pandas()

    def topk_at(self, step: int) -> pd.DataFrame:
        """Top-K of seed 0 at ``step`` with rank changes and held-out hits."""
        traj = self.trajectory()
        steps = traj.steps.filter(traj.steps["seed"] == traj.seeds[0])
        step = int(min(max(step, 0), steps.height - 1))
        row = steps.row(step, named=True)
        loaded = self.service.load(self.state.run)
        titles = loaded.items["title"].to_numpy()
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
        )

    def strip_columns(self) -> tuple[np.ndarray, list[str], list[str]]:
        """Heat-strip columns: history, held-out, then the final top-K items (no repeats)."""
        traj = self.trajectory()
        loaded = self.service.load(self.state.run)
        final = traj.steps.filter(traj.steps["seed"] == traj.seeds[0])["topk"][-1].to_list()
        cols: list[int] = []
        kinds: list[str] = []
        for items, kind in ((traj.history, "history"), (traj.heldout, "held out"),
                            (final, "recommended")):  # fmt: skip
            for i in np.asarray(items, dtype=np.int64).tolist():
                if i not in cols:
                    cols.append(i)
                    kinds.append(kind)
        labels = loaded.items["title"].to_numpy()[cols].tolist()
        return np.asarray(cols, dtype=np.int64), kinds, labels

    def _on_step(self, *_: Any) -> None:
        with contextlib.suppress(Exception):  # the trajectory panel shows any problem
            self._topk.value = self.topk_at(self.step)

    # -- plot callbacks --------------------------------------------------------------------
    def heat_element(self, run: str, user: str, k: int, fan: int, noise: int, sn: bool) -> Any:
        """Heat strip of predicted scores for the selected user."""
        traj = self.trajectory()
        cols, kinds, labels = self.strip_columns()
        strip = plots.heat_strip(traj.predictions[0], cols, kinds, labels)
        return (strip * plots.strip_markers(kinds)).opts(legend_position="right")

    def metrics_element(self, run: str, user: str, k: int, fan: int, noise: int, sn: bool) -> Any:
        """Recall and NDCG per step."""
        return plots.metric_curves(self.steps_frame(), self.state.k)

    def map_element(self, run: str, user: str, k: int, fan: int, noise: int, sn: bool) -> Any:
        """The trajectory fan on the item map."""
        traj = self.trajectory()
        loaded = self.service.load(self.state.run)
        ids = loaded.items["id"].to_numpy()
        return plots.trajectory_map(
            self.service.item_map(self.state.run),
            self.steps_frame(),
            ids[np.asarray(traj.history, dtype=np.int64)].tolist(),
            ids[np.asarray(traj.heldout, dtype=np.int64)].tolist(),
        )

    def position_element(self, step: int, **_: Any) -> hv.Points:
        """The prediction's position at the current step."""
        try:
            return plots.trajectory_position(self.steps_frame(), step)
        except Exception:  # noqa: BLE001
            return hv.Points([], ["x", "y"])

    # -- panels ----------------------------------------------------------------------------
    @param.depends("state.run", "state.user", "state.k", "fan", "noise_steps", "sampling_noise")
    @guarded
    def trajectory_panel(self) -> pn.viewable.Viewable:
        """The reverse process of the selected user, driven by the Player."""
        if not (self.state.run and self.state.user):
            return no_selection("Pick a diffrec run and a user to watch the reverse process.")
        traj = self.trajectory()
        self._player.end = max(traj.n_steps - 1, 1)
        self._player.value = min(self.step, traj.n_steps - 1)
        self._on_step()
        deps = {
            "run": self.state.run, "user": self.state.user, "k": self.state.k, "fan": self.fan,
            "noise": self.noise_steps, "sn": self.sampling_noise,
        }  # fmt: skip
        step = self.param.step
        heat = self.heat_element(**deps) * hv.DynamicMap(pn.bind(plots.step_line, step=step))
        metrics = self.metrics_element(**deps) * hv.DynamicMap(
            pn.bind(plots.step_marker, step=step)
        )
        where = self.map_element(**deps) * hv.DynamicMap(pn.bind(self.position_element, step=step))
        return pn.Column(
            self._player,
            pn.Row(
                pn.Column(
                    hv_pane(heat),
                    caption(
                        "Each column is an item (black ticks: the user's history, green: held-out "
                        "test items, orange: the final top-K); each row a reverse step, brighter "
                        "= higher predicted score; the red line is the current step."
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
                        "Recall and NDCG of each step's prediction against the held-out items; "
                        "the last step is the model's recommendation."
                    ),
                    sizing_mode="stretch_width",
                ),
                pn.Column(
                    hv_pane(where),
                    caption(
                        "The score-weighted centre of each step's top items on the item map; "
                        "several orange lines are stochastic trajectories (fan), the red diamond "
                        "the current step."
                    ),
                    sizing_mode="stretch_width",
                ),
                sizing_mode="stretch_width",
            ),
            sizing_mode="stretch_width",
        )

    def toy_extent(self, frames: np.ndarray, target: np.ndarray) -> tuple[float, ...]:
        """Axes that hold the target and most particles of every frame."""
        pts = np.concatenate([target, frames[-1]])
        lo, hi = np.percentile(pts, 1, axis=0), np.percentile(pts, 99, axis=0)
        pad = 0.25 * (hi - lo) + 1e-6
        return (lo[0] - pad[0], lo[1] - pad[1], hi[0] + pad[0], hi[1] + pad[1])

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
    @guarded
    def toy_panel(self) -> pn.viewable.Viewable:
        """The 2-D teaching diffusion with its Player."""
        frames = self.toy_frames()
        self._toy_player.end = frames.shape[0] - 1
        self._toy_player.value = 0
        dmap = hv.DynamicMap(
            pn.bind(self.toy_element, frame=self.param.frame,
                    key=(self.shape, self.sampler, self.schedule, self.toy_steps))
        )  # fmt: skip
        return pn.Column(
            self._toy_player,
            hv_pane(dmap),
            caption(
                "Particles start as pure noise (step 0) and are denoised step by step by a small "
                "network trained on the grey points; DDPM adds fresh noise at every step, DDIM "
                "is deterministic and works with few steps."
            ),
            sizing_mode="stretch_width",
        )

    def __panel__(self) -> pn.viewable.Viewable:
        fan = pn.Row(
            pn.widgets.IntSlider.from_param(self.param.fan, label="Fan (trajectories)", width=200),
            pn.widgets.IntSlider.from_param(
                self.param.noise_steps, label="Noise steps on the history", width=200
            ),
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


def _move(change: Any) -> str:
    """A rank change label: new (null), \u2191n, \u2193n or =."""
    if change is None or (isinstance(change, float) and np.isnan(change)):
        return "new"
    change = int(change)
    if change == 0:
        return "="
    return f"\u2191{change}" if change > 0 else f"\u2193{-change}"
