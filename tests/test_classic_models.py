"""The classic models (iALS, BPR-MF, LightGCN): their algebra, their fold-ins, their training.

The contract itself (shapes, gradients in x, saved runs reloading) is checked for every
registered model by tests/test_conformance.py and tests/test_runs.py.
"""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp
import torch

from engine import registry
from engine.conformance import tiny_split
from engine.models.bpr import BPR, sample_triples
from engine.models.ials import IALS, als_step, fold_in
from engine.models.lightgcn import LightGCN, normalised_graph
from engine.train import config_for, fit


def planted(n_users: int = 60, n_items: int = 40, seed: int = 0) -> sp.csr_matrix:
    """Two taste groups: users of group g like mostly the items of group g."""
    rng = np.random.default_rng(seed)
    group_u = np.arange(n_users) % 2
    group_i = np.arange(n_items) % 2
    p = np.where(group_u[:, None] == group_i[None, :], 0.5, 0.03)
    return sp.csr_matrix((rng.random((n_users, n_items)) < p).astype(np.float32))


def auc(scores: np.ndarray, train: sp.csr_matrix) -> float:
    """Share of (interacted, not interacted) pairs per user ranked correctly, averaged."""
    liked = train.toarray() > 0
    values = []
    for s, mask in zip(scores, liked, strict=True):
        if mask.any() and (~mask).any():
            values.append((s[mask][:, None] > s[~mask][None, :]).mean())
    return float(np.mean(values))


# -- iALS ------------------------------------------------------------------------------------


def test_ials_fold_in_solves_the_weighted_normal_equations() -> None:
    rng = np.random.default_rng(1)
    factors = torch.from_numpy(rng.standard_normal((12, 3))).double()
    x = torch.from_numpy((rng.random((2, 12)) < 0.4).astype(np.float64))
    reg, alpha = 0.7, 4.0
    u = fold_in(x, factors, reg, alpha)
    for row, got in zip(x, u, strict=True):
        c = torch.diag(1.0 + alpha * row)
        a = factors.T @ c @ factors + reg * torch.eye(3, dtype=torch.float64)
        expected = torch.linalg.solve(a, factors.T @ c @ row)  # Hu et al.'s Eq. 4
        torch.testing.assert_close(got, expected)


def test_ials_conjugate_gradient_reaches_the_exact_step() -> None:
    train = planted()
    items = np.random.default_rng(2).standard_normal((train.shape[1], 4)).astype(np.float32)
    start = np.zeros((train.shape[0], 4), dtype=np.float32)
    cg = als_step(train, items, start, reg=1.0, alpha=3.0, steps=12)
    exact = fold_in(torch.from_numpy(train.toarray()), torch.from_numpy(items), 1.0, 3.0)
    np.testing.assert_allclose(cg, exact.numpy(), rtol=1e-3, atol=1e-4)


def test_ials_learns_the_planted_groups_and_a_training_user_gets_its_als_factor() -> None:
    train = planted()
    torch.manual_seed(0)
    model = IALS(train.shape[1], dim=4, reg=1.0, alpha=3.0)
    model.fit(train)
    x = torch.from_numpy(train.toarray())
    with torch.no_grad():
        assert auc(model(x).numpy(), train) > 0.75  # a two-group model reaches about 0.83
        users = model.user_embeddings(x)
    step = als_step(train, model.items.numpy(), np.zeros_like(users.numpy()), 1.0, 3.0, 20)
    np.testing.assert_allclose(users.numpy(), step, rtol=1e-3, atol=1e-4)


# -- BPR -------------------------------------------------------------------------------------


def test_bpr_triples_are_every_interaction_with_a_negative_outside_the_history() -> None:
    train = planted()
    users, positives, negatives = sample_triples(train, np.random.default_rng(0), tries=40)
    assert len(users) == train.nnz
    assert (train[users, positives].A1 == 1).all()
    assert (train[users, negatives].A1 == 0).all()  # a quarter dense: no hit survives 40 draws
    _, _, once = sample_triples(train, np.random.default_rng(0), tries=0)
    assert (train[users, once].A1 == 1).mean() > 0.1  # uniform draws alone do hit the history


def test_bpr_learns_and_its_fold_in_is_a_linear_map_of_the_history() -> None:
    train = planted()
    torch.manual_seed(0)
    model = BPR(train.shape[1], dim=4, epochs=30, lr=0.05, batch_size=256, reg=1e-3)
    model.fit(train)
    x = torch.from_numpy(train.toarray())
    with torch.no_grad():
        assert auc(model(x).numpy(), train) > 0.75  # a two-group model reaches about 0.83
        a, b = x[:3], x[3:6]
        torch.testing.assert_close(
            model.user_embeddings(a + b), model.user_embeddings(a) + model.user_embeddings(b)
        )


