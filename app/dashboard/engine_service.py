"""The dashboard's one engine service per server process: datasets, runs, caches and jobs.

Sessions only read from it or start jobs. It holds:

- the runs folder and the list of runs in it; a run id is the run folder's path relative to the
  runs folder (e.g. ``synthetic/ease-20250101T120000Z``) and is only ever *looked up* in that
  list, never joined into a path, so nothing a browser sends can reach another folder;
- loaded runs (model, dataset, split, item and user tables), least recently used first out;
- bounded caches of projections, explanations, fidelity curves and trajectories;
- training jobs running in background worker threads, each with its progress and a cancel event.

Everything here is orchestration: the numbers come from :mod:`engine`, :mod:`explainers` and
:mod:`data`. Every failure a user can cause raises :class:`~data.errors.ReclensError` with a
one-line message saying what to do.
"""

from __future__ import annotations

import importlib
import threading
import time
import traceback
import uuid
from collections import OrderedDict
from collections.abc import Callable, Hashable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import scipy.sparse as sp
import torch

from data.dataset import Dataset
from data.errors import ReclensError
from data.splits import Split

DEFAULT_MODELS: tuple[str, ...] = ("ease", "mf", "multvae", "diffrec")
"""Models ``reclens demo`` trains when the runs folder is empty."""

TOY_ITERS = 800
"""Training iterations of the teaching diffusion (a few seconds on one CPU thread)."""
TOY_TRAIN_STEPS = 100
"""Diffusion steps T the teaching model is trained with; samplers stride over them."""

LEADERBOARD_BEYOND: tuple[str, ...] = (
    "novelty",
    "arp",
    "long_tail_share",
    "ild_cooccurrence",
    "ild_genre",
    "calibration_kl",
    "coverage",
    "gini",
    "gini_corrected",
    "personalization",
)
"""Beyond-accuracy means shown beside accuracy on the leaderboard (when stored with a run)."""


class DashboardError(ReclensError):
    """Something the page cannot show; the message says what to do."""


def engine_module(name: str, feature: str) -> Any:
    """Import an engine module by name, or say which part of RecLens is missing."""
    try:
        return importlib.import_module(name)
    except ImportError as err:
        raise DashboardError(
            f"{feature} needs the module {name}, which is not available in this installation "
            f"({err}); reinstall RecLens with `make install`"
        ) from err


class LRU:
    """A small thread-safe least-recently-used cache."""

    def __init__(self, size: int) -> None:
        self.size = size
        self._data: OrderedDict[Hashable, Any] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, key: Hashable, make: Callable[[], Any]) -> Any:
        """The cached value for ``key``, computed by ``make()`` (outside the lock) when absent."""
        with self._lock:
            if key in self._data:
                self._data.move_to_end(key)
                return self._data[key]
        value = make()
        with self._lock:
            self._data[key] = value
            self._data.move_to_end(key)
            while len(self._data) > self.size:
                self._data.popitem(last=False)
        return value

    def drop(self, predicate: Callable[[Hashable], bool]) -> None:
        """Forget every entry whose key satisfies ``predicate``."""
        with self._lock:
            for key in [k for k in self._data if predicate(k)]:
                del self._data[key]

    def __len__(self) -> int:
        return len(self._data)


@dataclass
class LoadedRun:
    """A run ready for the views.

    ``items``: pandas frame [n_items] with ``item`` (index), ``id`` (raw id), ``label``
    (title), ``title``, ``genres`` (joined text), ``genre`` (first genre), ``year``,
    ``popularity`` (training interactions) and, for synthetic data, ``community`` (the community
    that favours the item's main genre most); ``users``: pandas frame [n_users] with ``user``,
    ``id``, ``label``, ``activity`` (training interactions) and the user attributes.
    """

    run_id: str
    run: Any
    dataset: Dataset
    split: Split
    items: pd.DataFrame
    users: pd.DataFrame
    mask: sp.csr_matrix

    @property
    def model(self) -> Any:
        return self.run.model

    @property
    def model_name(self) -> str:
        return str(self.run.name)

    def user_index(self, raw_id: str) -> int:
        """Index of a user raw id; a friendly error naming the dataset when unknown."""
        try:
            return self.dataset.user_index(str(raw_id))
        except ReclensError as err:
            raise DashboardError(
                f"user {raw_id!r} is not in dataset {self.dataset.name}: pick a user in the "
                "sidebar (ids are the dataset's own user ids)"
            ) from err

    def item_index(self, raw_id: str) -> int:
        """Index of an item raw id; a friendly error when unknown."""
        try:
            return self.dataset.item_index(str(raw_id))
        except ReclensError as err:
            raise DashboardError(
                f"item {raw_id!r} is not in dataset {self.dataset.name}: choose an item from a "
                "recommendation list or the item map"
            ) from err

    def history(self, user: int) -> np.ndarray:
        """The user's training items (the model's input), ascending: int64 [n_hist]."""
        row = self.split.train
        return row.indices[row.indptr[user] : row.indptr[user + 1]].astype(np.int64)

    def heldout(self, user: int) -> np.ndarray:
        """The user's test items: int64 [n_test]."""
        m = self.split.test
        return m.indices[m.indptr[user] : m.indptr[user + 1]].astype(np.int64)


