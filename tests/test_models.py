"""Models, registry and device choice, on small synthetic matrices."""

from __future__ import annotations

import numpy as np
import polars as pl
import pytest
import scipy.sparse as sp
import torch
import torch.nn.functional as F
from safetensors.torch import load_file, save_file

from data.dataset import Dataset
from data.errors import ReclensError
from data.splits import Split, split
from engine import registry
from engine.contract import LossContext, Recommender
from engine.device import resolve_device
from engine.evaluate import evaluate
from engine.models import fism, fism_neumf, negatives

N_USERS, N_ITEMS = 50, 40


def synthetic_dataset(n_users: int = N_USERS, n_items: int = N_ITEMS, seed: int = 0) -> Dataset:
    """Two user groups preferring two halves of the items, about 25% density."""
    rng = np.random.default_rng(seed)
    group = rng.integers(0, 2, n_users)
    liked = np.zeros((n_users, n_items), dtype=bool)
    for u in range(n_users):
        half = np.arange(n_items) % 2 == group[u]
        p = np.where(half, 0.4, 0.08)
        liked[u] = rng.random(n_items) < p
        liked[u, rng.integers(0, n_items, 3)] = True  # every user has a few items
    users, items = np.nonzero(liked)
    inter = pl.DataFrame({"user": users, "item": items})
    return Dataset.build(
        "toy",
        inter,
        pl.DataFrame({"item": np.arange(n_items), "raw_id": [f"i{i}" for i in range(n_items)]}),
        pl.DataFrame({"user": np.arange(n_users), "raw_id": [f"u{u}" for u in range(n_users)]}),
    )


@pytest.fixture(scope="module")
def toy_split() -> Split:
    return split(synthetic_dataset(), "random", seed=0)


def small_model(name: str, n_items: int = N_ITEMS) -> Recommender:
    """A registry model with small widths where the model has them (fast tests)."""
    shrink = {
        "fism": {"dim": 8},
        "multvae": {"hidden": 16, "latent": 8},
        "multdae": {"hidden": 16, "latent": 8},
        "fism-neumf": {"dim": 8, "mlp_dim": 8, "layers": [8, 4]},
        "diffrec": {"dims": [16]},
    }.get(name, {})
    return registry.create(name, n_items, **shrink)


def ready_model(name: str, train: sp.csr_matrix) -> Recommender:
    """A model fitted in closed form, or a trainable one with its initial weights."""
    model = small_model(name, train.shape[1])
    if not model.trainable:
        model.fit(train)
    model.eval()
    return model


def history(train: sp.csr_matrix, rows: int = 6) -> torch.Tensor:
    return torch.from_numpy(train[:rows].toarray()).float()


# -- registry ------------------------------------------------------------------------------


def test_registry_lists_every_model() -> None:
    assert registry.model_names() == [
        "pop",
        "itemknn",
        "ease",
        "fism",
        "multvae",
        "multdae",
        "fism-neumf",
        "diffrec",
        "ials",
        "bpr",
        "lightgcn",
    ]
    assert registry.available_models() == registry.model_names()
    for name in registry.model_names():
        cls = registry.model_class(name)
        assert issubclass(cls, Recommender)
        assert cls.name == name
        assert registry.default_hparams(name) == cls.hyper_parameters()
        registry.train_config(name)  # defaults are valid settings


def test_hyper_parameters_are_the_constructor_defaults() -> None:
    assert registry.default_hparams("fism") == {"dim": 64, "alpha": 0.5, "negatives": 8}
    assert registry.default_hparams("multdae") == {"hidden": 600, "latent": 200, "dropout": 0.5}
    assert registry.default_hparams("pop") == {}
    assert registry.create("fism-neumf", 10, layers=[8, 4]).hparams["layers"] == (8, 4)


def test_retired_names_load_the_renamed_models_and_refuse_new_training() -> None:
    assert registry.model_class("mf") is registry.model_class("fism")
    assert registry.create(" NeuMF ", 10, layers=[8, 4]).name == "fism-neumf"
    assert registry.canonical_name("mf") == "fism" and registry.canonical_name("ease") == "ease"
    assert registry.check_new("fism-neumf") == "fism-neumf"
    for old, new in registry.RETIRED.items():
        with pytest.raises(ReclensError) as err:
            registry.check_new(old)
        message = str(err.value)
        assert "\n" not in message and "retired" in message
        assert repr(new) in message and "'bpr'" in message
    assert registry.retired_message("bpr") is None


def test_unknown_model_is_one_line_error_with_suggestion() -> None:
    with pytest.raises(ReclensError) as err:
        registry.model_class("multvea")
    message = str(err.value)
    assert "\n" not in message
    assert "did you mean multvae" in message and "ease" in message


