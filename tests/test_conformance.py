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
    ],
)
def test_a_broken_model_fails_the_check_it_breaks(cls: type[Recommender], check: str) -> None:
    with pytest.raises(AssertionError, match="^model (linear|nanloss): ") as err:
        check_recommender(cls)
    assert f": {check}: " in str(err.value)
