"""EASE: Embarrassingly Shallow Autoencoders (Steck, WWW 2019).

A linear item-item model ``scores = x B`` whose weights have the closed form

    P = (X^T X + lambda I)^-1,    B = I - P diagMat(1 / diag(P)),

i.e. ``B_ij = -P_ij / P_jj`` off the diagonal and ``B_jj = 0`` (no item predicts itself).
``P`` is computed in float64 on the model's device from a Cholesky factor
(``torch.linalg.cholesky`` + ``torch.cholesky_inverse``). ``B`` is a dense buffer
[n_items, n_items] (float32), fine up to about 20k items.
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp
import torch
from torch import Tensor

from data.errors import ReclensError
from engine.contract import Recommender


class EASE(Recommender):
    """EASE with L2 weight ``lam`` (RecBole's default 250); buffer ``weights`` B."""

    name = "ease"
    link = "identity"
    trainable = False

    def __init__(self, n_items: int, lam: float = 250.0) -> None:
        super().__init__(n_items, lam=lam)
        if float(lam) <= 0:
            raise ReclensError(f"ease: lam must be positive, got {lam}")
        self.lam = float(lam)
        self.register_buffer("weights", torch.zeros(n_items, n_items))

    @torch.no_grad()
    def fit(self, train: sp.csr_matrix) -> None:
        """Closed-form B from the binary ``train`` matrix [n_users, n_items]."""
        # co-occurrence counts are integers, exact in float32 below 2^24 users: the product in
        # float32 over CSR x CSR is 1.4x faster (ML-1M size) than in float64 over CSC x CSR
        binary = sp.csr_matrix(train > 0, dtype=np.float32)
        counts = (binary.T.tocsr() @ binary).toarray()  # [I, I]
        gram = torch.from_numpy(counts).to(self.device, torch.float64)
        gram.diagonal().add_(self.lam)
        precision = torch.cholesky_inverse(torch.linalg.cholesky(gram))  # P [I, I]
        b = -precision / torch.diagonal(precision)[None, :]  # B_ij = -P_ij / P_jj
        b.fill_diagonal_(0.0)
        self.weights.copy_(b.to(self.weights.dtype))

    def forward(self, x: Tensor) -> Tensor:
        """Scores [batch, n_items] = x [batch, n_items] @ B."""
        return x @ self.weights

    def score_items(self, x: Tensor, items: Tensor) -> Tensor:
        """Scores [batch, m] of ``items`` (long [m]): x @ B[:, items]."""
        return x @ self.weights[:, items]

    def first_layer(self) -> Tensor:
        """B [n_items, n_items]: the model is linear in x."""
        return self.weights

    def forward_from_first(self, h: Tensor, moments: Tensor, items: Tensor | None = None) -> Tensor:
        """The scores are the first layer's output ``h = x B`` (its ``items`` columns)."""
        return h if items is None else h[:, items]
