"""Counterfactual fidelity curves against values computed by hand on a linear model."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torch import nn

from data.errors import ReclensError
from engine.contract import Recommender
from explainers.base import Explanation
from explainers.fidelity import (
    METRICS,
    deletion_aucs,
    explanation_metrics,
    fidelity_curves,
    removed_counts,
    unique_masks,
)

N_ITEMS = 30
HISTORY = np.array([0, 1, 2, 3])
TARGET = 4


class LinearBias(Recommender):
    """``scores = x W + bias`` with a chosen link; W and bias are set by hand."""

    name = "linear_bias"
    link = "identity"
    trainable = False

    def __init__(self, n_items: int, link: str = "identity") -> None:
        super().__init__(n_items)
        self.link = link  # type: ignore[misc]
        self.weight = nn.Parameter(torch.zeros(n_items, n_items))
        self.bias = nn.Parameter(torch.zeros(n_items))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x @ self.weight + self.bias


def hand_model(link: str = "identity") -> LinearBias:
    """History items 0..3 add 4, 3, 2, 1 to the target (item 4); other items have fixed scores:
    items 5..8 score 8, 9..13 score 5, 14..23 score 2, 24..29 score -1; history items score 50
    (so ranking them would change every rank: they must be left out)."""
    model = LinearBias(N_ITEMS, link)
    with torch.no_grad():
        model.weight[HISTORY, TARGET] = torch.tensor([4.0, 3.0, 2.0, 1.0])
        model.bias[5:9] = 8.0
        model.bias[9:14] = 5.0
        model.bias[14:24] = 2.0
        model.bias[24:30] = -1.0
        model.bias[HISTORY] = 50.0
    return model


def history() -> torch.Tensor:
    x = torch.zeros(N_ITEMS)
    x[HISTORY] = 1.0
    return x


def test_removed_counts_round_half_up():
    # f * 4 = 0, .4, .8, 1.2, 1.6, 2, 2.4, 2.8, 3.2, 3.6, 4
    assert removed_counts(4).tolist() == [0, 0, 1, 1, 2, 2, 2, 3, 3, 4, 4]
    # f * 5 = 0, .5, 1, 1.5, ...: halves go up
    assert removed_counts(5).tolist() == [0, 1, 1, 2, 2, 3, 3, 4, 4, 5, 5]
    assert removed_counts(1).tolist() == [0] * 5 + [1] * 6


@pytest.mark.parametrize("n", [1, 4, 7, 10, 23, 147])
def test_array_split_rule_equals_the_reference_codes_bins(n: int) -> None:
    """At f = k/10 the reference code removes the first k of np.array_split(order, 10)."""
    bins = np.array_split(np.arange(n), 10)
    expected = [sum(len(b) for b in bins[:k]) for k in range(11)]
    assert removed_counts(n, "array_split").tolist() == expected
    differs = removed_counts(n, "array_split") != removed_counts(n)
    assert differs.any() == (n % 10 != 0)  # the rules agree only when 10 divides n
    with pytest.raises(ReclensError, match="unknown edit rule"):
        removed_counts(n, "floor")


def test_the_edit_rule_reaches_the_curves():
    model = hand_model()
    scores = np.array([4.0, 3.0, 2.0, 1.0])
    base = fidelity_curves(model, history(), TARGET, scores, HISTORY)
    split = fidelity_curves(model, history(), TARGET, scores, HISTORY, edit_rule="array_split")
    np.testing.assert_array_equal(split.counts, removed_counts(4, "array_split"))
    assert not np.array_equal(base.curves["del"], split.curves["del"])


def test_curves_match_hand_computed_values():
    model = hand_model()
    res = fidelity_curves(model, history(), TARGET, np.array([4.0, 3.0, 2.0, 1.0]))
    c = res.curves
    # target score = sum of kept contributions; removing the top c of (4, 3, 2, 1)
    assert c["del"][0].tolist() == pytest.approx([10, 10, 6, 6, 3, 3, 3, 1, 1, 0, 0])
    assert c["ins"][0].tolist() == pytest.approx([0, 0, 4, 4, 7, 7, 7, 9, 9, 10, 10])
    # ranks after deletion: 10 -> 1, 6 -> 5, 3 -> 10, 1 -> 20, 0 -> 20
    ranks = np.array([1, 1, 5, 5, 10, 10, 10, 20, 20, 20, 20])
    assert c["pos@5"][0].tolist() == [1, 1, 1, 1, 0, 0, 0, 0, 0, 0, 0]
    assert c["pos@10"][0].tolist() == [1, 1, 1, 1, 1, 1, 1, 0, 0, 0, 0]
    assert c["pos@20"][0].tolist() == [1] * 11
    assert c["cdcg"][0] == pytest.approx(1 / np.log2(ranks + 1))
    # removing the least important: 10, 9, 7, 4, 0 -> ranks 1, 1, 5, 10, 20
    assert c["neg@5"][0].tolist() == [1] * 7 + [0] * 4
    assert c["neg@10"][0].tolist() == [1] * 9 + [0] * 2
    assert c["neg@20"][0].tolist() == [1] * 11
    m = {k: float(v[0]) for k, v in res.metrics().items()}
    assert m["del_auc"] == pytest.approx(43 / 11)
    assert m["ins_auc"] == pytest.approx(67 / 11)
    assert m["pos@5_auc"] == pytest.approx(4 / 11)
    assert m["pos@10_auc"] == pytest.approx(7 / 11)
    assert m["neg@5_auc"] == pytest.approx(7 / 11)
    assert m["neg@10_auc"] == pytest.approx(9 / 11)
    expected_cdcg = (2 + 2 / math.log2(6) + 3 / math.log2(11) + 4 / math.log2(21)) / 11
    assert m["cdcg_auc"] == pytest.approx(expected_cdcg)
    # fixed length, divided by p(x) = 10; k = 5 is capped at the 4 history items
    assert [m[f"del@{k}"] for k in range(1, 6)] == pytest.approx([0.6, 0.3, 0.1, 0.0, 0.0])
    assert [m[f"ins@{k}"] for k in range(1, 6)] == pytest.approx([0.4, 0.7, 0.9, 1.0, 1.0])
    assert res.target_probability == pytest.approx(10.0)
    assert set(m) == set(METRICS)


def test_reversed_map_and_ties():
    model = hand_model()
    maps = np.array([[1.0, 2.0, 3.0, 4.0], [0.0, 0.0, 0.0, 0.0]])
    res = fidelity_curves(model, history(), TARGET, maps)
    # reversed: removes 1, 2, 3, 4 in turn: 10, 9, 7, 4, 0
    assert res.curves["del"][0].tolist() == pytest.approx([10, 10, 9, 9, 7, 7, 7, 4, 4, 0, 0])
    # all tied: ascending item order, the same as the perfect map here
    assert res.curves["del"][1].tolist() == pytest.approx([10, 10, 6, 6, 3, 3, 3, 1, 1, 0, 0])


@pytest.mark.parametrize("link", ["sigmoid", "softmax"])
def test_curves_use_the_declared_link(link):
    model = hand_model(link)
    res = fidelity_curves(model, history(), TARGET, np.array([4.0, 3.0, 2.0, 1.0]))
    x = history()
    x[[0, 1]] = 0.0  # fraction 0.4 of 4 items removes round(1.6) = 2
    expected = model.probability(model(x[None]))[0, TARGET].item()
    assert res.curves["del"][0][4] == pytest.approx(expected, rel=1e-5)
    # ranks do not depend on the link
    assert res.curves["pos@5"][0].tolist() == [1, 1, 1, 1, 0, 0, 0, 0, 0, 0, 0]


def test_several_maps_match_single_and_deletion_aucs():
    model = hand_model("softmax")
    rng = np.random.default_rng(0)
    maps = rng.normal(size=(5, 4))
    together = fidelity_curves(model, history(), TARGET, maps).metrics()
    for i in range(5):
        alone = fidelity_curves(model, history(), TARGET, maps[i]).metrics()
        for name in METRICS:
            assert together[name][i] == pytest.approx(alone[name][0])
    x = history()[None]
    p_full = model.probability(model(x))[:, TARGET].detach()
    (dels,) = deletion_aucs(model, x, np.array([TARGET]), [HISTORY], [maps], p_full)
    assert dels == pytest.approx(together["del_auc"])


def test_explanation_metrics_and_bad_input():
    model = hand_model()
    exp = Explanation(
        explainer="hand",
        target=TARGET,
        items=HISTORY,
        scores=np.array([4.0, 3.0, 2.0, 1.0]),
        target_probability=10.0,
    )
    m = explanation_metrics(model, history(), exp)
    assert m["del_auc"] == pytest.approx(43 / 11)
    with pytest.raises(ReclensError):
        fidelity_curves(model, history(), TARGET, np.ones(3))
    with pytest.raises(ReclensError):
        fidelity_curves(model, history(), TARGET, np.array([1.0, np.nan, 0.0, 0.0]))
    with pytest.raises(ReclensError):
        fidelity_curves(model, torch.zeros(N_ITEMS), TARGET, np.ones(0))


def test_deletion_aucs_of_several_users_match_each_alone():
    model = hand_model("softmax")
    rng = np.random.default_rng(3)
    other = np.array([1, 5, 9, 12, 20])
    xs = torch.zeros(2, N_ITEMS)
    xs[0, HISTORY] = 1.0
    xs[1, other] = 1.0
    targets = np.array([TARGET, 2])
    items = [HISTORY, other]
    maps = [rng.normal(size=(3, 4)), rng.normal(size=(6, 5))]
    p_full = model.probability(model(xs)).detach()[torch.arange(2), torch.from_numpy(targets)]
    together = deletion_aucs(model, xs, targets, items, maps, p_full, chunk_size=4)
    for u in range(2):
        alone = fidelity_curves(model, xs[u], int(targets[u]), maps[u], items[u]).metrics()
        np.testing.assert_allclose(together[u], alone["del_auc"], rtol=1e-6)


@pytest.mark.parametrize("n", [1, 7, 8, 9, 64, 300])
def test_unique_masks_are_the_distinct_rows_in_sorted_order(n: int) -> None:
    """Distinct keep masks in the order of the packed rows' ``np.unique(axis=0)``, with every
    row mapped to its mask (drawn with many repeats, as deletion curves of similar maps are)."""
    rng = np.random.default_rng(n)
    pool = rng.random((5, n)) < 0.5
    keep = pool[rng.integers(0, 5, size=40)]
    unique, inverse = unique_masks(keep)
    reference = np.unique(np.packbits(keep, axis=1), axis=0)
    assert np.array_equal(np.packbits(unique, axis=1), reference)
    assert np.array_equal(unique[inverse], keep)
    assert inverse.dtype == np.int64 and unique.shape[0] == len({r.tobytes() for r in keep})