@dataclass
class TrainingJob:
    """A training run in a background worker thread.

    ``reports`` grows with one dict (``epoch``, ``loss``, ``valid``, ``seconds``, ``epochs``)
    per epoch; ``status`` is ``running``, ``done``, ``cancelled`` or ``failed``; ``run_id``
    names the saved run when done.
    """

    id: str
    source: str
    model: str
    epochs: int | None
    cancel: threading.Event = field(default_factory=threading.Event)
    reports: list[dict[str, Any]] = field(default_factory=list)
    status: str = "running"
    message: str = ""
    run_id: str = ""
    started: float = field(default_factory=time.time)
    thread: threading.Thread | None = None

    @property
    def progress(self) -> float:
        """Share of planned epochs done, 0..1 (1 when finished)."""
        if self.status != "running":
            return 1.0
        if not self.reports:
            return 0.0
        last = self.reports[-1]
        planned = last.get("epochs") or self.epochs or 0
        return min(1.0, float(last["epoch"]) / planned) if planned else 0.0


class EngineService:
    """Datasets, runs, caches and background jobs shared by every session of one server."""

    def __init__(
        self,
        runs_root: str | Path,
        default_source: str = "synthetic",
        data_options: dict[str, Any] | None = None,
        device: str = "cpu",
        max_runs: int = 8,
        projection_method: str = "umap",
    ) -> None:
        self.runs_root = Path(runs_root).expanduser()
        self.default_source = default_source
        self.data_options = dict(data_options or {})
        self.device = device
        self.projection_method = projection_method
        self._lock = threading.RLock()
        self._umap_lock = threading.Lock()
        self._runs: LRU = LRU(max_runs)
        self._datasets: LRU = LRU(4)
        self._projections: LRU = LRU(4 * max_runs)
        self._explanations: LRU = LRU(256)
        self._fidelity: LRU = LRU(128)
        self._trajectories: LRU = LRU(64)
        self._misc: LRU = LRU(64)
        self._jobs: dict[str, TrainingJob] = {}
        self._listing: tuple[float, list[Any]] = (0.0, [])

    # -- runs ----------------------------------------------------------------------------
    def summaries(self, refresh: bool = False) -> list[Any]:
        """Complete runs in the runs folder (engine ``RunSummary``), newest first (cached 2 s)."""
        with self._lock:
            stamp, listing = self._listing
            if refresh or time.monotonic() - stamp > 2.0:
                runs = engine_module("engine.runs", "Listing runs")
                listing = runs.list_runs(self.runs_root) if self.runs_root.is_dir() else []
                self._listing = (time.monotonic(), listing)
            return list(listing)

    def run_id_of(self, path: Path) -> str:
        """The id of a run folder: its path relative to the runs folder, with ``/``."""
        try:
            return path.resolve().relative_to(self.runs_root.resolve()).as_posix() or path.name
        except ValueError:
            return path.name

    def run_ids(self, dataset: str | None = None) -> list[str]:
        """Ids of the listed runs, newest first, optionally only those of one dataset."""
        return [
            self.run_id_of(s.path)
            for s in self.summaries()
            if dataset is None or not dataset or s.dataset == dataset
        ]

    def summary(self, run_id: str) -> Any:
        """The listing entry of ``run_id``; :class:`DashboardError` when it is not listed."""
        for s in self.summaries():
            if self.run_id_of(s.path) == run_id:
                return s
        for s in self.summaries(refresh=True):
            if self.run_id_of(s.path) == run_id:
                return s
        raise DashboardError(
            f"run {run_id!r} is not in the runs folder {self.runs_root}: pick a run in the "
            f"sidebar, or train one with `reclens train --dataset synthetic --model ease "
            f"--out {self.runs_root}` (or `reclens demo`)"
        )

    def datasets(self) -> list[str]:
        """Dataset names that have runs, most recent first."""
        seen: dict[str, None] = {}
        for s in self.summaries():
            seen.setdefault(s.dataset, None)
        return list(seen)

    def load(self, run_id: str) -> LoadedRun:
        """The loaded run ``run_id`` (model on CPU, dataset and split rebuilt), cached."""
        summary = self.summary(run_id)  # validates the id against the listing
        path = summary.path

        def make() -> LoadedRun:
            runs = engine_module("engine.runs", "Loading a run")
            pipeline = engine_module("engine.pipeline", "Loading a run")
            run = runs.load_run(path, device=self.device)
            dataset, split = pipeline.load_context(run)
            if dataset.n_users == 0 or dataset.n_items == 0:
                raise DashboardError(
                    f"run {run_id!r} was trained on an empty dataset: train again on data with "
                    "interactions, e.g. `reclens demo`"
                )
            return LoadedRun(
                run_id=run_id,
                run=run,
                dataset=dataset,
                split=split,
                items=item_table(dataset, split),
                users=user_table(dataset, split),
                mask=split.mask("test"),
            )

        return self._runs.get(("run", run_id, str(path)), make)

    def leaderboard(self) -> pd.DataFrame:
        """One row per run: id, dataset, model, test metrics, beyond-accuracy means, seconds."""
        rows = []
        for s in self.summaries():
            row: dict[str, Any] = {
                "run": self.run_id_of(s.path),
                "dataset": s.dataset,
                "model": s.model,
                "created": s.created,
            }
            row.update({k: _num(v) for k, v in s.metrics.items() if _is_number(v)})
            row.update({f"train {k}": _num(v) for k, v in s.seconds.items() if _is_number(v)})
            rows.append(row)
        return pd.DataFrame(rows)

    def beyond_means(self, run_id: str) -> dict[str, float]:
        """Stored beyond-accuracy means of a run (those in :data:`LEADERBOARD_BEYOND`), or {}."""
        summary = self.summary(run_id)

        def make() -> dict[str, float]:
            beyond = engine_module("engine.beyond", "Beyond-accuracy metrics")
            try:
                stored = beyond.load_stored(summary.path)
            except ReclensError:
                return {}
            if not stored:
                return {}
            values = {**stored.get("per_user_mean", {}), **stored.get("catalogue", {})}
            return {k: _num(values.get(k)) for k in LEADERBOARD_BEYOND if k in values}

        key = ("beyond-means", run_id, _mtime(summary.path / "beyond_metrics.json"))
        return self._misc.get(key, make)

    def beyond(self, run_id: str, k: int = 10, group_by: str = "") -> Any:
        """Beyond-accuracy result (per-user table, catalogue, group gaps) of the run's top-``k``.

        Computed by :func:`engine.beyond.run_metrics` once per (run, K, grouping); the K=10
        ungrouped result is also stored in the run folder for the leaderboard.
        """
        loaded = self.load(run_id)
        beyond = engine_module("engine.beyond", "Beyond-accuracy metrics")
        k = int(max(1, min(k, 100)))

        def make() -> Any:
            save = k == 10 and not group_by
            return beyond.run_metrics(loaded.run, k=k, group_by=group_by or None, save=save)

        return self._misc.get(("beyond", run_id, k, group_by), make)

    def groupings(self, run_id: str) -> list[str]:
        """User groupings the fairness tab can compare (attributes and derived ones)."""
        loaded = self.load(run_id)
        groups = engine_module("engine.groups", "Group comparison")
        return list(groups.available_groupings(loaded.dataset))

    def exposure(self, run_id: str, k: int) -> pd.DataFrame:
        """Per item: ``id``, ``title``, ``popularity`` (training) and ``exposure`` (number of
        test users' top-``k`` lists holding it)."""
        loaded = self.load(run_id)
        beyond = engine_module("engine.beyond", "Exposure")
        catalogue = engine_module("engine.catalogue", "Exposure")

        def make() -> pd.DataFrame:
            recs, _ = beyond.recommendation_lists(loaded.run.recommendations(), int(k))
            counts = catalogue.exposure(recs, loaded.dataset.n_items)
            frame = loaded.items[["id", "title", "genre", "popularity"]].copy()
            frame["exposure"] = np.asarray(counts, dtype=np.float64)
            return frame

        return self._misc.get(("exposure", run_id, int(k)), make)

    def source_of(self, dataset: str) -> str:
        """The source to train on for a dataset name (from a run's config, else the default)."""
        runs = engine_module("engine.runs", "Training")
        for s in self.summaries():
            if s.dataset == dataset:
                try:
                    return str(runs.read_json(s.path / "config.json")["dataset"]["source"])
                except (ReclensError, KeyError, TypeError):
                    continue
        return self.default_source

    # -- datasets ------------------------------------------------------------------------
    def dataset(self, source: str | None = None) -> Dataset:
        """The dataset ``source`` (default: the server's), loaded once."""
        source = source or self.default_source
        loaders = engine_module("data.loaders", "Loading a dataset")
        options = self.data_options if source == self.default_source else {}
        key = ("dataset", source, tuple(sorted(options.items())))
        return self._datasets.get(key, lambda: loaders.load(source, **options))

    def dataset_card(self, run_id: str) -> dict[str, Any]:
        """Dataset summary numbers plus per-item and per-user interaction counts."""
        loaded = self.load(run_id)

        def make() -> dict[str, Any]:
            summary = engine_module("data.summary", "The dataset card")
            card = summary.summarize(loaded.dataset)
            inter = loaded.dataset.interactions
            card["item_counts"] = np.bincount(
                inter["item"].to_numpy().astype(np.int64), minlength=loaded.dataset.n_items
            )
            card["user_counts"] = np.bincount(
                inter["user"].to_numpy().astype(np.int64), minlength=loaded.dataset.n_users
            )
            return card

        return self._misc.get(("card", run_id), make)

    # -- recommendations -----------------------------------------------------------------
    def recommend(
        self, run_id: str, user: str, k: int, history: np.ndarray | None = None
    ) -> pd.DataFrame:
        """Top-``k`` for ``user`` (raw id): ``rank``, ``item``, ``id``, ``title``, ``genres``,
        ``score``, ``heldout`` (a test item: a hit).

        With ``history`` (item indices), the user's history is replaced by it (what-if); the
        mask then holds the edited history plus the user's validation items.
        """
        loaded = self.load(run_id)
        u = loaded.user_index(user)
        evaluate = engine_module("engine.evaluate", "Recommendations")
        if history is None:
            rows = loaded.split.train[[u]]
            mask = loaded.mask[[u]]
        else:
            rows = _row_matrix(history, loaded.dataset.n_items)
            valid = loaded.split.valid[[u]]
            mask = sp.csr_matrix(((rows + valid) > 0).astype(np.float32))
        k = int(max(1, min(k, loaded.dataset.n_items - rows.nnz)))
        items, scores = evaluate.top_k(loaded.model, rows, np.array([0]), k, mask=mask)
        held = set(loaded.heldout(u).tolist())
        frame = loaded.items.iloc[items[0]][["item", "id", "title", "genres"]].copy()
        frame.insert(0, "rank", np.arange(1, len(frame) + 1))
        frame["score"] = scores[0].astype(np.float64)
        frame["heldout"] = [int(i) in held for i in items[0]]
        return frame.reset_index(drop=True)

    def history_table(self, run_id: str, user: str) -> pd.DataFrame:
        """The user's training history: ``item``, ``id``, ``title``, ``genres``, ``popularity``."""
        loaded = self.load(run_id)
        u = loaded.user_index(user)
        return (
            loaded.items.iloc[loaded.history(u)][["item", "id", "title", "genres", "popularity"]]
            .reset_index(drop=True)
            .copy()
        )

    def users_with_item(self, run_id: str, item_id: str, limit: int = 500) -> list[str]:
        """Raw ids of users whose training history holds item ``item_id`` (at most ``limit``)."""
        loaded = self.load(run_id)
        i = loaded.item_index(item_id)
        col = loaded.split.train[:, [i]].tocoo()
        users = np.sort(col.row)[:limit]
        return loaded.users["id"].to_numpy()[users].tolist()

    # -- projections and neighbours ------------------------------------------------------
    def projection(self, run_id: str, kind: str = "items") -> np.ndarray:
        """2-D UMAP of the run's item or user embeddings [n, 2] (cached with the run).

        UMAP runs one at a time in the whole process.
        """
        if kind not in ("items", "users"):
            raise DashboardError(f"unknown projection {kind!r}: use items or users")
        loaded = self.load(run_id)

        def make() -> np.ndarray:
            projection = engine_module("engine.projection", "The embedding map")
            with self._umap_lock:
                coords = projection.run_projection(
                    loaded.run, kind=kind, method=self.projection_method
                )
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
            emb = loaded.run.item_embeddings() if kind == "items" else loaded.run.user_embeddings()
            table = loaded.items if kind == "items" else loaded.users
            rows = np.asarray(emb.index, dtype=np.int64)
            if rows.shape[0] != xy.shape[0] or (rows.size and rows.max() >= len(table)):
                raise DashboardError(
                    f"the {kind} projection of run {run_id!r} does not match its embeddings: "
                    "delete the run's *_2d.parquet files and reload the page"
                )
            return _with_xy(table.iloc[rows], xy, kind)

        return self._projections.get(("map", run_id, kind), make)

    def neighbours(self, run_id: str, item: str, k: int = 10) -> pd.DataFrame:
        """The ``k`` items nearest to ``item`` in the run's item embedding space."""
        loaded = self.load(run_id)
        i = loaded.item_index(item)
        neighbours = engine_module("engine.neighbours", "Nearest items")

        def vectors() -> np.ndarray:
            emb = loaded.run.item_embeddings()
            out = np.zeros((loaded.dataset.n_items, emb.vectors.shape[1]), dtype=np.float32)
            out[emb.index] = emb.vectors
            return out

        vecs = self._misc.get(("itemvec", run_id), vectors)
        idx, sim = neighbours.nearest(vecs, i, k)
        frame = loaded.items.iloc[idx][["id", "title", "genres", "popularity"]].copy()
        frame.insert(0, "similarity", sim)
        return frame.reset_index(drop=True)

    # -- explanations --------------------------------------------------------------------
    def explain(
        self, run_id: str, user: str, item: str, history: np.ndarray | None = None
    ) -> dict[str, Any]:
        """SPINRec explanation of ``item`` for ``user`` (optionally with an edited history).

        Returns ``attributions`` (frame: ``id``, ``title``, ``attribution``, ``share``,
        ``sign``), ``target`` (title), ``probability``, ``baseline`` (raw id of the chosen
        baseline user or a description), ``alternatives`` (frame of candidate baselines with
        their criterion value), ``alphas`` [n_alpha], ``paths`` [kappa, n_alpha], ``chosen``
        (path index) and ``path_labels``.
        """
        loaded = self.load(run_id)
        u = loaded.user_index(user)
        target = loaded.item_index(item)
        hist = loaded.history(u) if history is None else np.unique(np.asarray(history, np.int64))
        key = ("explain", run_id, u, target, hist.tobytes())
        return self._explanations.get(key, lambda: self._spinrec(loaded, u, target, hist))

    def _spinrec(
        self, loaded: LoadedRun, user: int, target: int, hist: np.ndarray
    ) -> dict[str, Any]:
        adapter = engine_module("explainers.spinrec", "SPINRec explanations")
        return explain_with_spinrec(adapter, loaded, user, target, hist)

    def fidelity(
        self,
        run_id: str,
        user: str,
        item: str,
        explainers: tuple[str, ...],
        history: np.ndarray | None = None,
    ) -> pd.DataFrame:
        """Deletion and insertion curves of SPINRec and ``explainers`` for one target.

        A long frame: ``explainer``, ``kind`` (deletion/insertion), ``fraction``,
        ``probability``.
        """
        loaded = self.load(run_id)
        u = loaded.user_index(user)
        target = loaded.item_index(item)
        hist = loaded.history(u) if history is None else np.unique(np.asarray(history, np.int64))
        key = ("fid", run_id, u, target, hist.tobytes(), tuple(sorted(explainers)))

        def make() -> pd.DataFrame:
            return fidelity_frame(self, loaded, u, target, hist, explainers)

        return self._fidelity.get(key, make)

    def baseline_explainers(self) -> list[str]:
        """Names of the baseline explainers that can be compared with SPINRec."""
        try:
            registry = importlib.import_module("explainers.registry")
        except ImportError:
            return []
        names = list(getattr(registry, "explainer_names", lambda: [])())
        return [n for n in names if n != "spinrec"]

    # -- diffusion -----------------------------------------------------------------------
    def is_diffrec(self, run_id: str) -> bool:
        """Whether the run's model is a DiffRec (has a reverse trajectory)."""
        return self.load(run_id).model_name == "diffrec"

    def item_coords(self, run_id: str) -> np.ndarray:
        """Item map coordinates in item order [n_items, 2] (NaN for items without a vector)."""
        loaded = self.load(run_id)
        frame = self.item_map(run_id)
        coords = np.full((loaded.dataset.n_items, 2), np.nan)
        coords[frame["item"].to_numpy()] = frame[["x", "y"]].to_numpy()
        return coords

    def trajectory(
        self,
        run_id: str,
        user: str,
        k: int = 10,
        fan: int = 1,
        noise_steps: int = 0,
        sampling_noise: bool = False,
    ) -> Any:
        """DiffRec reverse trajectory of ``user`` (:class:`engine.trajectory.Trajectory`) for
        seeds 0..fan-1, cached."""
        loaded = self.load(run_id)
        loaded.user_index(user)
        if loaded.model_name != "diffrec":
            raise DashboardError(
                f"run {run_id!r} is a {loaded.model_name} model: the reverse process exists only "
                "for diffrec runs; pick a diffrec run in the sidebar or train one with "
                "`reclens train --dataset synthetic --model diffrec`"
            )
        module = engine_module("engine.trajectory", "The diffusion trajectory")
        key = ("traj", run_id, str(user), int(k), int(fan), int(noise_steps), bool(sampling_noise))

        def make() -> Any:
            coords = self.item_coords(run_id)
            coords = np.where(np.isfinite(coords), coords, 0.0)
            return module.trajectory_for_run(
                loaded.run,
                str(user),
                k=int(k),
                seeds=tuple(range(max(1, int(fan)))),
                noise_steps=int(noise_steps),
                sampling_noise=bool(sampling_noise),
                coords=coords,
            )

        return self._trajectories.get(key, make)

    def toy_model(self, shape: str, schedule: str, n_steps: int, run_id: str = "") -> Any:
        """A trained 2-D teaching DDPM on a shape (or, for ``shape="item map"``, the run's item
        map), shared by all sessions."""
        toy = engine_module("engine.toy_diffusion", "The teaching diffusion")
        key = ("toy", shape, schedule, int(n_steps), run_id if shape == "item map" else "")

        def make() -> Any:
            if shape == "item map":
                if not run_id:
                    raise DashboardError("pick a run to diffuse onto its item map")
                points = self.item_map(run_id)[["x", "y"]].to_numpy()
            else:
                points = shape
            return toy.ToyDiffusion.train(
                points, n_steps=int(n_steps), schedule=schedule, iters=TOY_ITERS
            )

        return self._misc.get(key, make)

    def toy_frames(
        self,
        shape: str,
        schedule: str,
        sampler: str,
        n_steps: int,
        run_id: str = "",
        n_particles: int = 400,
        seed: int = 0,
    ) -> np.ndarray:
        """Particle positions [n_steps + 1, n_particles, 2] from noise to samples."""
        model = self.toy_model(shape, schedule, TOY_TRAIN_STEPS, run_id)
        key = ("toyframes", shape, schedule, sampler, int(n_steps), run_id, n_particles, seed)
        return self._misc.get(
            key,
            lambda: np.asarray(
                model.sample(n_particles, sampler=sampler, n_steps=int(n_steps), seed=seed)
            ),
        )

    def toy_target(self, shape: str, run_id: str = "") -> np.ndarray:
        """The points the teaching diffusion learns [n, 2] (for drawing them faintly)."""
        if shape == "item map":
            return self.item_map(run_id)[["x", "y"]].to_numpy()
        toy = engine_module("engine.toy_diffusion", "The teaching diffusion")
        return np.asarray(toy.make_shape(shape, n=800))

    # -- jobs ----------------------------------------------------------------------------
    def models(self) -> list[str]:
        """Model names whose class is available."""
        registry = engine_module("engine.registry", "Training")
        return list(registry.available_models())

    def start_training(
        self,
        source: str,
        model: str,
        epochs: int | None = None,
        seed: int = 0,
        train_options: dict[str, Any] | None = None,
    ) -> TrainingJob:
        """Train ``model`` on ``source`` in a background thread; returns the job at once.

        ``train_options`` override the model's training settings (e.g. ``patience``).
        """
        if model not in self.models():
            raise DashboardError(f"unknown model {model!r}: pick one of {', '.join(self.models())}")
        job = TrainingJob(id=uuid.uuid4().hex[:12], source=source, model=model, epochs=epochs)

        def progress(report: Any) -> None:
            job.reports.append(
                {
                    "epoch": int(getattr(report, "epoch", len(job.reports) + 1)),
                    "loss": _num(getattr(report, "loss", None)),
                    "valid": _num(getattr(report, "valid", None)),
                    "seconds": _num(getattr(report, "seconds", None)),
                    "epochs": int(getattr(report, "epochs", 0) or 0),
                }
            )

        def work() -> None:
            try:
                pipeline = engine_module("engine.pipeline", "Training")
                result = pipeline.train_run(
                    source,
                    model,
                    seed=seed,
                    device=self.device,
                    epochs=epochs,
                    out=self.runs_root,
                    progress=progress,
                    cancel=job.cancel,
                    train_options=dict(train_options or {}),
                    **self._train_options(source),
                )
                job.run_id = self.run_id_of(Path(result.run_dir))
                store_beyond(Path(result.run_dir))
                job.status, job.message = "done", f"saved run {job.run_id}"
                self.summaries(refresh=True)
            except ReclensError as err:
                job.status, job.message = (
                    ("cancelled" if job.cancel.is_set() else "failed"),
                    str(err),
                )
            except Exception as err:  # noqa: BLE001 - reported on the page, never raised
                job.status = "failed"
                job.message = f"{type(err).__name__}: {err}"
                traceback.print_exc()

        job.thread = threading.Thread(target=work, name=f"reclens-train-{job.id}", daemon=True)
        with self._lock:
            self._jobs[job.id] = job
        job.thread.start()
        return job

    def _train_options(self, source: str) -> dict[str, Any]:
        if source == self.default_source and self.data_options:
            return {"load_options": dict(self.data_options)}
        return {}

    def job(self, job_id: str) -> TrainingJob | None:
        """The job ``job_id`` (None when unknown)."""
        return self._jobs.get(job_id)

    def jobs(self) -> list[TrainingJob]:
        """Every job started by this server, newest first."""
        return sorted(self._jobs.values(), key=lambda j: j.started, reverse=True)

    def forget(self, run_id: str) -> None:
        """Drop every cache entry of ``run_id`` (after its folder changed)."""
        for cache in (self._runs, self._projections, self._explanations, self._fidelity):
            cache.drop(lambda key: isinstance(key, tuple) and len(key) > 1 and key[1] == run_id)


