"""Most-popular items: every user gets the same scores, the items' training counts."""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp
import torch
from torch import Tensor

from engine.contract import Recommender


class Pop(Recommender):
    """Scores are item popularity: the number of training users with the item.

    Buffer ``counts`` [n_items] (float32). The scores do not depend on ``x`` (its gradient is
    zero), but ``forward`` stays differentiable so explainers can run on it.
    """

    name = "pop"
    link = "identity"
    trainable = False

    def __init__(self, n_items: int) -> None:
        super().__init__(n_items)
        self.register_buffer("counts", torch.zeros(n_items))

    def fit(self, train: sp.csr_matrix) -> None:
        """Count each item's training users; ``train`` is [n_users, n_items]."""
        counts = np.asarray((train > 0).sum(axis=0), dtype=np.float32).ravel()
        self.counts.copy_(torch.from_numpy(counts))

    def forward(self, x: Tensor) -> Tensor:
        """Popularity counts broadcast to [batch, n_items] (plus ``0 * x`` for the graph)."""
        return self.counts.unsqueeze(0) + 0.0 * x
