"""The dashboard's one engine service per server process: a typed facade over the engine.

Sessions only read from it or start jobs. It is a catalogue, caches and delegation:

- the run catalogue (:class:`~app.dashboard.catalogue.RunCatalogue`): a run id from a browser
  is only ever looked up in the listing of the runs folder, never joined into a path;
- opened runs (:class:`~engine.session.OpenRun` with display tables), least recently used
  first out, and bounded caches of projections, explanations, fidelity curves and
  trajectories;
- the 2-D teaching diffusion's trained models (:class:`~app.dashboard.teaching.TeachingDiffusion`);
- training jobs (:class:`~app.dashboard.jobs.TrainingJobs`) and fidelity evaluations across
  users on the server's executor back end (:class:`~app.dashboard.fidelity_jobs.FidelityJobs`).

The numbers come from :mod:`engine` and :mod:`explainers`; :mod:`app.dashboard.shaping` joins
them with titles and ids. Every failure a user can cause raises
:class:`~data.errors.ReclensError` with a one-line message saying what to do.
"""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from app.dashboard.cache import LRU
from app.dashboard.catalogue import LEADERBOARD_BEYOND, DashboardError, RunCatalogue, number
from app.dashboard.fidelity_jobs import FidelityJobs
from app.dashboard.jobs import TrainingJob, TrainingJobs
from app.dashboard.shaping import (
    ExplanationView,
    LoadedRun,
    dataset_card,
    explanation_view,
    fidelity_frame,
    ranked_against,
    recommendation_frame,
    with_xy,
)
from app.dashboard.teaching import TeachingDiffusion
from app.fidelity_stats import evidence_of
from engine import registry
from engine.beyond import BeyondResult
from engine.executor import BackendOptions
from engine.groups import available_groupings
from engine.runs import FIDELITY_FOLDER, RunSummary
from engine.session import OpenRun
from engine.trajectory import Trajectory
from explainers import registry as explainer_registry
from explainers.spinrec import SpinRec
from explainers.target import explain_target

DEFAULT_MODELS: tuple[str, ...] = ("ease", "fism", "multvae", "diffrec")
"""Models ``reclens demo`` trains when the runs folder is empty."""


