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
values are kept, not only the means.
"""

from __future__ import annotations

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
    mask = history if mask is None else mask
    k = min(int(k), history.shape[1])
    device = model.device
    items, scores = [], []
    for chunk in batches(users, batch_size):
        s = model(dense_rows(history, chunk, device))
        s = s.masked_fill(dense_rows(mask, chunk, device) > 0, float("-inf"))
        top = torch.topk(s, k, dim=1)
        items.append(top.indices.cpu().numpy())
        scores.append(top.values.float().cpu().numpy())
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
    items, _ = top_k(model, split.train, users, max(ks), split.mask(part), batch_size)
    n_relevant = torch.from_numpy(np.diff(target.indptr)[users].astype(np.float64))
    hits = torch.from_numpy(np.asarray(target[users[:, None], items].todense(), dtype=np.float64))
    hits = torch.nn.functional.pad(hits, (0, max(ks) - hits.shape[1]))
    values = ranking_metrics(hits, n_relevant, tuple(ks))
    per_user = pl.DataFrame(
        {"user": users.astype(np.int64), **{m: v.numpy() for m, v in values.items()}}
    )
    means = {m: float(v.mean()) if len(users) else 0.0 for m, v in values.items()}
    return EvalResult(part=part, ks=tuple(ks), per_user=per_user, means=means)
