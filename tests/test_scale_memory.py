"""Bounded memory at scale: streamed full-ranking evaluation equals the dense computation, and
compressed item/user representations are computed without the dense user x item products."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp
import torch
from torch import Tensor

from data.splits import Split
from engine import evaluate as ev
from engine import runs
from engine.contract import Recommender
from engine.evaluate import evaluate, ranking_metrics, rows_per_batch, score_rows, top_k
from engine.models.ease import EASE
from engine.models.pop import Pop


class Linear(Recommender):
    """x @ W + b with random float64 weights: ties between scores are (almost surely) absent."""

    name = "linear-test"

    def __init__(self, n_items: int, seed: int = 0) -> None:
        super().__init__(n_items)
        gen = torch.Generator().manual_seed(seed)
        self.w = torch.nn.Parameter(
            torch.randn(n_items, n_items, generator=gen, dtype=torch.float64)
        )
        self.b = torch.nn.Parameter(torch.randn(n_items, generator=gen, dtype=torch.float64))

    def forward(self, x: Tensor) -> Tensor:
        return x.to(torch.float64) @ self.w + self.b


def random_split(n_users: int, n_items: int, seed: int) -> Split:
    """Disjoint random train/valid/test parts; every user has a train item."""
    rng = np.random.default_rng(seed)
    parts = np.zeros((3, n_users, n_items), dtype=np.float32)
    for u in range(n_users):
        chosen = rng.choice(n_items, size=int(rng.integers(3, n_items // 2)), replace=False)
        roles = rng.integers(0, 3, size=chosen.shape[0])
        roles[0] = 0
        parts[roles, u, chosen] = 1.0
    mats = [sp.csr_matrix(p) for p in parts]
    return Split(*mats, protocol="random", seed=seed, ratios=(0.8, 0.1, 0.1),
                 fit_users=np.arange(n_users, dtype=np.int64))  # fmt: skip


def dense_reference(model: Linear, split: Split, part: str, ks: tuple[int, ...]) -> dict:
    """All users' scores at once [n_users, n_items], masked, argsorted: the unstreamed way."""
    users = split.eval_users(part)
    scores = model(torch.from_numpy(split.train.toarray())).detach().numpy()[users]
    scores[split.mask(part).toarray()[users] > 0] = -np.inf
    order = np.argsort(-scores, axis=1, kind="stable")[:, : max(ks)]
    hits = np.take_along_axis(split.target(part).toarray()[users], order, axis=1)
    n_relevant = split.target(part).toarray()[users].sum(1)
    values = ranking_metrics(torch.from_numpy(hits.astype(np.float64)),
                             torch.from_numpy(n_relevant.astype(np.float64)), ks)  # fmt: skip
    return {m: v.numpy() for m, v in values.items()}


@pytest.mark.parametrize("part", ["test", "valid"])
@pytest.mark.parametrize("cells", [1, 37, 1 << 23])
def test_streamed_evaluation_equals_the_dense_one(
    part: str, cells: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    split = random_split(53, 24, seed=4)
    model = Linear(24, seed=1)
    ks = (1, 5, 10)
    monkeypatch.setattr(ev, "BATCH_CELLS", cells)  # 1 and 37 cells: one user per batch
    result = evaluate(model, split, part, ks=ks, batch_size=7)
    reference = dense_reference(model, split, part, ks)
    assert result.per_user["user"].to_list() == split.eval_users(part).tolist()
    for metric, values in reference.items():
        np.testing.assert_allclose(result.per_user[metric].to_numpy(), values, rtol=0, atol=1e-12)


def test_top_k_batches_are_bounded_in_cells_and_give_the_same_lists(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    split = random_split(30, 40, seed=2)
    model = Linear(40, seed=3)
    users = np.arange(30)
    whole = top_k(model, split.train, users, 6, split.mask("test"), batch_size=512)
    seen: list[int] = []
    forward = model.forward

    def spy(x: Tensor) -> Tensor:
        seen.append(x.shape[0] * x.shape[1])
        return forward(x)

    monkeypatch.setattr(model, "forward", spy)
    monkeypatch.setattr(ev, "BATCH_CELLS", 100)
    streamed = top_k(model, split.train, users, 6, split.mask("test"), batch_size=512)
    assert max(seen) <= 100 and len(seen) == 15  # 2 users (80 cells) per batch
    np.testing.assert_array_equal(streamed[0], whole[0])
    np.testing.assert_array_equal(streamed[1], whole[1])
    masked = np.take_along_axis(split.mask("test").toarray(), streamed[0], axis=1) > 0
    assert np.all(np.isneginf(streamed[1][masked]))  # masked items only fill short lists


def test_rows_per_batch_caps_users_by_catalogue_size() -> None:
    assert rows_per_batch(512, 10_000) == 512
    assert rows_per_batch(512, 100_000) == (1 << 23) // 100_000
    assert rows_per_batch(512, 10**9) == 1


def test_compressed_representations_keep_the_dense_inner_products(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """pop is represented by the training matrix's columns; above MAX_EMBEDDING_DIMS users they
    are compressed on the top right singular vectors, computed from the sparse matrix. With as
    many dimensions as the rank, compression keeps every inner product of the dense X^T and of
    the dense user products x @ X^T."""
    split = random_split(60, 25, seed=5)
    model = Pop(n_items=25)
    model.fit(split.fit_matrix())
    monkeypatch.setattr(runs, "MAX_EMBEDDING_DIMS", 20)
    monkeypatch.setattr(runs, "COMPRESSED_DIMS", 25)
    dataset = type("D", (), {"item_raw_ids": np.arange(25).astype(str),
                             "user_raw_ids": np.arange(60).astype(str)})()  # fmt: skip
    items, users = runs.representations(model, dataset, split)
    dense = split.fit_matrix().T.toarray().astype(np.float64)  # [n_items, n_users]
    assert items.vectors.shape == (25, 25) and "compressed to 25" in items.note
    np.testing.assert_allclose(items.vectors @ items.vectors.T, dense @ dense.T, atol=1e-3)
    user_products = split.train[users.index].toarray() @ dense  # [users, n_users]
    np.testing.assert_allclose(users.vectors @ items.vectors.T, user_products @ dense.T, atol=1e-2)


def test_sparse_singular_vectors_match_numpy_on_a_low_rank_matrix() -> None:
    rng = np.random.default_rng(0)
    low = rng.random((80, 3)) @ rng.random((3, 120))
    matrix = sp.csr_matrix(np.where(low > np.quantile(low, 0.7), low, 0.0))
    v = runs._top_right_singular_vectors(matrix, 4)
    exact = np.linalg.svd(matrix.toarray())[2][:4].T
    np.testing.assert_allclose(np.abs(v.T @ exact), np.eye(4), atol=1e-4)


def test_first_layer_models_score_sparse_histories_as_forward() -> None:
    split = random_split(40, 30, seed=6)
    model = EASE(n_items=30)
    model.fit(split.fit_matrix())
    model.eval()
    rows = np.arange(40)
    dense = model(torch.from_numpy(split.train.toarray())).detach().numpy()
    np.testing.assert_allclose(score_rows(model, split.train, rows).numpy(), dense, atol=1e-5)
    result = evaluate(model, split, "test", ks=(5, 10))
    monkeypatch = pytest.MonkeyPatch()
    monkeypatch.setattr(model, "first_layer", lambda: None)  # the dense path
    reference = evaluate(model, split, "test", ks=(5, 10))
    monkeypatch.undo()
    assert result.per_user.equals(reference.per_user)