def store_beyond(run_dir: Path) -> None:
    """Compute and store a new run's beyond-accuracy metrics at K=10 (for the leaderboard)."""
    try:
        beyond = importlib.import_module("engine.beyond")
        beyond.run_metrics(run_dir, k=10, save=True)
    except (ImportError, ReclensError) as err:
        print(f"reclens: beyond-accuracy metrics not stored for {run_dir}: {err}")


# -- tables built from the dataset --------------------------------------------------------
def item_table(dataset: Dataset, split: Split) -> pd.DataFrame:
    """Items for display: ids, titles, genres, year, training popularity and (synthetic) truth."""
    items = dataset.items
    genres = items["genres"].to_list()
    popularity = np.asarray(split.train.sum(axis=0)).ravel().astype(np.int64)
    frame = pd.DataFrame(
        {
            "item": items["item"].to_numpy().astype(np.int64),
            "id": items["raw_id"].to_list(),
            "title": items["title"].to_list(),
            "genres": [", ".join(g or []) for g in genres],
            "genre": [(g[0] if g else "(none)") for g in genres],
            "year": items["year"].to_list(),
            "popularity": popularity,
        }
    )
    frame["label"] = frame["title"]
    truth = dataset.truth
    if truth is not None and truth.item_genre.shape[0] == len(frame):
        affinity = np.asarray(truth.community_genre_affinity)
        frame["community"] = affinity[:, truth.item_genre].argmax(axis=0).astype(str)
    return frame