class EngineService:
    """Runs, caches and background jobs shared by every session of one server."""

    def __init__(
        self,
        runs_root: str | Path,
        default_source: str = "synthetic",
        data_options: dict[str, Any] | None = None,
        device: str = "cpu",
        max_runs: int = 8,
        projection_method: str = "umap",
        backend: BackendOptions | None = None,
    ) -> None:
        self.catalogue = RunCatalogue(runs_root)
        self.default_source = default_source
        self.data_options = dict(data_options or {})
        self.device = device
        self.projection_method = projection_method
        self._umap_lock = threading.Lock()
        self._runs: LRU[LoadedRun] = LRU(max_runs)
        self._projections: LRU[Any] = LRU(4 * max_runs)
        self._explanations: LRU[ExplanationView] = LRU(256)
        self._fidelity: LRU[pd.DataFrame] = LRU(128)
        self._trajectories: LRU[Trajectory] = LRU(64)
        self._misc: LRU[Any] = LRU(64)
        self.jobs = TrainingJobs(self.runs_root, device, self._saved)
        self.teaching = TeachingDiffusion(self._item_points)
        self.fidelity_jobs = FidelityJobs(backend)

    # -- the catalogue ---------------------------------------------------------------------
    @property
    def runs_root(self) -> Path:
        return self.catalogue.runs_root

    def summaries(self, refresh: bool = False) -> list[RunSummary]:
        return self.catalogue.summaries(refresh)

    def run_id_of(self, path: Path) -> str:
        return self.catalogue.run_id_of(path)

    def run_ids(self, dataset: str | None = None) -> list[str]:
        return self.catalogue.run_ids(dataset)

    def summary(self, run_id: str) -> RunSummary:
        return self.catalogue.summary(run_id)

    def datasets(self) -> list[str]:
        return self.catalogue.datasets()

    def source_of(self, dataset: str) -> str:
        return self.catalogue.source_of(dataset, self.default_source)

    def leaderboard(self) -> pd.DataFrame:
        return self.catalogue.leaderboard()

    def load(self, run_id: str) -> LoadedRun:
        """The opened run ``run_id`` (model on the service's device) with display tables."""
        path = self.summary(run_id).path  # validates the id against the listing

        def make() -> LoadedRun:
            opened = OpenRun.open(path, device=self.device)
            if opened.dataset.n_users == 0 or opened.n_items == 0:
                raise DashboardError(
                    f"run {run_id!r} was trained on an empty dataset: train again on data with "
                    "interactions, e.g. `reclens demo`"
                )
            return LoadedRun.build(run_id, opened)

        return self._runs.get(("run", run_id, str(path)), make)

    # -- metrics -----------------------------------------------------------------------------
    def beyond_means(self, run_id: str) -> dict[str, float | None]:
        """Stored beyond-accuracy means of a run (those in :data:`LEADERBOARD_BEYOND`), or {}."""
        loaded = self.load(run_id)

        def make() -> dict[str, float | None]:
            stored = loaded.opened.stored_beyond() or {}
            values = {**stored.get("per_user_mean", {}), **stored.get("catalogue", {})}
            return {k: number(values[k]) for k in LEADERBOARD_BEYOND if k in values}

        return self._misc.get(("beyond-means", run_id), make)

    def beyond(self, run_id: str, k: int = 10, group_by: str = "") -> BeyondResult:
        """Beyond-accuracy result (per-user table, catalogue, group gaps) of the top-``k``."""
        loaded = self.load(run_id)
        k = int(max(1, min(k, 100)))
        return self._misc.get(
            ("beyond", run_id, k, group_by),
            lambda: loaded.opened.beyond(k=k, group_by=group_by or None),
        )

    def groupings(self, run_id: str) -> list[str]:
        """User groupings the fairness tab can compare (attributes and derived ones)."""
        return list(available_groupings(self.load(run_id).dataset))

    def exposure(self, run_id: str, k: int) -> pd.DataFrame:
        """Per item: ``id``, ``title``, ``genre``, ``popularity`` (training) and ``exposure``
        (number of test users' top-``k`` lists holding it)."""
        loaded = self.load(run_id)

        def make() -> pd.DataFrame:
            frame = loaded.items[["id", "title", "genre", "popularity"]].copy()
            frame["exposure"] = loaded.opened.exposure(int(k))
            return frame

        return self._misc.get(("exposure", run_id, int(k)), make)

    def dataset_card(self, run_id: str) -> dict[str, Any]:
        """Dataset summary numbers plus per-item and per-user interaction counts."""
        loaded = self.load(run_id)

        return self._misc.get(("card", run_id), lambda: dataset_card(loaded.dataset))

    # -- recommendations -----------------------------------------------------------------
    def recommend(
        self, run_id: str, user: str, k: int, history: np.ndarray | None = None
    ) -> pd.DataFrame:
        """Top-``k`` for ``user`` (raw id): ``rank``, ``item``, ``id``, ``title``, ``genres``,
        ``score``, ``heldout`` (a test item: a hit); ``history`` (item indices) replaces the
        user's history (what-if, see :meth:`engine.session.OpenRun.top_k`)."""
        loaded = self.load(run_id)
        u = loaded.user_index(user)
        items, scores = loaded.opened.top_k(u, k, history=history)
        return recommendation_frame(loaded, items, scores, loaded.heldout(u))

    def history_table(self, run_id: str, user: str) -> pd.DataFrame:
        """The user's training history: ``item``, ``id``, ``title``, ``genres``, ``popularity``."""
        loaded = self.load(run_id)
        hist = loaded.history(loaded.user_index(user))
        columns = ["item", "id", "title", "genres", "popularity"]
        return loaded.items.iloc[hist][columns].reset_index(drop=True).copy()

    def users_with_item(self, run_id: str, item_id: str, limit: int = 500) -> list[str]:
        """Raw ids of users whose training history holds item ``item_id`` (at most ``limit``)."""
        loaded = self.load(run_id)
        users = loaded.opened.users_with_item(loaded.item_index(item_id), limit)
        return loaded.users["id"].to_numpy()[users].tolist()

    # -- projections and neighbours ------------------------------------------------------
    def projection(self, run_id: str, kind: str = "items") -> np.ndarray:
        """2-D map of the run's item or user vectors [n, 2] (one UMAP at a time per process)."""
        if kind not in ("items", "users"):
            raise DashboardError(f"unknown projection {kind!r}: use items or users")
        loaded = self.load(run_id)

        def make() -> np.ndarray:
            with self._umap_lock:
                coords = loaded.opened.projection(kind, self.projection_method)  # type: ignore[arg-type]
            return np.asarray(coords, dtype=np.float64)

        return self._projections.get(("proj", run_id, kind, self.projection_method), make)

    def item_map(self, run_id: str) -> pd.DataFrame:
        """Items with ``x``, ``y`` from the projection and the hover/colour columns."""
        return self._map_frame(run_id, "items")

    def user_map(self, run_id: str) -> pd.DataFrame:
        """Users with ``x``, ``y`` from the projection and their attributes."""
        return self._map_frame(run_id, "users")

    def _map_frame(self, run_id: str, kind: str) -> pd.DataFrame:
        loaded = self.load(run_id)

        def make() -> pd.DataFrame:
            xy = self.projection(run_id, kind)
            opened = loaded.opened
            emb = opened.item_embeddings() if kind == "items" else opened.user_embeddings()
            table = loaded.items if kind == "items" else loaded.users
            rows = np.asarray(emb.index, dtype=np.int64)
            if xy.shape != (rows.shape[0], 2) or (rows.size and rows.max() >= len(table)):
                raise DashboardError(
                    f"the {kind} projection of run {run_id!r} does not match its embeddings: "
                    "train the run again"
                )
            return with_xy(table.iloc[rows], xy)

        return self._projections.get(("map", run_id, kind), make)

    def item_coords(self, run_id: str) -> np.ndarray:
        """Item map coordinates in item order [n_items, 2] (NaN for items without a vector)."""
        frame = self.item_map(run_id)
        coords = np.full((self.load(run_id).opened.n_items, 2), np.nan)
        coords[frame["item"].to_numpy()] = frame[["x", "y"]].to_numpy()
        return coords

    def neighbours(self, run_id: str, item: str, k: int = 10) -> pd.DataFrame:
        """The ``k`` items nearest to ``item`` in the run's item embedding space."""
        loaded = self.load(run_id)
        idx, sim = loaded.opened.neighbours(loaded.item_index(item), k)
        frame = loaded.items.iloc[idx][["id", "title", "genres", "popularity"]].copy()
        frame.insert(0, "similarity", sim)
        return frame.reset_index(drop=True)

    # -- explanations --------------------------------------------------------------------
    def explain(
        self, run_id: str, user: str, item: str, history: np.ndarray | None = None
    ) -> ExplanationView:
        """SPINRec explanation of ``item`` for ``user`` (optionally an edited history)."""
        loaded, u, target, hist = self._target(run_id, user, item, history)

        def make() -> ExplanationView:
            x = loaded.opened.history_vector(hist)
            exp = SpinRec(loaded.split.train).explain(
                loaded.opened.model, x, target, user=u, seed=loaded.opened.seed
            )
            return explanation_view(loaded, target, exp)

        return self._explanations.get(("explain", run_id, u, target, hist.tobytes()), make)

    def fidelity(
        self,
        run_id: str,
        user: str,
        item: str,
        explainers: tuple[str, ...],
        history: np.ndarray | None = None,
    ) -> pd.DataFrame:
        """Deletion and insertion curves of SPINRec and ``explainers`` for one target, from
        one :func:`explainers.batch.explain_target` pass (long frame, see
        :func:`app.dashboard.shaping.fidelity_frame`)."""
        loaded, u, target, hist = self._target(run_id, user, item, history)
        names = tuple(sorted(n for n in explainers if n != "spinrec"))

        def make() -> pd.DataFrame:
            spin = self.explain(run_id, user, item, history=hist)
            built = {n: explainer_registry.create(n, train=loaded.split.train) for n in names}
            x, exclude = ranked_against(loaded, spin.raw)  # ranks as the sentence's, top-K's
            result = explain_target(
                loaded.opened.model, x, target, built, user=u, seed=loaded.opened.seed,
                given={"spinrec": spin.raw}, best_of_kappa=False, exclude=exclude,
            )  # fmt: skip
            return fidelity_frame(result)

        return self._fidelity.get(("fid", run_id, u, target, hist.tobytes(), names), make)

    def _target(
        self, run_id: str, user: str, item: str, history: np.ndarray | None
    ) -> tuple[LoadedRun, int, int, np.ndarray]:
        loaded = self.load(run_id)
        u = loaded.user_index(user)
        target = loaded.item_index(item)
        hist = loaded.history(u) if history is None else np.unique(np.asarray(history, np.int64))
        if hist.size == 0:
            raise DashboardError(
                "this history is empty, so there is nothing to explain: switch some history "
                "items back on (what-if) or pick another user"
            )
        return loaded, u, target, hist

    def baseline_explainers(self) -> list[str]:
        """Names of the baseline explainers that can be compared with SPINRec."""
        return [n for n in explainer_registry.explainer_names() if n != "spinrec"]

    def fidelity_evidence(self, run_id: str) -> str:
        """The explainer comparisons across users stored with the run, in words, or ""."""
        opened = self.load(run_id).opened
        stored = tuple(n for n in opened.run.manifest if n.startswith(FIDELITY_FOLDER))
        key = ("evidence", run_id, stored)
        return self._misc.get(key, lambda: evidence_of(opened.stored_fidelity()))

    # -- diffusion -----------------------------------------------------------------------
    def trajectory(
        self,
        run_id: str,
        user: str,
        k: int = 10,
        fan: int = 1,
        noise_steps: int = 0,
        sampling_noise: bool = False,
    ) -> Trajectory:
        """DiffRec reverse trajectory of ``user`` for seeds 0..fan-1, cached."""
        loaded = self.load(run_id)
        u = loaded.user_index(user)
        if not loaded.opened.is_diffusion:
            raise DashboardError(
                f"run {run_id!r} is a {loaded.model_name} model: the reverse process exists only "
                "for diffrec runs; pick a diffrec run in the sidebar or train one with "
                "`reclens train --dataset synthetic --model diffrec`"
            )
        key = ("traj", run_id, u, int(k), int(fan), int(noise_steps), bool(sampling_noise))

        def make() -> Trajectory:
            coords = self.item_coords(run_id)
            return loaded.opened.trajectory(
                u,
                k=int(k),
                seeds=tuple(range(max(1, int(fan)))),
                noise_steps=int(noise_steps),
                sampling_noise=bool(sampling_noise),
                coords=np.where(np.isfinite(coords), coords, 0.0),
            )

        return self._trajectories.get(key, make)

    def _item_points(self, run_id: str) -> np.ndarray:
        if not run_id:
            raise DashboardError("pick a run to diffuse onto its item map")
        return self.item_map(run_id)[["x", "y"]].to_numpy()

    # -- jobs ----------------------------------------------------------------------------
    def models(self) -> list[str]:
        """Model names that can be trained."""
        return registry.available_models()

    def start_training(
        self,
        source: str,
        model: str,
        epochs: int | None = None,
        seed: int = 0,
        train_options: dict[str, Any] | None = None,
        owner: str = "",
    ) -> TrainingJob:
        """Train ``model`` on ``source`` in a child process; returns the job at once.

        ``train_options`` override the model's training settings (e.g. ``patience``); ``owner``
        is the browser session that started it (its jobs are cancelled when it closes).
        """
        if model not in self.models():
            raise DashboardError(f"unknown model {model!r}: pick one of {', '.join(self.models())}")
        load_options = self.data_options if source == self.default_source else None
        return self.jobs.start(
            source, model, epochs, seed, train_options, load_options, owner=owner
        )

    def job(self, job_id: str) -> TrainingJob | None:
        """The job ``job_id`` (None when unknown)."""
        return self.jobs.job(job_id)

    def _saved(self, run_dir: Path) -> str:
        self.summaries(refresh=True)
        return self.run_id_of(run_dir)


__all__ = ["DEFAULT_MODELS", "DashboardError", "EngineService", "LoadedRun", "TrainingJob"]
