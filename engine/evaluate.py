"""Full-ranking evaluation: every item is a candidate, the user's known items are masked.

Protocol: for the ``valid`` part the train items are masked; for ``test`` the train and
valid items are. The model's input is the user's train row. Metrics follow RecBole 1.2:

- ``recall@K``  = hits in the top K / number of held-out items;
- ``precision@K`` = hits / K;
- ``hit@K``     = 1 if any held-out item is in the top K;
- ``mrr@K``     = 1 / rank of the first hit (0 without one);
- ``ndcg@K``    = DCG / IDCG, gains 1 / log2(rank + 1), IDCG over min(|held-out|, K) hits;
- ``map@K``     = sum over hit ranks r of precision@r, divided by min(|held-out|, K)
  (RecBole's variant; trec_eval divides by |held-out|).

Everything is vectorised with ``torch.topk`` on the model's device, in user batches; per-user
values are kept, not only the means. Evaluation streams: each batch's scores [batch, n_items]
are reduced to its top K and its hits before the next batch is scored, and a batch holds at
most :data:`BATCH_CELLS` scores (fewer users per batch on large catalogues), so memory does
not grow with the number of users (MovieLens-10M size: 70,000 users x 10,000 items).
"""

from __future__ import annotations

import warnings
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import polars as pl
import scipy.sparse as sp
import torch
from torch import Tensor

from data.splits import Split
from engine.contract import Recommender

METRICS: tuple[str, ...] = ("recall", "ndcg", "mrr", "hit", "precision", "map")
BATCH_CELLS = 1 << 23
"""Most scores (users x items) held at once while ranking: 32 MB of float32."""


@dataclass(frozen=True)
class EvalResult:
    """Per-user metrics [n_eval rows: ``user`` + one column per ``metric@K``] and their means."""

    part: str
    ks: tuple[int, ...]
    per_user: pl.DataFrame
    means: dict[str, float]


def dense_rows(matrix: sp.csr_matrix, rows: np.ndarray, device: torch.device) -> Tensor:
    """Rows of a CSR matrix as a dense float32 tensor [len(rows), n_cols] on ``device``."""
    block = matrix[rows].tocoo()
    out = torch.zeros(len(rows), matrix.shape[1], dtype=torch.float32, device=device)
    idx = torch.from_numpy(np.stack([block.row, block.col]).astype(np.int64)).to(device)
    out[idx[0], idx[1]] = torch.from_numpy(block.data.astype(np.float32)).to(device)
    return out


def batches(users: np.ndarray, batch_size: int) -> Iterator[np.ndarray]:
    """Consecutive chunks of ``users`` of at most ``batch_size``."""
    for start in range(0, users.shape[0], batch_size):
        yield users[start : start + batch_size]


