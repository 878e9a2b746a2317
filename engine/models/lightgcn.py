"""LightGCN: simplified graph convolution for recommendation (He et al., SIGIR 2020).

LightGCN propagates embeddings over the user-item graph without weights or non-linearities,
``e_u^(k+1) = sum_i A_ui e_i^(k) / sqrt(d_u d_i)`` and ``e_i^(k+1) = sum_u A_ui e_u^(k) /
sqrt(d_u d_i)`` (``A`` the training matrix, ``d`` the degrees), and scores ``u . i`` with the
layer means ``u = mean_k e_u^(k)``, ``i = mean_k e_i^(k)`` over k = 0..K.

**Variant (so that any history is scorable).** The paper's free user embeddings ``e_u^(0)``
are replaced by the normalised sum of the user's items' embeddings,
``e_u^(0) = sum_i x_i e_i^(0) / sqrt(|x| d_i)``: the only parameters are the item embeddings
``E = e^(0)`` [n_items, dim], and a user's layers, for training users in the propagation and
for any history ``x`` at scoring, are the same normalised sums over the item layers:

    e_u^(0) = agg(x, E),   e_u^(k) = agg(x, e_i^(k-1)),   agg(x, M) = (x / sqrt|x|) D_i^-1/2 M

so ``u(x) = agg(x, user_side)`` with ``user_side = (E + sum_{k<K} e_i^(k)) / (K + 1)``
[n_items, dim], and the item side is ``item_side = mean_{k<=K} e_i^(k)`` [n_items, dim].
The item degrees ``d_i`` and layers come from the training graph; an edited or new history
does not change them (as a fold-in user would not). Scores ``u(x) . item_side`` are linear,
hence differentiable, in ``x``; link: identity.

Training: the BPR loss (as the paper) over every interaction (u, i) of a batch of users with
``negatives`` uniformly drawn non-interacted items, the positive scored from the history
without it (FISM's exclusion of the item's own term, so an item does not explain itself),
L2 through the optimiser's weight decay. Each step propagates the whole graph (K sparse
products each way, nnz x dim, with the graph and its transpose held in CSR, so the backward
product is a CSR product too), and stores the resulting ``user_side``, ``item_side`` and
degree scale as buffers, which is what scoring uses: the weights an evaluation sees (and the
trainer keeps) are those of the latest step's propagation.

Defaults (dim 64, 2 layers, 4 negatives, Adam lr 5e-2, 256 users a batch, 60 epochs) were
chosen on the validation NDCG@10 of MovieLens 100K (random 8:1:1 split, seed 0) among lr
5e-3-1e-1, 1-2 layers and 128-512 users a batch; smaller rates were still improving at 60
epochs.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np
import scipy.sparse as sp
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from data.errors import ReclensError
from engine.contract import LossContext, Recommender
from engine.models.negatives import sample_negatives


class _Product(torch.autograd.Function):
    """``matrix @ dense`` for a constant sparse ``matrix``, differentiable in ``dense``
    through the stored ``transpose`` (CSR products; autograd's own is several times slower)."""

    @staticmethod
    def forward(ctx: Any, dense: Tensor, matrix: Tensor, transpose: Tensor) -> Tensor:
        ctx.transpose = transpose
        return matrix @ dense

    @staticmethod
    def backward(ctx: Any, grad: Tensor) -> tuple[Tensor, None, None]:
        return ctx.transpose @ grad, None, None


@dataclass(frozen=True)
class NormalisedGraph:
    """``G = D_u^-1/2 A D_i^-1/2`` [U, I] (``users``) and ``G^T`` [I, U] (``items``), CSR."""

    users: Tensor
    items: Tensor

    def to_users(self, item_rows: Tensor) -> Tensor:
        """``G item_rows``: [U, dim] from [I, dim]."""
        return _Product.apply(item_rows, self.users, self.items)

    def to_items(self, user_rows: Tensor) -> Tensor:
        """``G^T user_rows``: [I, dim] from [U, dim]."""
        return _Product.apply(user_rows, self.items, self.users)


def normalised_graph(train: sp.csr_matrix, device: torch.device) -> tuple[NormalisedGraph, Tensor]:
    """``D_u^-1/2 A D_i^-1/2`` of the training matrix and ``d_i^-1/2`` [n_items].

    Users or items without interactions get a zero scale.
    """
    binary = sp.csr_matrix(train > 0, dtype=np.float32)
    binary.sum_duplicates()
    d_u = np.asarray(binary.sum(axis=1)).ravel()
    d_i = np.asarray(binary.sum(axis=0)).ravel()
    inv_u = np.where(d_u > 0, 1.0 / np.sqrt(np.maximum(d_u, 1)), 0.0).astype(np.float32)
    inv_i = np.where(d_i > 0, 1.0 / np.sqrt(np.maximum(d_i, 1)), 0.0).astype(np.float32)
    norm = sp.csr_matrix(sp.diags(inv_u) @ binary @ sp.diags(inv_i), dtype=np.float32)
    graph = NormalisedGraph(_csr(norm, device), _csr(norm.T.tocsr(), device))
    return graph, torch.from_numpy(inv_i).to(device)


def _csr(matrix: sp.csr_matrix, device: torch.device) -> Tensor:
    """A scipy CSR matrix as a torch CSR tensor on ``device``."""
    matrix.sort_indices()
    with warnings.catch_warnings():  # torch's "sparse CSR support is in beta" notice
        warnings.simplefilter("ignore", UserWarning)
        return torch.sparse_csr_tensor(
            torch.from_numpy(matrix.indptr.astype(np.int64)),
            torch.from_numpy(matrix.indices.astype(np.int64)),
            torch.from_numpy(matrix.data),
            matrix.shape,
        ).to(device)


class LightGCN(Recommender):
    """LightGCN with history-derived layer-0 users; parameter ``embedding`` E [n_items, dim]."""

    name = "lightgcn"
    link = "identity"
    trainable = True
    default_train: ClassVar[dict[str, Any]] = {
        "epochs": 60,
        "batch_size": 256,
        "lr": 5e-2,
        "weight_decay": 0.0,
        "optimizer": "adam",
        "patience": 3,
        "eval_every": 2,
    }

    def __init__(self, n_items: int, dim: int = 64, layers: int = 2, negatives: int = 4) -> None:
        super().__init__(n_items, dim=dim, layers=layers, negatives=negatives)
        if int(dim) < 1 or int(layers) < 0 or int(negatives) < 1:
            raise ReclensError("lightgcn needs dim >= 1, layers >= 0 and negatives >= 1")
        self.layers, self.negatives = int(layers), int(negatives)
        self.embedding = nn.Parameter(torch.empty(n_items, int(dim)))  # E = e_i^(0)
        self.register_buffer("user_side", torch.zeros(n_items, int(dim)))
        self.register_buffer("item_side", torch.zeros(n_items, int(dim)))
        self.register_buffer("scale", torch.ones(n_items))  # d_i^-1/2 of the training graph
        self._graph: tuple[tuple[int, int], NormalisedGraph, Tensor] | None = None  # key, G, scale
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """Xavier-normal item embeddings (as RecBole's LightGCN); scoring sides from them."""
        nn.init.xavier_normal_(self.embedding)
        with torch.no_grad():
            self.user_side.copy_(self.embedding)
            self.item_side.copy_(self.embedding)
            self.scale.fill_(1.0)

    # -- propagation -----------------------------------------------------------------------
    def propagate(self, graph: NormalisedGraph) -> tuple[Tensor, Tensor]:
        """(user_side, item_side) [n_items, dim] each, from ``E`` over ``graph`` [U, I]."""
        item_layers = [self.embedding]  # e_i^(k)
        users = graph.to_users(self.embedding)  # e_u^(0) = agg(train rows, E) [U, dim]
        for _ in range(self.layers):
            item_layers.append(graph.to_items(users))  # e_i^(k+1)
            users = graph.to_users(item_layers[-2])  # e_u^(k+1) = agg(rows, e_i^(k))
        user_side = (self.embedding + sum(item_layers[:-1])) / (self.layers + 1)
        return user_side, torch.stack(item_layers).mean(dim=0)

    # -- scoring ---------------------------------------------------------------------------
    def user_embeddings(self, x: Tensor) -> Tensor:
        """u(x) = agg(x, user_side): [batch, dim] from ``x`` [batch, n_items]."""
        return self._aggregate(x, self.user_side, self.scale)

    def item_embeddings(self) -> Tensor:
        """The propagated item embeddings ``item_side`` [n_items, dim]."""
        return self.item_side

    def forward(self, x: Tensor) -> Tensor:
        """Scores [batch, n_items] = u(x) item_side^T."""
        return self.user_embeddings(x) @ self.item_side.T

    @staticmethod
    def _aggregate(x: Tensor, side: Tensor, scale: Tensor) -> Tensor:
        size = x.sum(dim=1, keepdim=True).clamp(min=1.0)  # |x| [batch, 1]
        return (x @ (scale[:, None] * side)) / size.sqrt()

    # -- training --------------------------------------------------------------------------
    def loss(self, x: Tensor, ctx: LossContext) -> Tensor:
        """Mean BPR loss over every (user, positive) of ``x`` [batch, n_items] with negatives."""
        graph, scale = self._training_graph(ctx.train)
        user_side, item_side = self.propagate(graph)
        with torch.no_grad():  # what scoring uses from now on
            self.user_side.copy_(user_side)
            self.item_side.copy_(item_side)
            self.scale.copy_(scale)
        row, pos = torch.nonzero(x > 0, as_tuple=True)  # [n_pos] each
        row_neg = row.repeat_interleave(self.negatives)
        neg = sample_negatives(x, row_neg, ctx.generator).view(-1, self.negatives)
        size = x.sum(dim=1).clamp(min=1.0).sqrt()  # [batch]
        users = (x @ (scale[:, None] * user_side)) / size[:, None]  # [batch, dim]
        own = scale * (user_side * item_side).sum(dim=1)  # [n_items]: the item's own term
        s_pos = (users[row] * item_side[pos]).sum(dim=1) - own[pos] / size[row]  # [n_pos]
        s_neg = (users[row][:, None, :] * item_side[neg]).sum(dim=2)  # [n_pos, negatives]
        return -F.logsigmoid(s_pos[:, None] - s_neg).mean()

    def _training_graph(self, train: Any) -> tuple[NormalisedGraph, Tensor]:
        """The normalised graph of ``train``, built once per training matrix."""
        key = (id(train), int(train.nnz))
        if self._graph is None or self._graph[0] != key:
            graph, scale = normalised_graph(train, self.device)
            self._graph = (key, graph, scale)
        return self._graph[1], self._graph[2]