def test_bpr_same_seed_same_model() -> None:
    train = planted()
    weights = []
    for _ in range(2):
        torch.manual_seed(3)
        model = BPR(train.shape[1], dim=4, epochs=2)
        model.fit(train)
        weights.append(model.history.clone())
    torch.testing.assert_close(weights[0], weights[1], rtol=0, atol=0)


# -- LightGCN --------------------------------------------------------------------------------


def dense_lightgcn(train: np.ndarray, e0: np.ndarray, layers: int) -> tuple[np.ndarray, ...]:
    """The documented variant written out densely: training users' and items' layer means."""
    d_u, d_i = train.sum(axis=1), train.sum(axis=0)
    norm = train / np.sqrt(np.maximum(d_u, 1))[:, None] / np.sqrt(np.maximum(d_i, 1))[None, :]
    items, users = [e0], [norm @ e0]  # e_u^(0): normalised sum of the items' e^(0)
    for _ in range(layers):
        items.append(norm.T @ users[-1])
        users.append(norm @ items[-2])
    return np.mean(users, axis=0), np.mean(items, axis=0)


def test_lightgcn_scores_training_users_as_the_propagation_does() -> None:
    split = tiny_split(n_items=20, n_users=16, seed=0)
    model = LightGCN(20, dim=5, layers=2)
    graph, scale = normalised_graph(split.train, torch.device("cpu"))
    with torch.no_grad():
        user_side, item_side = model.propagate(graph)
        model.user_side.copy_(user_side)
        model.item_side.copy_(item_side)
        model.scale.copy_(scale)
        x = torch.from_numpy(split.train.toarray())
        got_users = model.user_embeddings(x).numpy()
        got_items = model.item_embeddings().numpy()
    users, items = dense_lightgcn(split.train.toarray(), model.embedding.detach().numpy(), 2)
    np.testing.assert_allclose(got_users, users, rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(got_items, items, rtol=1e-4, atol=1e-6)


def test_lightgcn_propagation_gradient_equals_dense_autograd() -> None:
    """The CSR products' hand-written backward gives the gradient autograd gets densely."""
    split = tiny_split(n_items=20, n_users=16, seed=0)
    model = LightGCN(20, dim=5, layers=2)
    graph, _ = normalised_graph(split.train, torch.device("cpu"))
    gen = torch.Generator().manual_seed(0)
    w_user, w_item = torch.randn(20, 5, generator=gen), torch.randn(20, 5, generator=gen)
    user_side, item_side = model.propagate(graph)
    ((user_side * w_user).sum() + (item_side * w_item).sum()).backward()
    train = split.train.toarray()
    d_u, d_i = train.sum(axis=1), train.sum(axis=0)
    norm = train / np.sqrt(np.maximum(d_u, 1))[:, None] / np.sqrt(np.maximum(d_i, 1))[None, :]
    dense = torch.from_numpy(norm.astype(np.float32))
    e0 = model.embedding.detach().clone().requires_grad_(True)
    items, users = [e0], dense @ e0
    for _ in range(2):
        items.append(dense.T @ users)
        users = dense @ items[-2]
    ref_user, ref_item = (e0 + sum(items[:-1])) / 3, torch.stack(items).mean(dim=0)
    ((ref_user * w_user).sum() + (ref_item * w_item).sum()).backward()
    assert model.embedding.grad is not None and e0.grad is not None
    np.testing.assert_allclose(model.embedding.grad.numpy(), e0.grad.numpy(), rtol=1e-5, atol=1e-6)


def test_lightgcn_training_learns_and_keeps_the_propagation_it_scores_with() -> None:
    train = planted()
    split = tiny_split(n_items=train.shape[1], n_users=train.shape[0], seed=0)
    split = type(split)(**{**split.__dict__, "train": train, "valid": split.valid.multiply(0)})
    model = LightGCN(train.shape[1], dim=8)
    config = config_for(model, epochs=20, batch_size=16, lr=0.05, patience=0, seed=0)
    result = fit(model, split, config)
    assert result.epochs_run == 20
    x = torch.from_numpy(train.toarray())
    with torch.no_grad():
        assert auc(model(x).numpy(), train) > 0.75  # a two-group model reaches about 0.83
        user_side, item_side = model.propagate(normalised_graph(train, torch.device("cpu"))[0])
    # the buffers hold the propagation of the weights before the last step: close, not equal
    assert torch.allclose(model.item_side, item_side, atol=0.05)
    assert not torch.equal(model.item_side, model.embedding.detach())


@pytest.mark.parametrize("name", ["ials", "bpr", "lightgcn"])
def test_classic_models_are_registered(name: str) -> None:
    assert name in registry.model_names()
    assert registry.model_class(name).name == name
