"""The model contract check: every registered model passes it, broken models fail it by name."""

from __future__ import annotations

from typing import Any

import pytest
import scipy.sparse as sp
import torch
from torch import Tensor, nn

from engine import registry
from engine.conformance import check_recommender, tiny_split
from engine.contract import Recommender


@pytest.mark.parametrize("name", registry.model_names())
def test_every_registered_model_keeps_the_contract(name: str) -> None:
    check_recommender(name)


def test_every_model_is_checked() -> None:
    assert "diffrec" in registry.model_names()


def test_tiny_split_is_disjoint_and_every_user_has_history() -> None:
    s = tiny_split(n_items=20, n_users=10, seed=3)
    assert s.train.shape == s.valid.shape == (10, 20)
    assert s.train.multiply(s.valid).nnz == 0
    assert (s.train.sum(axis=1) >= 3).all() and (s.valid.sum(axis=1) == 1).all()


# -- broken models: each fails the check it breaks -----------------------------------------


class Linear(Recommender):
    """A correct closed-form model ``x W``, the base of the broken ones below."""

    name = "linear"
    link = "identity"
    trainable = False

    def __init__(self, n_items: int, scale: float = 1.0) -> None:
        super().__init__(n_items, scale=scale)
        self.scale = float(scale)
        self.register_buffer("weights", torch.zeros(n_items, n_items))

    def fit(self, train: sp.csr_matrix) -> None:
        dense = torch.from_numpy(train.toarray())
        self.weights.copy_(dense.T @ dense)

    def forward(self, x: Tensor) -> Tensor:
        return self.scale * (x @ self.weights)


class BadLink(Linear):
    link = "exp"  # type: ignore[assignment]


class NoDefault(Linear):
    def __init__(self, n_items: int, scale: float) -> None:
        super().__init__(n_items, scale=scale)


class Unrecorded(Linear):
    def __init__(self, n_items: int, scale: float = 1.0) -> None:
        Recommender.__init__(self, n_items)  # forgets to pass its hyper-parameter on
        self.scale = float(scale)
        self.register_buffer("weights", torch.zeros(n_items, n_items))


class NonFinite(Linear):
    def forward(self, x: Tensor) -> Tensor:
        return super().forward(x) / 0.0


class Detached(Linear):
    def forward(self, x: Tensor) -> Tensor:
        return super().forward(x.detach())


class Noisy(Linear):
    def forward(self, x: Tensor) -> Tensor:
        return super().forward(x) + torch.rand(x.shape)


class Mixing(Linear):
    def forward(self, x: Tensor) -> Tensor:
        return super().forward(x) + x.mean(dim=0, keepdim=True)


class BadEmbeddings(Linear):
    def item_embeddings(self) -> Tensor:
        return self.weights[:-1]


class Unsaved(Linear):
    """Keeps its fitted weights outside the state dict: a rebuilt model has none of them."""

    def fit(self, train: sp.csr_matrix) -> None:
        dense = torch.from_numpy(train.toarray())
        self.fitted = dense.T @ dense

    def forward(self, x: Tensor) -> Tensor:
        return x @ getattr(self, "fitted", self.weights)


class WrongItems(Linear):
    """Scores a few items off by one column."""

    def score_items(self, x: Tensor, items: Tensor) -> Tensor:
        return self(x)[:, (items + 1) % self.n_items]


class WrongFirst(Linear):
    """Declares its weights as a first layer but counts the history twice on that path."""

    def first_layer(self) -> Tensor:
        return self.weights

    def forward_from_first(self, h: Tensor, moments: Tensor, items: Tensor | None = None) -> Tensor:
        return 2 * h if items is None else 2 * h[:, items]


class LinearFirst(Linear):
    """A correct first-layer declaration."""

    def first_layer(self) -> Tensor:
        return self.weights

    def forward_from_first(self, h: Tensor, moments: Tensor, items: Tensor | None = None) -> Tensor:
        scores = self.scale * h
        return scores if items is None else scores[:, items]


class NaNLoss(Recommender):
    name = "nanloss"
    link = "sigmoid"

    def __init__(self, n_items: int) -> None:
        super().__init__(n_items)
        self.weights = nn.Parameter(torch.zeros(n_items, n_items))

    def forward(self, x: Tensor) -> Tensor:
        return x @ self.weights

    def loss(self, x: Tensor, ctx: Any) -> Tensor:
        return self.weights.sum() * float("nan")


def test_a_correct_model_passes() -> None:
    check_recommender(Linear)
    check_recommender(LinearFirst)


def test_every_registered_first_layer_and_score_items_match_forward() -> None:
    """On a larger random sparse batch than the check's: both shortcuts equal ``forward``."""
    from engine.contract import row_moments

    for name in registry.model_names():
        split = tiny_split(n_items=60, n_users=40, seed=1)
        model = registry.create(name, 60)
        if not model.trainable:
            model.fit(split.train)
        else:  # trained weights are not needed: random, larger than the initialisation
            for p in model.parameters():
                nn.init.normal_(p, std=0.2)
        model.eval()
        x = torch.from_numpy(split.train.toarray())
        items = torch.tensor([5, 0, 59, 5])
        with torch.no_grad():
            full = model(x)
            scale = float(full.abs().max())
            assert (model.score_items(x, items) - full[:, items]).abs().max() <= 1e-6 * scale, name
            weight = model.first_layer()
            if weight is None:
                continue
            rows, cols = torch.nonzero(x, as_tuple=True)
            h = torch.zeros(x.shape[0], weight.shape[1]).index_add_(0, rows, weight[cols])
            got = model.forward_from_first(h, row_moments(x))
            assert (got - full).abs().max() <= 1e-6 * scale, name


@pytest.mark.parametrize(
    ("cls", "check"),
    [
        (BadLink, "declaration"),
        (NoDefault, "declaration"),
        (Unrecorded, "hparams"),
        (NaNLoss, "fit"),
        (NonFinite, "scores"),
        (Mixing, "batch"),
        (Noisy, "deterministic"),
        (Detached, "gradient"),
        (BadEmbeddings, "embeddings"),
        (Unsaved, "round trip"),
        (WrongItems, "shortcuts"),
        (WrongFirst, "shortcuts"),
    ],
)
def test_a_broken_model_fails_the_check_it_breaks(cls: type[Recommender], check: str) -> None:
    with pytest.raises(AssertionError, match="^model (linear|nanloss): ") as err:
        check_recommender(cls)
    assert f": {check}: " in str(err.value)
