"""The target's rank, comparable across models: by hand on a linear model, along SPINRec-like
paths, and along the fidelity curves of one explain_target pass."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from data.errors import ReclensError
from engine.contract import Recommender
from explainers.base import Explanation
from explainers.target import explain_target, path_ranks, target_ranks

N_ITEMS = 12
HISTORY = np.array([0, 1, 2])
TARGET = 3


class Linear(Recommender):
    """``scores = x W + bias``, set by hand."""

    name = "linear"
    link = "identity"
    trainable = False

    def __init__(self, n_items: int) -> None:
        super().__init__(n_items)
        self.weight = nn.Parameter(torch.zeros(n_items, n_items))
        self.bias = nn.Parameter(torch.zeros(n_items))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x @ self.weight + self.bias


def model() -> Linear:
    """Items 0, 1, 2 add 3, 2.5, 1 to the target (item 3, bias 0); items 4..7 score 5, 4, 2.5,
    0.5; items 8..11 score -1; history items score 100 (they must never count). No ties."""
    m = Linear(N_ITEMS)
    with torch.no_grad():
        m.weight[HISTORY, TARGET] = torch.tensor([3.0, 2.5, 1.0])
        m.bias[4:8] = torch.tensor([5.0, 4.0, 2.5, 0.5])
        m.bias[8:] = -1.0
        m.bias[HISTORY] = 100.0
    return m


def vector(items: list[int]) -> np.ndarray:
    x = np.zeros(N_ITEMS, dtype=np.float32)
    x[items] = 1.0
    return x


def test_target_ranks_count_only_items_outside_the_excluded_set() -> None:
    exclude = vector([0, 1, 2]) > 0
    rows = np.stack([vector([0, 1, 2]), vector([0]), vector([2]), vector([])])
    # target scores 6.5, 3, 1, 0 against 5, 4, 2.5, 0.5 (and -1s): ranks 1, 3, 4, 5
    assert target_ranks(model(), rows, TARGET, exclude).tolist() == [1, 3, 4, 5]
    exclude[4] = True  # leaving out the top non-history item lifts every rank behind it
    assert target_ranks(model(), rows, TARGET, exclude).tolist() == [1, 2, 3, 4]
    with pytest.raises(ReclensError, match="exclude must be"):
        target_ranks(model(), rows, TARGET, exclude[:5])


def test_path_ranks_follow_the_straight_path_from_each_baseline() -> None:
    x = vector([0, 1, 2])
    baselines = np.stack([vector([]), vector([2, 9])])
    alphas = np.linspace(0.0, 1.0, 5)
    ranks = path_ranks(model(), x, baselines, alphas, TARGET)
    assert ranks.shape == (2, 5)
    for k, b in enumerate(baselines):
        for j, a in enumerate(alphas):
            point = b + a * (x - b)
            expected = target_ranks(model(), point, TARGET, x > 0)[0]
            assert ranks[k, j] == expected
    assert ranks[:, -1].tolist() == [1, 1]  # the user's own history: rank 1
    # the empty baseline: the target scores 6.5 alpha = 0, 1.6, 3.25, 4.9, 6.5
    assert ranks[0].tolist() == [5, 4, 3, 2, 1]
    also = (x > 0) | (np.arange(N_ITEMS) == 4)  # leave item 4 out too
    assert path_ranks(model(), x, baselines, alphas, TARGET, also)[0].tolist() == [4, 3, 2, 1, 1]


def test_explain_target_keeps_rank_curves_and_the_link() -> None:
    x = torch.from_numpy(vector([0, 1, 2]))
    given = Explanation(
        explainer="hand",
        target=TARGET,
        items=HISTORY,
        scores=np.array([3.0, 2.5, 1.0]),
        target_probability=6.5,
    )
    result = explain_target(model(), x, TARGET, {}, given={"hand": given}, best_of_kappa=False)
    assert result.link == "identity"
    deletion = result.rank_curve("hand", "del")
    # removing the top 0, 1, 2, 3 items: the target scores 6.5, 3.5, 1, 0
    counts = result.curves.counts
    by_count = {0: 1, 1: 3, 2: 4, 3: 5}
    assert deletion.tolist() == [by_count[int(c)] for c in counts]
    insertion = result.rank_curve("hand", "ins")
    kept = {0: 5, 1: 3, 2: 1, 3: 1}  # keeping nothing (0), item 0 (3), 0 and 1 (5.5), all
    assert insertion.tolist() == [kept[int(c)] for c in counts]
