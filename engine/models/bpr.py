"""BPR-MF: matrix factorisation trained with Bayesian Personalised Ranking (Rendle et al. 2009).

The classic model: free user factors ``U`` [n_users, dim] and item factors ``V``
[n_items, dim], score ``s(u, i) = U_u . V_i``, trained by minimising over sampled triples
(user u, interacted item i, item j the user has not interacted with)

    -log sigmoid(U_u . V_i - U_u . V_j) + reg (|U_u|^2 + |V_i|^2 + |V_j|^2)

with Adam over shuffled mini-batches of the training interactions (one uniformly drawn
negative per interaction and epoch, redrawn where it hits the user's history), as LibRec's and
RecBole's BPR do. Training happens in :meth:`BPR.fit` (the model is ``trainable = False`` to
:mod:`engine.train`: its user table is sized by the training matrix, which the constructor
does not know).

The contract needs any history ``x`` to be scorable, so the user table is not kept: after
training, a user's factor is folded in from ``x`` by a ridge regression of the learned user
factors on the training histories ``X`` [n_users, n_items] (binary),

    W = (X^T X + fold_reg I)^-1 X^T U       [n_items, dim],    u(x) = x W,

a least-squares map that gives a training user a factor close to its learned one and an
edited or new history the factor of the users with similar histories; it is linear, hence
differentiable, in ``x``. On MovieLens 100K (seed 0) the fold-in validates as well as the
learned factors (NDCG@10 .2433 against .2398). Folding in by least squares on the item
factors instead, the iALS user step, lost about a third of the validation NDCG@10 in a first
trial: BPR's item factors are trained to rank, not to reconstruct the 0/1 history. ``W`` is
a dense solve over the items, fine up to about 20k items, like EASE. Link: identity (scores
are dot products).

Defaults (dim 64, Adam lr 5e-3, 1024 interactions a batch, 40 epochs, reg 1e-2, fold-in reg
10) were chosen on the validation NDCG@10 of MovieLens 100K (random 8:1:1 split, seed 0)
among reg 0-3e-2, lr 5e-3-4e-2, batches of 1024-8192, dim 64-128 and 30-80 epochs. The
per-step tensors are small, so training runs on one intra-op thread (ten times faster than
two on a busy two-core machine).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import numpy as np
import scipy.sparse as sp
import torch
import torch.nn.functional as F
from torch import Tensor

from data.errors import ReclensError
from engine.contract import Recommender


def sample_triples(
    train: sp.csr_matrix, rng: np.random.Generator, tries: int = 5
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(users, positives, negatives) [nnz] each: every interaction with one drawn negative.

    Negatives are uniform over the items and redrawn up to ``tries`` times where they hit the
    user's history (the few left after that keep their draw).
    """
    known = train.toarray() > 0  # [n_users, n_items] bool, for the hit test
    users = np.repeat(np.arange(train.shape[0]), np.diff(train.indptr))
    positives = train.indices.astype(np.int64)
    negatives = rng.integers(train.shape[1], size=len(users))
    for _ in range(tries):
        hit = known[users, negatives]
        if not hit.any():
            break
        negatives[hit] = rng.integers(train.shape[1], size=int(hit.sum()))
    return users, positives, negatives


class BPR(Recommender):
    """BPR-MF; buffer ``items`` V [n_items, dim]; users folded in from ``x``."""

    name = "bpr"
    link = "identity"
    trainable = False

    def __init__(
        self,
        n_items: int,
        dim: int = 64,
        epochs: int = 40,
        lr: float = 5e-3,
        batch_size: int = 1024,
        reg: float = 1e-2,
        fold_reg: float = 10.0,
    ) -> None:
        super().__init__(
            n_items,
            dim=dim,
            epochs=epochs,
            lr=lr,
            batch_size=batch_size,
            reg=reg,
            fold_reg=fold_reg,
        )
        if min(int(dim), int(epochs), int(batch_size)) < 1 or float(lr) <= 0:
            raise ReclensError("bpr needs dim, epochs and batch_size >= 1 and lr > 0")
        if float(reg) < 0 or float(fold_reg) <= 0:
            raise ReclensError("bpr needs reg >= 0 and fold_reg > 0")
        self.epochs, self.lr, self.batch_size = int(epochs), float(lr), int(batch_size)
        self.reg, self.fold_reg = float(reg), float(fold_reg)
        self.register_buffer("items", torch.zeros(n_items, int(dim)))  # V [n_items, dim]
        self.register_buffer("history", torch.zeros(n_items, int(dim)))  # W [n_items, dim]
        self.seed = int(torch.randint(2**31 - 1, ()))  # drawn from the caller's seeded RNG

    def fit(self, train: sp.csr_matrix) -> None:
        """Train U and V with BPR on the binary ``train`` matrix [n_users, n_items]; keep V
        and the fold-in map W."""
        binary = sp.csr_matrix(train > 0, dtype=np.float32)
        with _one_thread():
            users_table, items_table = self._train(binary)
        dense = torch.from_numpy(binary.toarray()).double()  # X [n_users, n_items]
        system = dense.T @ dense
        system.diagonal().add_(self.fold_reg)
        history = torch.linalg.solve(system, dense.T @ users_table.double())  # W [n_items, dim]
        self.items.copy_(items_table.to(self.items.device))
        self.history.copy_(history.float().to(self.history.device))

    def _train(self, binary: sp.csr_matrix) -> tuple[Tensor, Tensor]:
        """BPR with Adam: the learned user and item tables [n_users, dim], [n_items, dim]."""
        rng = np.random.default_rng(self.seed)
        generator = torch.Generator().manual_seed(self.seed)
        dim = self.items.shape[1]
        users_table = torch.randn(binary.shape[0], dim, generator=generator) * 0.1  # [U, dim]
        items_table = torch.randn(self.n_items, dim, generator=generator) * 0.1  # [I, dim]
        users_table.requires_grad_(True)
        items_table.requires_grad_(True)
        optimizer = torch.optim.Adam([users_table, items_table], lr=self.lr)
        for _ in range(self.epochs):
            users, positives, negatives = sample_triples(binary, rng)
            order = rng.permutation(len(users))
            for lo in range(0, len(order), self.batch_size):
                batch = order[lo : lo + self.batch_size]
                u = users_table[torch.from_numpy(users[batch])]  # [b, dim]
                i = items_table[torch.from_numpy(positives[batch])]  # [b, dim]
                j = items_table[torch.from_numpy(negatives[batch])]  # [b, dim]
                margin = (u * (i - j)).sum(dim=1)  # [b]
                penalty = (u.pow(2) + i.pow(2) + j.pow(2)).sum(dim=1)  # [b]
                loss = (-F.logsigmoid(margin) + self.reg * penalty).mean()
                optimizer.zero_grad()
                loss.backward()
                optimizer.step()
        return users_table.detach(), items_table.detach()

    def user_embeddings(self, x: Tensor) -> Tensor:
        """The fold-in u(x) = x W [batch, dim] of histories ``x`` [batch, n_items]."""
        return x @ self.history

    def item_embeddings(self) -> Tensor:
        """Item factors V [n_items, dim]."""
        return self.items

    def forward(self, x: Tensor) -> Tensor:
        """Scores [batch, n_items] = u(x) V^T."""
        return self.user_embeddings(x) @ self.items.T


@contextlib.contextmanager
def _one_thread() -> Iterator[None]:
    """Run the block on one intra-op torch thread, restoring the previous count after."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)