def test_unknown_hparam_and_setting_are_one_line_errors() -> None:
    with pytest.raises(ReclensError) as err:
        registry.create("ease", 10, lamda=3.0)
    assert "\n" not in str(err.value) and "did you mean lam" in str(err.value)
    with pytest.raises(ReclensError) as err:
        registry.train_config("fism", epoch=3)
    assert "\n" not in str(err.value) and "epochs" in str(err.value)
    with pytest.raises(ReclensError):
        registry.train_config("fism", optimizer="sgd")


def test_create_merges_defaults_with_overrides() -> None:
    model = registry.create("fism", 12, dim=5)
    assert model.hparams == {**registry.default_hparams("fism"), "dim": 5}
    assert model.item_embeddings().shape == (12, 5)
    assert registry.train_config("fism", lr=0.5).lr == 0.5


# -- the contract, for every model ---------------------------------------------------------


# (shapes, gradients, embeddings and hparams round trips: tests/test_conformance.py)


@pytest.mark.parametrize("name", registry.model_names())
def test_only_the_item_item_models_lack_item_factors(name: str) -> None:
    items = small_model(name).item_embeddings()
    if name in ("pop", "itemknn", "ease"):
        assert items is None
    else:
        assert items is not None and items.shape[0] == N_ITEMS


@pytest.mark.parametrize("name", registry.model_names())
def test_state_dict_round_trip_through_safetensors(name: str, toy_split, tmp_path) -> None:
    train = toy_split.fit_matrix()
    model = ready_model(name, train)
    torch.manual_seed(123)
    for p in model.parameters():  # move away from the initial weights
        p.data.add_(0.1 * torch.randn_like(p))
    path = tmp_path / "model.safetensors"
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(path))
    clone = registry.model_class(name)(n_items=N_ITEMS, **model.hparams)
    clone.load_state_dict(load_file(str(path)))
    clone.eval()
    x = history(train)
    with torch.no_grad():
        assert torch.equal(model(x), clone(x))


# -- closed-form models --------------------------------------------------------------------


def test_ease_equals_direct_numpy_solve(toy_split: Split) -> None:
    train = toy_split.fit_matrix()
    lam = 7.0
    model = registry.create("ease", N_ITEMS, lam=lam)
    model.fit(train)
    x = train.toarray().astype(np.float64)
    p = np.linalg.inv(x.T @ x + lam * np.eye(N_ITEMS))
    b = np.eye(N_ITEMS) - p / np.diag(p)[None, :]
    np.fill_diagonal(b, 0.0)
    np.testing.assert_allclose(model.weights.double().numpy(), b, atol=1e-5)
    np.testing.assert_allclose(
        model(torch.from_numpy(x).float()).double().numpy(), x @ b, rtol=1e-4, atol=1e-4
    )


def test_itemknn_keeps_top_k_cosine_neighbours(toy_split: Split) -> None:
    train = toy_split.fit_matrix()
    k = 5
    model = registry.create("itemknn", N_ITEMS, k=k, shrink=2.0)
    model.fit(train)
    x = train.toarray().astype(np.float64)
    norms = np.sqrt(x.sum(0))
    sim = (x.T @ x) / (norms[:, None] * norms[None, :] + 2.0 + 1e-6)
    np.fill_diagonal(sim, 0.0)
    s = model.similarity.double().numpy()
    assert ((s != 0).sum(axis=0) <= k).all()
    for j in range(N_ITEMS):
        kept = np.flatnonzero(s[:, j])
        np.testing.assert_allclose(s[kept, j], sim[kept, j], rtol=1e-5)
        if len(kept):  # nothing left out beats what was kept
            dropped = np.setdiff1d(np.arange(N_ITEMS), kept)
            assert sim[dropped, j].max() <= s[kept, j].min() + 1e-6


def test_pop_scores_are_training_counts(toy_split: Split) -> None:
    train = toy_split.fit_matrix()
    model = ready_model("pop", train)
    scores = model(history(train, 3))
    counts = np.asarray(train.sum(axis=0)).ravel()
    for row in scores:
        np.testing.assert_allclose(row.detach().numpy(), counts)


# -- trainable models ----------------------------------------------------------------------


def loss_context(seed: int = 0) -> LossContext:
    return LossContext(
        generator=torch.Generator().manual_seed(seed),
        step=0,
        total_steps=10,
        train=sp.csr_matrix((1, 1)),
        users=torch.zeros(1, dtype=torch.long),
    )


