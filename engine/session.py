"""The opened run: a saved run ready for analysis.

:class:`OpenRun` is what every consumer of a saved run works with: the CLI commands, the
benches, the dashboard. It holds the restored model, the prepared dataset and split the run was
trained on (re-created and checked against the run's fingerprint), and dict lookups from raw ids
to indices, and answers the per-user questions they all ask: a user's history and held-out
items, the evaluation mask, the top-K for any (possibly edited) history, an item's neighbours,
item vectors, exposure, beyond-accuracy metrics, projections and the diffusion trajectory.

    opened = OpenRun.open("runs/ml-100k/fism-20260101T120000Z")
    u = opened.user_index("196")
    items, scores = opened.top_k(u, 10)
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
import scipy.sparse as sp
import torch

from data.dataset import Dataset
from data.errors import ReclensError
from data.splits import Split
from engine import beyond, catalogue, neighbours, projection, trajectory
from engine.contract import Recommender
from engine.evaluate import top_k
from engine.models.diffrec import DiffRec
from engine.pipeline import load_context
from engine.run_config import RunConfig
from engine.runs import FIDELITY_FOLDER, Embeddings, Run, load_run, read_derived_table


@dataclass
class OpenRun:
    """A saved run opened for analysis (see the module docstring).

    ``run``: the loaded run (folder, typed config, metrics, model in eval mode); ``dataset`` and
    ``split``: its prepared data. Build it with :meth:`open`.
    """

    run: Run
    dataset: Dataset
    split: Split
    _users: dict[str, int] = field(default_factory=dict, repr=False)
    _items: dict[str, int] = field(default_factory=dict, repr=False)

    def __post_init__(self) -> None:
        self._users = {str(r): i for i, r in enumerate(self.dataset.user_raw_ids.tolist())}
        self._items = {str(r): i for i, r in enumerate(self.dataset.item_raw_ids.tolist())}

    @classmethod
    def open(
        cls,
        path: str | Path,
        device: str | torch.device = "cpu",
        dataset: Dataset | None = None,
    ) -> OpenRun:
        """Load the run folder ``path`` (every file verified) and re-create its data.

        ``dataset``: the loaded dataset, needed only for a run trained on an in-memory one.
        """
        run = load_run(path, device=device)
        prepared, split = load_context(run, dataset)
        return cls(run, prepared, split)

    # -- what the run is ----------------------------------------------------------------------
    @property
    def path(self) -> Path:
        return self.run.path

    @property
    def config(self) -> RunConfig:
        return self.run.config

    @property
    def model(self) -> Recommender:
        return self.run.model

    @property
    def model_name(self) -> str:
        return self.run.name

    @property
    def seed(self) -> int:
        return self.run.seed

    @property
    def n_items(self) -> int:
        return self.dataset.n_items

    @property
    def is_diffusion(self) -> bool:
        """Whether the model has a reverse (denoising) process to show."""
        return isinstance(self.model, DiffRec)

    # -- ids ----------------------------------------------------------------------------------
    def user_index(self, raw_id: str | int) -> int:
        """Index of a user raw id; :class:`ReclensError` naming the dataset when unknown."""
        index = self._users.get(str(raw_id))
        if index is None:
            raise ReclensError(
                f"user {str(raw_id)[:80]!r} is not in dataset {self.dataset.name}: pick a user "
                "in the sidebar (ids are the dataset's own user ids)"
            )
        return index

    def item_index(self, raw_id: str | int) -> int:
        """Index of an item raw id; :class:`ReclensError` when unknown."""
        index = self._items.get(str(raw_id))
        if index is None:
            raise ReclensError(
                f"item {str(raw_id)[:80]!r} is not in dataset {self.dataset.name}: choose an "
                "item from a recommendation list or the item map"
            )
        return index

    def user_raw_id(self, user: int) -> str:
        return str(self.dataset.user_raw_ids[user])

    def item_raw_id(self, item: int) -> str:
        return str(self.dataset.item_raw_ids[item])

    # -- per-user questions ---------------------------------------------------------------------
    def history(self, user: int) -> np.ndarray:
        """The user's training items (the model's input), ascending: int64 [n_hist]."""
        return _row(self.split.train, user)

    def heldout(self, user: int) -> np.ndarray:
        """The user's test items: int64 [n_test]."""
        return _row(self.split.test, user)

    def validation(self, user: int) -> np.ndarray:
        """The user's validation items: int64 [n_valid]."""
        return _row(self.split.valid, user)

    @cached_property
    def eval_mask(self) -> sp.csr_matrix:
        """Items excluded when ranking at test time (train + valid) [n_users, n_items]."""
        return self.split.mask("test")

    def history_vector(self, items: np.ndarray) -> torch.Tensor:
        """A binary history vector float32 [n_items] with ones at ``items``."""
        x = torch.zeros(self.n_items, dtype=torch.float32)
        items = np.asarray(items, dtype=np.int64)
        if items.size:
            x[torch.from_numpy(items)] = 1.0
        return x

    def top_k(
        self, user: int, k: int, history: np.ndarray | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        """Top-``k`` items and scores (two arrays [k'], k' <= k) for ``user``.

        Without ``history`` the model's input is the user's training row and the test-time mask
        applies (train + valid items). With ``history`` (item indices: an edited history) the
        input is that history, and it is masked with the user's validation items. ``k`` is
        capped at the number of rankable items.
        """
        if history is None:
            rows, mask = self.split.train[[user]], self.eval_mask[[user]]
        else:
            rows = _row_matrix(history, self.n_items)
            mask = sp.csr_matrix(((rows + self.split.valid[[user]]) > 0).astype(np.float32))
        k = int(max(1, min(k, self.n_items - mask.nnz)))
        items, scores = top_k(self.model, rows, np.array([0]), k, mask=mask)
        return items[0].astype(np.int64), scores[0].astype(np.float64)

    def users_with_item(self, item: int, limit: int = 500) -> np.ndarray:
        """Indices of users whose training history holds ``item`` (at most ``limit``)."""
        column = self.split.train[:, [item]].tocoo()
        return np.sort(column.row)[:limit].astype(np.int64)

    # -- items ----------------------------------------------------------------------------------
    @cached_property
    def popularity(self) -> np.ndarray:
        """Training interactions per item: int64 [n_items]."""
        return np.asarray(self.split.train.sum(axis=0)).ravel().astype(np.int64)

    @cached_property
    def activity(self) -> np.ndarray:
        """Training interactions per user: int64 [n_users]."""
        return np.diff(self.split.train.indptr).astype(np.int64)

    def item_embeddings(self) -> Embeddings:
        return self.run.item_embeddings()

    def user_embeddings(self) -> Embeddings:
        return self.run.user_embeddings()

    @cached_property
    def item_vectors(self) -> np.ndarray:
        """The saved item vectors in item order float32 [n_items, d] (zeros where missing)."""
        emb = self.item_embeddings()
        out = np.zeros((self.n_items, emb.vectors.shape[1]), dtype=np.float32)
        out[emb.index] = emb.vectors
        return out

    def neighbours(self, item: int, k: int = 10) -> tuple[np.ndarray, np.ndarray]:
        """The ``k`` items most cosine-similar to ``item`` in the run's item vectors."""
        return neighbours.nearest(self.item_vectors, item, k)

    def recommendation_lists(self, k: int) -> tuple[np.ndarray, np.ndarray]:
        """The saved top-``k`` lists of the test users: (recs [U, k], users [U])."""
        return beyond.recommendation_lists(self.run.recommendations(), k)

    def exposure(self, k: int) -> np.ndarray:
        """Per item, the number of test users' saved top-``k`` lists holding it [n_items]."""
        recs, _ = self.recommendation_lists(k)
        return np.asarray(catalogue.exposure(recs, self.n_items), dtype=np.float64)

    # -- derived results ------------------------------------------------------------------------
    def beyond(self, k: int = beyond.STORED_K, group_by: str | None = None) -> beyond.BeyondResult:
        """Beyond-accuracy metrics of the saved top-``k`` lists (optionally by user group)."""
        return beyond.run_metrics(self.run, self.dataset, self.split, k=k, group_by=group_by)

    def store_beyond(self) -> beyond.BeyondResult:
        """Compute and store the K=10 beyond-accuracy metrics with the run."""
        return beyond.store(self.run, self.dataset, self.split)

    def stored_beyond(self) -> dict[str, Any] | None:
        """The stored beyond-accuracy means and catalogue, or None when none are stored."""
        return beyond.load_stored(self.run)

    def stored_fidelity(self) -> pl.DataFrame | None:
        """The per-user fidelity results stored with the run (``reclens fidelity``): of the
        stored files, the one over the most users; None when there is none."""
        names = [n for n in self.run.manifest if n.startswith(FIDELITY_FOLDER)]
        tables = [read_derived_table(self.path, n, self.run.manifest) for n in sorted(names)]
        tables = [t for t in tables if t is not None and t.height]
        return max(tables, key=lambda t: t["user"].n_unique()) if tables else None

    def projection(self, kind: projection.Kind = "items", method: projection.Method = "umap"):
        """2-D map [n, 2] of the run's item or user vectors (stored with the run)."""
        return projection.run_projection(self.run, kind=kind, method=method)

    def trajectory(
        self,
        user: int,
        *,
        k: int = 10,
        top_n: int = 20,
        noise_steps: int = 0,
        seeds: tuple[int, ...] = (0,),
        sampling_noise: bool = False,
        coords: np.ndarray | None = None,
        map_method: projection.Method = "umap",
    ) -> trajectory.Trajectory:
        """The DiffRec reverse trajectory of ``user``'s training row (test items relevant).

        Train and valid items are masked as in the test evaluation, so the last step's metrics
        are the user's evaluation metrics; ``coords`` [n_items, 2] default to the item map made
        by ``map_method``.
        """
        if not self.is_diffusion:
            raise ReclensError(
                f"run {self.path} holds a {self.model_name} model: denoising trajectories "
                "exist only for diffrec runs"
            )
        if coords is None:
            coords = np.zeros((self.n_items, 2))
            emb = self.item_embeddings()
            coords[emb.index] = self.projection("items", map_method)
        mask = np.zeros(self.n_items, dtype=bool)
        mask[_row(self.eval_mask, user)] = True
        return trajectory.trajectory(
            self.model,  # type: ignore[arg-type]
            self.history_vector(self.history(user)).numpy(),
            self.heldout(user),
            coords,
            k=k,
            top_n=top_n,
            noise_steps=noise_steps,
            seeds=seeds,
            sampling_noise=sampling_noise,
            mask=mask,
            item_raw_ids=self.dataset.item_raw_ids,
            user=self.user_raw_id(user),
        )


def _row(matrix: sp.csr_matrix, user: int) -> np.ndarray:
    return matrix.indices[matrix.indptr[user] : matrix.indptr[user + 1]].astype(np.int64)


def _row_matrix(items: np.ndarray, n_items: int) -> sp.csr_matrix:
    items = np.unique(np.asarray(items, dtype=np.int64))
    data = np.ones(items.shape[0], dtype=np.float32)
    return sp.csr_matrix((data, (np.zeros_like(items), items)), shape=(1, n_items))
