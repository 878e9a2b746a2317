"""Baseline explainers: shapes, finiteness, determinism, and exact values on linear models."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp
import torch
from torch import nn

from data.errors import ReclensError
from engine.contract import Recommender
from explainers.baselines import KernelShap, Lime, constrained_shap, weighted_ridge
from explainers.registry import create, explainer_names, parse_names

N_ITEMS = 20


class Linear(Recommender):
    """``scores = x W`` with a chosen link."""

    name = "linear"
    link = "identity"

    def __init__(self, n_items: int, link: str = "identity", seed: int = 0) -> None:
        super().__init__(n_items, link=link)
        self.link = link  # type: ignore[misc]
        g = torch.Generator().manual_seed(seed)
        self.weight = nn.Parameter(torch.randn(n_items, n_items, generator=g))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x @ self.weight


class TinyVAE(Recommender):
    """An L2-normalising encoder-decoder, like Mult-VAE in eval mode, with dropout."""

    name = "tiny_vae"
    link = "softmax"

    def __init__(self, n_items: int) -> None:
        super().__init__(n_items)
        torch.manual_seed(0)
        self.drop = nn.Dropout(0.5)
        self.enc = nn.Linear(n_items, 8)
        self.dec = nn.Linear(8, n_items)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = nn.functional.normalize(self.drop(x), dim=-1)
        return self.dec(torch.tanh(self.enc(h)))


@pytest.fixture(scope="module")
def train() -> sp.csr_matrix:
    rng = np.random.default_rng(2)
    return sp.csr_matrix((rng.random((60, N_ITEMS)) < 0.3).astype(np.float32))


def history(train: sp.csr_matrix, u: int) -> torch.Tensor:
    return torch.from_numpy(train[u].toarray()[0])


MODELS = {
    "linear-identity": lambda: Linear(N_ITEMS, "identity"),
    "linear-sigmoid": lambda: Linear(N_ITEMS, "sigmoid"),
    "vae-softmax": lambda: TinyVAE(N_ITEMS),
}


@pytest.mark.parametrize("model_name", list(MODELS))
@pytest.mark.parametrize("name", explainer_names())
def test_one_finite_score_per_history_item_and_seeded(train, name, model_name):
    model = MODELS[model_name]()
    model.train()  # explainers must switch dropout off themselves, and restore the mode
    explainer = create(name, train=train)
    x = history(train, 4)
    a = explainer.explain(model, x, user=4, seed=1)
    b = explainer.explain(model, x, user=4, seed=1)
    items = np.flatnonzero(x.numpy() > 0)
    assert a.explainer == name
    assert a.items.tolist() == items.tolist()
    assert a.scores.shape == (items.size,) and np.isfinite(a.scores).all()
    np.testing.assert_array_equal(a.scores, b.scores)
    assert np.isfinite(a.target_probability) and a.seconds >= 0
    assert model.training


@pytest.mark.parametrize("name", ["lime", "kernel_shap", "random"])
def test_random_explainers_depend_on_seed(train, name):
    model = TinyVAE(N_ITEMS)
    x = torch.zeros(N_ITEMS)
    x[:12] = 1.0  # 12 items: Kernel SHAP samples coalitions
    explainer = create(name, train=train)
    a = explainer.explain(model, x, user=4, seed=1)
    b = explainer.explain(model, x, user=4, seed=2)
    assert not np.array_equal(a.scores, b.scores)


@pytest.mark.parametrize("name", ["ig_zero", "grad_x_input", "leave_one_out", "kernel_shap"])
@pytest.mark.parametrize("n_hist", [4, 12])
def test_exact_on_an_additive_model(name, n_hist):
    """On ``p_t = sum_i x_i W_it`` every one of these gives exactly ``W_it``."""
    model = Linear(N_ITEMS, "identity")
    x = torch.zeros(N_ITEMS)
    items = np.arange(0, 2 * n_hist, 2) % N_ITEMS
    x[items] = 1.0
    exp = create(name).explain(model, x, target=1)
    expected = model.weight.detach().numpy()[exp.items, 1]
    np.testing.assert_allclose(exp.scores, expected, rtol=1e-4, atol=1e-5)


def test_lime_recovers_a_linear_model_without_ridge():
    model = Linear(N_ITEMS, "identity")
    x = torch.zeros(N_ITEMS)
    x[:8] = 1.0
    exp = Lime(n_samples=150, alpha=1e-9).explain(model, x, target=3)
    np.testing.assert_allclose(exp.scores, model.weight.detach().numpy()[:8, 3], atol=1e-4)


def test_kernel_shap_is_efficient_on_a_nonlinear_model(train):
    model = TinyVAE(N_ITEMS)
    x = history(train, 7)
    exp = KernelShap().explain(model, x, target=2)
    with torch.no_grad():
        p = model.eval().probability(model(torch.stack([x, torch.zeros_like(x)])))[:, 2]
    assert exp.scores.sum() == pytest.approx(float(p[0] - p[1]), rel=1e-5, abs=1e-8)


def test_similarities_by_hand():
    dense = np.array(
        [
            [1, 1, 0, 1],
            [1, 0, 1, 1],
            [0, 1, 1, 0],
            [1, 1, 1, 1],
        ],
        dtype=np.float32,
    )
    train = sp.csr_matrix(dense)
    model = Linear(4, "identity")
    x = torch.tensor([1.0, 1.0, 1.0, 0.0])
    # target 3: users {0, 1, 3}; item 0: {0, 1, 3}; item 1: {0, 2, 3}; item 2: {1, 2, 3}
    cos = create("cosine", train=train).explain(model, x, target=3)
    np.testing.assert_allclose(cos.scores, [3 / 3, 2 / 3, 2 / 3])
    jac = create("jaccard", train=train).explain(model, x, target=3)
    np.testing.assert_allclose(jac.scores, [3 / 3, 2 / 4, 2 / 4])


def test_ridge_and_shap_solvers():
    rng = np.random.default_rng(0)
    z = rng.random((30, 5))
    y = rng.random(30)
    w = rng.random(30) + 0.1
    # the dual form (more features than samples) equals the primal one
    wide = rng.random((6, 9))
    primal = np.linalg.solve(
        _centered(wide, w[:6]).T @ _centered(wide, w[:6]) + 0.5 * np.eye(9),
        _centered(wide, w[:6]).T @ _centered_y(wide, y[:6], w[:6]),
    )
    np.testing.assert_allclose(weighted_ridge(wide, y[:6], w[:6], 0.5), primal, atol=1e-10)
    assert weighted_ridge(z, y, w, 1e-12) == pytest.approx(_wls(z, y, w), abs=1e-6)
    phi = constrained_shap((z > 0.5).astype(float), y, w, total=2.0)
    assert phi.sum() == pytest.approx(2.0)


def _centered(z: np.ndarray, w: np.ndarray) -> np.ndarray:
    w = w / w.sum()
    return np.sqrt(w)[:, None] * (z - w @ z)


def _centered_y(z: np.ndarray, y: np.ndarray, w: np.ndarray) -> np.ndarray:
    w = w / w.sum()
    return np.sqrt(w) * (y - w @ y)


def _wls(z: np.ndarray, y: np.ndarray, w: np.ndarray) -> np.ndarray:
    a = np.hstack([np.ones((z.shape[0], 1)), z]) * np.sqrt(w)[:, None]
    return np.linalg.lstsq(a, y * np.sqrt(w), rcond=None)[0][1:]


def test_registry_and_bad_input(train):
    variants = ["spinrec_ins", "spinrec_single"]  # SPINRec's selection ablations: by name only
    assert parse_names("all") == [n for n in explainer_names() if n not in variants]
    assert parse_names("all,spinrec_single")[-1] == "spinrec_single"
    assert parse_names("lime, random,lime") == ["lime", "random"]
    with pytest.raises(ReclensError):
        parse_names("lime,shapley")
    with pytest.raises(ReclensError):
        create("cosine")  # needs the training matrix
    with pytest.raises(ReclensError):
        create("lime", n_samples=1)
    with pytest.raises(ReclensError):
        create("lime", colour="red")
    with pytest.raises(ReclensError):
        create("random").explain(Linear(N_ITEMS), torch.zeros(N_ITEMS))