def rows_per_batch(batch_size: int, n_items: int) -> int:
    """``batch_size`` capped so that a batch's scores hold at most :data:`BATCH_CELLS` values
    (at least one user)."""
    return max(1, min(int(batch_size), BATCH_CELLS // max(int(n_items), 1)))


def masked_fill_rows(scores: Tensor, mask: sp.csr_matrix, rows: np.ndarray) -> Tensor:
    """``scores`` [len(rows), n_items] with the stored cells of ``mask[rows]`` set to -inf, in
    place (the mask is read sparse: no second dense block)."""
    block = mask[rows].tocoo()
    keep = block.data > 0
    r = torch.from_numpy(block.row[keep].astype(np.int64)).to(scores.device)
    c = torch.from_numpy(block.col[keep].astype(np.int64)).to(scores.device)
    scores[r, c] = float("-inf")
    return scores


def sparse_rows(matrix: sp.csr_matrix, rows: np.ndarray, device: torch.device) -> Tensor:
    """Rows of a CSR matrix as a sparse CSR float32 tensor [len(rows), n_cols] on ``device``."""
    block = sp.csr_matrix(matrix[rows], dtype=np.float32)
    with warnings.catch_warnings():  # torch calls its CSR tensors beta; sparse.mm is all we use
        warnings.filterwarnings("ignore", message="Sparse CSR tensor support is in beta")
        return torch.sparse_csr_tensor(
            torch.from_numpy(block.indptr.astype(np.int64)),
            torch.from_numpy(block.indices.astype(np.int64)),
            torch.from_numpy(block.data),
            size=block.shape,
            device=device,
            check_invariants=False,  # scipy built it; saying so also silences torch's warning
        )


def score_rows(model: Recommender, matrix: sp.csr_matrix, rows: np.ndarray) -> Tensor:
    """``model``'s scores [len(rows), n_items] for the histories ``matrix[rows]``.

    With a first layer linear in ``x`` (:meth:`Recommender.first_layer`, eval mode), ``x W`` is
    a sparse product: a history of ``h`` items costs ``h`` rows of ``W`` instead of all
    ``n_items`` (EASE at MovieLens-10M size: 140x fewer operations); otherwise the rows are
    made dense for :meth:`Recommender.forward`.
    """
    device = model.device
    weight = None if model.training else model.first_layer()
    if weight is None:
        return model(dense_rows(matrix, rows, device))
    block = sp.csr_matrix(matrix[rows], dtype=np.float64)
    moments = np.stack(
        [np.asarray(block.sum(1)).ravel(), np.asarray(block.power(2).sum(1)).ravel()]
    )
    x = sparse_rows(block, np.arange(block.shape[0]), device).to(weight.dtype)
    moments_t = torch.from_numpy(moments.T.copy()).to(device=device, dtype=weight.dtype)
    return model.forward_from_first(torch.sparse.mm(x, weight), moments_t)


@torch.no_grad()
def ranked_batches(
    model: Recommender,
    history: sp.csr_matrix,
    users: np.ndarray,
    k: int,
    mask: sp.csr_matrix | None = None,
    batch_size: int = 512,
) -> Iterator[tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """``(users, items, scores)`` per user batch: the batch's top-``k`` items and scores, two
    arrays [batch, k], computed batch by batch (see :func:`top_k`)."""
    mask = history if mask is None else mask
    k = min(int(k), history.shape[1])
    for chunk in batches(users, rows_per_batch(batch_size, history.shape[1])):
        s = masked_fill_rows(score_rows(model, history, chunk), mask, chunk)
        top = torch.topk(s, k, dim=1)
        yield chunk, top.indices.cpu().numpy(), top.values.float().cpu().numpy()


@torch.no_grad()
def top_k(
    model: Recommender,
    history: sp.csr_matrix,
    users: np.ndarray,
    k: int,
    mask: sp.csr_matrix | None = None,
    batch_size: int = 512,
) -> tuple[np.ndarray, np.ndarray]:
    """Top-``k`` items and their scores for ``users``: two arrays [len(users), k].

    ``history`` rows are the model's input; ``mask`` rows (default: the history) are excluded.
    With fewer than ``k`` items, ``k`` is capped at the number of items.
    """
    k = min(int(k), history.shape[1])
    items, scores = [], []
    for _, top_items, top_scores in ranked_batches(model, history, users, k, mask, batch_size):
        items.append(top_items)
        scores.append(top_scores)
    if not items:
        return np.zeros((0, k), dtype=np.int64), np.zeros((0, k), dtype=np.float32)
    return np.concatenate(items), np.concatenate(scores)


def ranking_metrics(hits: Tensor, n_relevant: Tensor, ks: tuple[int, ...]) -> dict[str, Tensor]:
    """Per-user metrics from a hit matrix.

    ``hits``: float [U, max(ks)], 1 where the item at that rank is held out;
    ``n_relevant``: float [U], number of held-out items. Returns ``{"ndcg@10": [U], ...}``.
    """
    max_k = hits.shape[1]
    ranks = torch.arange(1, max_k + 1, device=hits.device, dtype=hits.dtype)
    discounts = 1.0 / torch.log2(ranks + 1.0)
    cum_hits = hits.cumsum(dim=1)
    first_hit = torch.where(hits > 0, ranks, torch.full_like(hits, float("inf"))).min(dim=1).values
    out: dict[str, Tensor] = {}
    for k in ks:
        h = hits[:, :k]
        n_hits = cum_hits[:, k - 1]
        ideal = torch.clamp(n_relevant, max=k)
        idcg = torch.cumsum(discounts[:k], 0)[(ideal - 1).clamp(min=0).long()]
        out[f"recall@{k}"] = n_hits / n_relevant
        out[f"ndcg@{k}"] = (h * discounts[:k]).sum(1) / idcg
        out[f"mrr@{k}"] = torch.where(first_hit <= k, 1.0 / first_hit, torch.zeros_like(n_hits))
        out[f"hit@{k}"] = (n_hits > 0).to(hits.dtype)
        out[f"precision@{k}"] = n_hits / k
        out[f"map@{k}"] = (h * cum_hits[:, :k] / ranks[:k]).sum(1) / ideal
    return out


@torch.no_grad()
def evaluate(
    model: Recommender,
    split: Split,
    part: str = "test",
    ks: tuple[int, ...] = (10, 20),
    batch_size: int = 512,
) -> EvalResult:
    """Full-ranking metrics of ``model`` on ``split``'s ``part`` (valid or test).

    With fewer items than a K, the list at K holds every item and its remaining places count
    as misses (as masked items do), so the metrics at that K keep their definitions.
    """
    target = split.target(part)
    users = split.eval_users(part)
    ranked = ranked_batches(model, split.train, users, max(ks), split.mask(part), batch_size)
    parts = [_hits(target, chunk, items) for chunk, items, _ in ranked]
    k_cap = min(max(ks), split.train.shape[1])
    hits = torch.from_numpy(np.concatenate(parts) if parts else np.zeros((0, k_cap)))
    n_relevant = torch.from_numpy(np.diff(target.indptr)[users].astype(np.float64))
    hits = torch.nn.functional.pad(hits, (0, max(ks) - hits.shape[1]))
    values = ranking_metrics(hits, n_relevant, tuple(ks))
    per_user = pl.DataFrame(
        {"user": users.astype(np.int64), **{m: v.numpy() for m, v in values.items()}}
    )
    means = {m: float(v.mean()) if len(users) else 0.0 for m, v in values.items()}
    return EvalResult(part=part, ks=tuple(ks), per_user=per_user, means=means)


def _hits(target: sp.csr_matrix, users: np.ndarray, items: np.ndarray) -> np.ndarray:
    """1.0 where ``items[r, j]`` is held out for ``users[r]``: float64 [len(users), k]."""
    rows = np.repeat(np.asarray(users, dtype=np.int64), items.shape[1])
    cols = np.asarray(items, dtype=np.int64).ravel()
    return np.asarray(target[rows, cols], dtype=np.float64).reshape(items.shape)