def user_table(dataset: Dataset, split: Split) -> pd.DataFrame:
    """Users for display: ids, training activity, attributes (and synthetic community)."""
    users = dataset.users
    frame = users.drop("user").rename({"raw_id": "id"}).to_pandas()
    frame.insert(0, "user", users["user"].to_numpy().astype(np.int64))
    frame["label"] = "user " + frame["id"].astype(str)
    frame["activity"] = np.diff(split.train.indptr).astype(np.int64)
    if "community" in frame.columns:
        frame["community"] = frame["community"].astype(str)
    return frame


def attribute_columns(users: pd.DataFrame) -> list[str]:
    """User attribute columns that can group users (few distinct values)."""
    skip = {"user", "id", "label", "activity", "x", "y"}
    return [c for c in users.columns if c not in skip and users[c].nunique(dropna=True) <= 40]


def _with_xy(frame: pd.DataFrame, xy: np.ndarray, what: str) -> pd.DataFrame:
    if xy.ndim != 2 or xy.shape[1] != 2 or xy.shape[0] != len(frame):
        raise DashboardError(
            f"the {what} projection has shape {xy.shape}, expected [{len(frame)}, 2]: delete the "
            "run's projection cache file and reload the page"
        )
    out = frame.reset_index(drop=True).copy()
    out["x"] = xy[:, 0]
    out["y"] = xy[:, 1]
    return out


