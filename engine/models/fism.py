"""FISM: factored item similarity with a history-computed user factor, trained with BPR.

This is FISM (Kabbur, Ning and Karypis, "FISM: Factored Item Similarity Models for Top-N
Recommender Systems", KDD 2013) with its ranking loss taken from BPR (Rendle et al. 2009) and
several sampled negatives per positive. It is *not* the free-embedding BPR-MF of Rendle et
al. (that model is :mod:`engine.models.bpr`, registry name ``bpr``): the user factor is a
normalised sum over the user's items (as in FISM and NAIS), so any history, edited or new, is
scorable without a fold-in:

    u(x)    = (x W) / max(|x|, 1)^alpha                      [batch, dim]
    s(x, i) = u(x) . v_i + b_i                                [batch, n_items]

with ``W`` [n_items, dim] the history map, ``v`` [n_items, dim] the item factors and ``b``
[n_items] the item biases. Training uses the BPR loss (Rendle et al. 2009): every training
interaction (user, i) of the batch is one positive, paired with ``negatives`` items j drawn
uniformly from the items outside the user's history, and the mean of
``-log sigmoid(s(x_-i, i) - s(x, j))`` is minimised, where ``x_-i`` is the history without
``i`` (FISM's exclusion, so an item never explains itself). The link is sigmoid:
``sigmoid(s)`` reads as the preference probability.

Defaults (8 negatives, lr 0.01, 64 users a batch) were chosen on the validation NDCG@10 of
MovieLens 100K: several negatives per positive make each epoch worth more at little cost,
since all scores of a batch come from one matmul.
"""

from __future__ import annotations

from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from engine.contract import LossContext, Recommender
from engine.models.negatives import sample_negatives


class FISM(Recommender):
    """FISM with a BPR loss; parameters ``history`` W, ``items`` v, ``bias`` b.

    Registered as ``fism``; runs saved under its former name ``mf`` load as ``fism``.
    """

    name = "fism"
    link = "sigmoid"
    trainable = True
    default_train: ClassVar[dict[str, Any]] = {
        "epochs": 30,
        "batch_size": 64,
        "lr": 1e-2,
        "weight_decay": 0.0,
        "optimizer": "adam",
        "patience": 3,
        "eval_every": 2,
    }

    def __init__(self, n_items: int, dim: int = 64, alpha: float = 0.5, negatives: int = 8) -> None:
        super().__init__(n_items, dim=dim, alpha=alpha, negatives=negatives)
        self.alpha, self.negatives = float(alpha), int(negatives)
        self.history = nn.Parameter(torch.empty(n_items, dim))  # W: item -> user factor
        self.items = nn.Parameter(torch.empty(n_items, dim))  # v: item factors
        self.bias = nn.Parameter(torch.empty(n_items))  # b: item biases
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """Xavier-normal factors (as RecBole's BPR), zero biases."""
        nn.init.xavier_normal_(self.history)
        nn.init.xavier_normal_(self.items)
        nn.init.zeros_(self.bias)

    # -- scoring ---------------------------------------------------------------------------
    def user_embeddings(self, x: Tensor) -> Tensor:
        """u(x) = x W / max(|x|, 1)^alpha: [batch, dim] from ``x`` [batch, n_items]."""
        size = x.sum(dim=1, keepdim=True).clamp(min=1.0)
        return (x @ self.history) / size.pow(self.alpha)

    def item_embeddings(self) -> Tensor:
        """Item factors v [n_items, dim]."""
        return self.items

    def forward(self, x: Tensor) -> Tensor:
        """Scores [batch, n_items] = u(x) v^T + b."""
        return self.user_embeddings(x) @ self.items.T + self.bias

    def first_layer(self) -> Tensor:
        """The history map W [n_items, dim]: the user factor reads x through x W and |x|."""
        return self.history

    def forward_from_first(self, h: Tensor, moments: Tensor, items: Tensor | None = None) -> Tensor:
        """Scores [batch, n_items] (or [batch, m] of ``items``) from ``h = x W`` [batch, dim]."""
        u = h / moments[:, :1].clamp(min=1.0).pow(self.alpha)
        if items is None:
            return u @ self.items.T + self.bias
        return u @ self.items[items].T + self.bias[items]

    # -- training --------------------------------------------------------------------------
    def loss(self, x: Tensor, ctx: LossContext) -> Tensor:
        """Mean BPR loss over every (user, positive) pair of the batch ``x`` [batch, n_items].

        Written with one [batch, n_items] matmul and scalar gathers: the positive's score
        from the history without it is ``(sum_j W_j . v_i - W_i . v_i) / (|x| - 1)^alpha``.
        """
        row, pos = torch.nonzero(x > 0, as_tuple=True)  # [n_pos] each
        row_neg = row.repeat_interleave(self.negatives)  # [n_pos * negatives]
        neg = sample_negatives(x, row_neg, ctx.generator).view(-1, self.negatives)
        dots = (x @ self.history) @ self.items.T  # [batch, n_items]: sum_j x_j W_j . v_i
        self_dots = (self.history * self.items).sum(dim=1)  # [n_items]: W_i . v_i
        size = x.sum(dim=1)[row]  # [n_pos]
        s_pos = (dots[row, pos] - self_dots[pos]) / (size - 1).clamp(min=1).pow(self.alpha)
        s_pos = s_pos + self.bias[pos]  # [n_pos]
        s_neg = dots[row[:, None], neg] / size.clamp(min=1).pow(self.alpha)[:, None]
        s_neg = s_neg + self.bias[neg]  # [n_pos, negatives]
        return -F.logsigmoid(s_pos[:, None] - s_neg).mean()
