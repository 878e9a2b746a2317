"""Fidelity rank curves that leave out more than the history (the dashboard leaves out the
user's validation items, as its top-K and the explanation sentence do), on the hand-set linear
model of :mod:`test_target_ranks`."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from test_target_ranks import HISTORY, N_ITEMS, TARGET, model, vector

from data.errors import ReclensError
from explainers.base import Explanation
from explainers.fidelity import fidelity_curves
from explainers.target import explain_target

SCORES = np.array([3.0, 2.5, 1.0])  # the true order: item 0, then 1, then 2


def test_excluded_items_leave_the_rank_curves_and_the_rank_metrics() -> None:
    x = torch.from_numpy(vector([0, 1, 2]))
    plain = fidelity_curves(model(), x, TARGET, SCORES, HISTORY)
    also = np.arange(N_ITEMS) == 4  # item 4 (score 5) beats the target once 1+ items are gone
    left_out = fidelity_curves(model(), x, TARGET, SCORES, HISTORY, exclude=also)
    counts = plain.counts
    # removing the top 0, 1, 2, 3 items: the target scores 6.5, 3.5, 1, 0 against 5, 4, 2.5, 0.5
    assert plain.ranks["del"][0].tolist() == [{0: 1, 1: 3, 2: 4, 3: 5}[int(c)] for c in counts]
    assert left_out.ranks["del"][0].tolist() == [{0: 1, 1: 2, 2: 3, 3: 4}[int(c)] for c in counts]
    assert (left_out.ranks["ins"] == plain.ranks["ins"] - (plain.ranks["ins"] > 1)).all()
    # the probability curves do not depend on what the ranks leave out; cdcg follows the ranks
    assert np.array_equal(left_out.curves["del"], plain.curves["del"])
    assert (left_out.curves["cdcg"] >= plain.curves["cdcg"]).all()
    assert (left_out.curves["cdcg"] > plain.curves["cdcg"]).any()
    nothing = fidelity_curves(model(), x, TARGET, SCORES, HISTORY, exclude=np.zeros(N_ITEMS, bool))
    assert np.array_equal(nothing.ranks["del"], plain.ranks["del"])
    with pytest.raises(ReclensError, match="exclude must be"):
        fidelity_curves(model(), x, TARGET, SCORES, HISTORY, exclude=also[:5])


def test_explain_target_passes_the_excluded_items_to_the_rank_curves() -> None:
    x = torch.from_numpy(vector([0, 1, 2]))
    hand = Explanation(
        explainer="hand", target=TARGET, items=HISTORY, scores=SCORES, target_probability=6.5
    )
    given = {"hand": hand}
    also = np.arange(N_ITEMS) == 4
    plain = explain_target(model(), x, TARGET, {}, given=given, best_of_kappa=False)
    left_out = explain_target(
        model(), x, TARGET, {}, given=given, best_of_kappa=False, exclude=also
    )
    wanted = fidelity_curves(model(), x, TARGET, SCORES, HISTORY, exclude=also).ranks["del"][0]
    assert left_out.rank_curve("hand", "del").tolist() == wanted.tolist()
    assert left_out.rank_curve("hand", "del").tolist() != plain.rank_curve("hand", "del").tolist()