@pytest.mark.parametrize("name", ["fism", "multvae", "multdae", "fism-neumf"])
def test_loss_is_finite_and_trains_every_parameter(name: str, toy_split: Split) -> None:
    model = small_model(name)
    model.train()
    loss = model.loss(history(toy_split.fit_matrix(), 16), loss_context())
    assert loss.ndim == 0 and torch.isfinite(loss)
    loss.backward()
    for pname, p in model.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all(), pname


@pytest.mark.parametrize("name", ["fism", "fism-neumf"])
def test_pair_scores_in_the_loss_match_forward(name: str, toy_split: Split, monkeypatch) -> None:
    """A positive is scored from the history without it, a negative from the whole history."""
    model = small_model(name)
    model.eval()  # no dropout
    torch.manual_seed(0)
    for p in model.parameters():
        p.data.add_(0.3 * torch.randn_like(p))
    model.negatives = 1
    x = history(toy_split.fit_matrix(), 1)
    neg = int(torch.nonzero(x[0] == 0)[0])
    module = {"fism": fism, "fism-neumf": fism_neumf}[name]
    monkeypatch.setattr(module, "sample_negatives", lambda x, row, gen: torch.full_like(row, neg))
    loss = model.loss(x, loss_context())

    pos_scores = []
    for i in torch.nonzero(x[0]).ravel():
        without = x.clone()
        without[0, i] = 0.0
        pos_scores.append(model(without)[0, i])
    s_pos = torch.stack(pos_scores)
    s_neg = model(x)[0, neg].expand_as(s_pos)
    if name == "fism":  # BPR
        expected = -F.logsigmoid(s_pos - s_neg).mean()
    else:  # binary cross-entropy, one negative per positive
        logits = torch.cat([s_pos, s_neg])
        labels = torch.cat([torch.ones_like(s_pos), torch.zeros_like(s_neg)])
        expected = F.binary_cross_entropy_with_logits(logits, labels)
    torch.testing.assert_close(loss, expected)


def test_negatives_avoid_the_history() -> None:
    x = torch.zeros(3, 50)
    x[:, :45] = 1.0
    row = torch.arange(3).repeat_interleave(200)
    neg = negatives.sample_negatives(x, row, torch.Generator().manual_seed(0))
    assert (x[row, neg] == 0).all()


def test_vae_is_deterministic_at_eval_and_anneals_beta(toy_split: Split) -> None:
    model = small_model("multvae")
    x = history(toy_split.fit_matrix())
    model.eval()
    assert torch.equal(model(x), model(x))
    torch.testing.assert_close(model.user_embeddings(x), model.encode(x)[0])
    assert model.beta(0) == 0.0
    assert model.beta(model.total_anneal_steps // 2) == pytest.approx(model.anneal_cap / 2)
    assert model.beta(10 * model.total_anneal_steps) == model.anneal_cap
    model.train()
    assert not torch.equal(model(x), model(x))  # input dropout in training mode


def test_closed_form_models_rank_the_toy_data_well(toy_split: Split) -> None:
    pop = ready_model("pop", toy_split.fit_matrix())
    ease = ready_model("ease", toy_split.fit_matrix())
    knn = ready_model("itemknn", toy_split.fit_matrix())
    base = evaluate(pop, toy_split, "test", ks=(10,)).means["ndcg@10"]
    assert evaluate(ease, toy_split, "test", ks=(10,)).means["ndcg@10"] > base
    assert evaluate(knn, toy_split, "test", ks=(10,)).means["ndcg@10"] > base


# -- devices -------------------------------------------------------------------------------


def test_resolve_device() -> None:
    assert resolve_device("cpu") == torch.device("cpu")
    assert resolve_device("auto").type == ("cuda" if torch.cuda.is_available() else "cpu")
    with pytest.raises(ReclensError):
        resolve_device("tpu")
    if not torch.cuda.is_available():
        for spec in ("cuda", "cuda:1"):
            with pytest.raises(ReclensError) as err:
                resolve_device(spec)
            assert "CUDA is not available" in str(err.value) and "\n" not in str(err.value)
    else:
        assert resolve_device("cuda").type == "cuda"


def test_history_dropout_matches_dropout_statistics() -> None:
    from engine.models.vae import history_dropout

    torch.manual_seed(0)
    h = (torch.rand(200, 300) < 0.2).float() * torch.rand(200, 300)
    out = history_dropout(h, 0.5)
    assert (out[h == 0] == 0).all()
    kept = out[h > 0] != 0
    assert 0.45 < kept.float().mean() < 0.55
    torch.testing.assert_close(out[h > 0][kept], 2.0 * h[h > 0][kept])
