"""Nearest items in an embedding space (cosine similarity), for the dashboard's item map."""

from __future__ import annotations

import numpy as np

from data.errors import ReclensError


def nearest(vectors: np.ndarray, index: int, k: int = 10) -> tuple[np.ndarray, np.ndarray]:
    """The ``k`` rows of ``vectors`` [n, d] most cosine-similar to row ``index`` (itself excluded).

    Returns (indices int64 [k'], similarities float64 [k']) sorted from the most similar, with
    ``k' = min(k, n - 1)``; ties keep ascending index order. Zero vectors have similarity 0.
    """
    vectors = np.asarray(vectors, dtype=np.float64)
    if vectors.ndim != 2:
        raise ReclensError(f"nearest: vectors must be [n, d], got shape {vectors.shape}")
    n = vectors.shape[0]
    if not 0 <= index < n:
        raise ReclensError(f"nearest: index {index} out of range for {n} vectors")
    norms = np.linalg.norm(vectors, axis=1)
    safe = np.where(norms > 0, norms, 1.0)
    sims = (vectors @ vectors[index]) / (safe * safe[index])
    sims[norms == 0] = 0.0
    sims[index] = -np.inf
    k = int(max(0, min(k, n - 1)))
    order = np.lexsort((np.arange(n), -sims))[:k]
    return order.astype(np.int64), sims[order]
