"""ItemKNN: item-item cosine similarity restricted to each item's ``k`` nearest neighbours.

As RecBole's ``ItemKNN`` (``ComputeSimilarity``): with item columns c_i of the binary training
matrix, ``sim(i, j) = c_i . c_j / (|c_i| |c_j| + shrink + 1e-6)``, the diagonal set to zero,
and for every item ``j`` only the ``k`` most similar items ``i`` kept in column ``j`` of ``S``.
A user's score for ``j`` is ``x S[:, j]``: the summed similarity of ``j`` to the user's items.

``S`` is stored as a dense buffer [n_items, n_items] (float32), which keeps scoring a single
differentiable matmul; that is fine up to about 20k items (1.6 GB at 20k).

The default ``k = 200`` (RecBole's is 100) was chosen on the validation NDCG@10 of MovieLens
100K among 50, 100, 200, 300, 400 and 600 (200 and 300 tie; 100 is 0.01 lower).
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp
import torch
from torch import Tensor

from data.errors import ReclensError
from engine.contract import Recommender


class ItemKNN(Recommender):
    """Item-based nearest neighbours; buffer ``similarity`` S [n_items, n_items]."""

    name = "itemknn"
    link = "identity"
    trainable = False

    def __init__(self, n_items: int, k: int = 200, shrink: float = 0.0) -> None:
        super().__init__(n_items, k=k, shrink=shrink)
        if int(k) < 1 or float(shrink) < 0:
            raise ReclensError(f"itemknn: need k >= 1 and shrink >= 0, got k={k}, shrink={shrink}")
        self.k, self.shrink = int(k), float(shrink)
        self.register_buffer("similarity", torch.zeros(n_items, n_items))

    @torch.no_grad()
    def fit(self, train: sp.csr_matrix) -> None:
        """Cosine similarities of the item columns of ``train`` [n_users, n_items], top-k kept."""
        binary = sp.csr_matrix(train > 0, dtype=np.float32)
        co = torch.from_numpy((binary.T.tocsr() @ binary).toarray()).to(self.device)  # [I, I]
        norms = torch.sqrt(torch.diagonal(co).clone())  # |c_i|: sqrt of each item's count
        sim = co / (norms[:, None] * norms[None, :] + self.shrink + 1e-6)
        sim.fill_diagonal_(0.0)
        k = min(self.k, self.n_items)
        # sim is exactly symmetric, so column j's k most similar items are row j's: topk along
        # the contiguous rows (0.5 s instead of 0.8 s at 3,600 items), put back as columns
        top = torch.topk(sim, k, dim=1)
        self.similarity.copy_(torch.zeros_like(sim).scatter_(1, top.indices, top.values).T)

    def forward(self, x: Tensor) -> Tensor:
        """Scores [batch, n_items] = x [batch, n_items] @ S."""
        return x @ self.similarity

    def score_items(self, x: Tensor, items: Tensor) -> Tensor:
        """Scores [batch, m] of ``items`` (long [m]): x @ S[:, items]."""
        return x @ self.similarity[:, items]

    def first_layer(self) -> Tensor:
        """S [n_items, n_items]: the model is linear in x."""
        return self.similarity

    def forward_from_first(self, h: Tensor, moments: Tensor, items: Tensor | None = None) -> Tensor:
        """The scores are the first layer's output ``h = x S`` (its ``items`` columns)."""
        return h if items is None else h[:, items]