def _row_matrix(items: np.ndarray, n_items: int) -> sp.csr_matrix:
    items = np.unique(np.asarray(items, dtype=np.int64))
    data = np.ones(items.shape[0], dtype=np.float32)
    return sp.csr_matrix((data, (np.zeros_like(items), items)), shape=(1, n_items))


def _mtime(path: Path) -> float:
    try:
        return path.stat().st_mtime
    except OSError:
        return 0.0


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _num(value: Any) -> float | None:
    if value is None:
        return None
    try:
        out = float(value)
    except (TypeError, ValueError):
        return None
    return out if np.isfinite(out) else None


def history_tensor(hist: np.ndarray, n_items: int) -> torch.Tensor:
    """A binary history vector [n_items] (float32) with ones at ``hist``."""
    x = torch.zeros(n_items, dtype=torch.float32)
    if hist.size:
        x[torch.from_numpy(np.asarray(hist, dtype=np.int64))] = 1.0
    return x


def explain_with_spinrec(
    module: Any, loaded: LoadedRun, user: int, target: int, hist: np.ndarray
) -> dict[str, Any]:
    """Run SPINRec from ``module`` (explainers.spinrec) and shape its result for the views."""
    if hist.size == 0:
        raise DashboardError(
            "this history is empty, so there is nothing to explain: switch some history items "
            "back on (what-if) or pick another user"
        )
    x = history_tensor(hist, loaded.dataset.n_items)
    explainer = module.SpinRec(loaded.split.train)
    exp = explainer.explain(loaded.model, x, target, user=user, seed=loaded.run.seed)
    items = loaded.items
    titles = items["title"].to_numpy()[exp.items].tolist()
    ids = items["id"].to_numpy()[exp.items].tolist()
    user_ids = loaded.users["id"].to_numpy()
    baselines = np.asarray(exp.baseline_users, dtype=np.int64)
    labels = [f"path {k + 1}: user {user_ids[b]}" for k, b in enumerate(baselines)]
    criterion = np.asarray(exp.criterion, dtype=np.float64)
    alternatives = pd.DataFrame(
        {
            "path": np.arange(1, baselines.shape[0] + 1),
            "baseline user": user_ids[baselines],
            "history size": np.diff(loaded.split.train.indptr)[baselines],
            "deletion AUC": criterion,
            "chosen": np.arange(baselines.shape[0]) == int(exp.chosen),
        }
    ).sort_values(["deletion AUC", "path"], kind="stable")
    from app.dashboard.plots.explain import attribution_frame

    return {
        "attributions": attribution_frame(titles, ids, np.asarray(exp.scores)),
        "target": str(items["title"].iloc[target]),
        "target_id": str(items["id"].iloc[target]),
        "probability": float(exp.target_probability),
        "baseline": str(user_ids[baselines[int(exp.chosen)]]),
        "alternatives": alternatives.reset_index(drop=True),
        "alphas": np.asarray(exp.alphas, dtype=np.float64),
        "paths": np.asarray(exp.path_probability, dtype=np.float64),
        "chosen": int(exp.chosen),
        "path_labels": labels,
        "scores": np.asarray(exp.scores, dtype=np.float64),
        "items": np.asarray(exp.items, dtype=np.int64),
        "seconds": float(exp.seconds),
    }


