"""Negative sampling shared by the pairwise and pointwise models (FISM, FISM-NeuMF, LightGCN)."""

from __future__ import annotations

import torch
from torch import Tensor


def sample_negatives(x: Tensor, row: Tensor, generator: torch.Generator, tries: int = 3) -> Tensor:
    """One item per entry of ``row`` [n], uniform over the items not in ``x[row]``.

    Items are drawn uniformly and redrawn up to ``tries`` times where they hit the history;
    the few still hitting it are then drawn exactly from their row's non-history items. ``x``
    is [batch, n_items]; a row whose history holds every item keeps a uniform draw. Returns a
    long tensor [n].
    """
    n_items = x.shape[1]
    neg = torch.randint(n_items, row.shape, generator=generator, device=x.device)
    for _ in range(tries):
        hit = x[row, neg] > 0
        if not bool(hit.any()):
            return neg
        redraw = torch.randint(n_items, row.shape, generator=generator, device=x.device)
        neg = torch.where(hit, redraw, neg)
    left = torch.nonzero(x[row, neg] > 0).ravel()
    if len(left):
        free = (x[row[left]] <= 0).float()  # [n_left, n_items]
        free[free.sum(dim=1) == 0] = 1.0
        neg[left] = torch.multinomial(free, 1, generator=generator).ravel()
    return neg