def fidelity_frame(
    service: EngineService,
    loaded: LoadedRun,
    user: int,
    target: int,
    hist: np.ndarray,
    explainers: tuple[str, ...],
) -> pd.DataFrame:
    """Deletion/insertion curves of SPINRec and baseline explainers as one long frame.

    Every explainer's map over the same history goes through
    :func:`explainers.fidelity.fidelity_curves` in one batched call.
    """
    fidelity = engine_module("explainers.fidelity", "Fidelity curves")
    spin = service.explain(
        loaded.run_id,
        str(loaded.users["id"].iloc[user]),
        str(loaded.items["id"].iloc[target]),
        history=hist,
    )
    x = history_tensor(hist, loaded.dataset.n_items)
    names, maps = ["spinrec"], [spin["scores"]]
    for name in explainers:
        if name == "spinrec":
            continue
        exp = make_explainer(name, loaded).explain(
            loaded.model, x, target, user=user, seed=loaded.run.seed
        )
        names.append(name)
        maps.append(np.asarray(exp.scores, dtype=np.float64))
    res = fidelity.fidelity_curves(loaded.model, x, target, np.stack(maps), spin["items"])
    fractions = res.counts / max(int(spin["items"].shape[0]), 1)
    rows = []
    for kind, key in (("deletion", "del"), ("insertion", "ins")):
        curves = res.curves[key]
        for m, name in enumerate(names):
            rows.append(
                pd.DataFrame(
                    {
                        "explainer": name,
                        "kind": kind,
                        "fraction": fractions,
                        "probability": curves[m],
                    }
                )
            )
    return pd.concat(rows, ignore_index=True)


def make_explainer(name: str, loaded: LoadedRun) -> Any:
    """A baseline explainer by registry name, built for this run's training matrix."""
    registry = engine_module("explainers.registry", "Baseline explainers")
    return registry.create(name, train=loaded.split.train)


__all__ = ["DEFAULT_MODELS", "EngineService", "LoadedRun", "TrainingJob"]
