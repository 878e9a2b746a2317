"""The explanation sentence follows the numbers: hand-built attributions that are concentrated,
diffuse or negative, targets inside and outside the top-K, and an item asked for that is in the
history; and the choice of the explained item."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from app.dashboard.sentence import explanation_sentence, ordinal
from app.dashboard.shaping import attribution_frame, choose_target, quantity_label


def frame(scores: list[float]) -> pd.DataFrame:
    """History items "item 0", "item 1", ... with ``scores`` as their attributions."""
    titles = [f"item {i}" for i in range(len(scores))]
    return attribution_frame(titles, [str(i) for i in range(len(scores))], np.array(scores))


def say(scores: list[float], rank: int = 2, k: int = 10, **kw: object) -> str:
    return explanation_sentence(frame(scores), "Target", "user 7", rank=rank, k=k, **kw)  # type: ignore[arg-type]


def test_concentrated_explanation_names_its_few_items_and_their_share() -> None:
    text = say([6.0, 2.0, 1.0] + [0.01] * 100, model="ease", quantity="score", value=0.671)
    assert text.startswith("\u201cTarget\u201d is recommended to user 7 by ease at rank 2 of")
    assert "top-10 (score 0.671)" in text
    assert "It rests on a few items: its top 3 of 103 history items" in text
    assert "(\u201citem 0\u201d 60%, \u201citem 1\u201d 20% and \u201citem 2\u201d 10%)" in text
    assert "carry 90% of the push up" in text
    assert "many small signals" not in text and "pushes it down" not in text


def test_diffuse_explanation_says_it_rests_on_many_small_signals() -> None:
    scores = [1.0, 0.9, 0.8] + [0.25] * 144  # the top 3 carry 2.7 of 38.7
    text = say(scores)
    assert "Its top 3 of 147 history items" in text
    assert "carry only 7% of the push up: the recommendation rests on many small signals" in text
    assert "It rests on a few items" not in text


def test_middle_concentration_says_the_rest_is_spread() -> None:
    text = say([3.0, 2.0, 1.0] + [1.0] * 9)  # 6 of 15
    assert "carry 40% of the push up; the rest is spread over 9 more" in text


def test_history_pushing_down_is_said_even_for_a_recommended_item() -> None:
    text = say([0.2, -0.1, -0.5, -0.3], rank=1)
    assert "On balance the history pushes it down: 3 of its 4 items pull it down" in text
    assert "82% of the attribution" in text  # 0.9 of 1.1
    assert "most of all \u201citem 2\u201d" in text
    assert "recommended although its history, on balance, lowers its score" in text
    assert "1 of its 2 items pulls it down" in say([0.1, -0.5])
    assert "rests on" not in text


def test_some_negative_mass_is_named_without_flipping_the_verdict() -> None:
    text = say([0.6, 0.3, -0.1])
    assert "It rests on a few items" in text
    assert "\u201citem 2\u201d pulls the other way most (1 item pushes it down, 10%" in text


def test_outside_the_top_k_says_so_with_its_rank_and_never_recommended() -> None:
    scores = [0.1, -0.4, -0.3, -0.2]
    text = say(scores, rank=412, k=10, candidates=1535, quantity="softmax probability",
               value=0.0008, model="multvae")  # fmt: skip
    assert text.startswith(
        "\u201cTarget\u201d is not in user 7's top-10 by multvae: it ranks 412th of the 1,535 "
        "items it can recommend (softmax probability 0.0008)."
    )
    assert "is recommended" not in text
    assert "the history holds it back" in text
    edge = say([1.0, 1.0], rank=11, k=10)
    assert "is not in user 7's top-10: it ranks 11th overall" in edge
    assert "its rank rests" not in edge and "It rests on a few items: its 2 history" in edge
    assert "at rank 10 of the top-10" in say([1.0], rank=10, k=10)


def test_diffuse_outside_the_top_k_does_not_speak_of_a_recommendation() -> None:
    text = say([1.0, 0.9, 0.8] + [0.25] * 144, rank=30)
    assert "its rank rests on many small signals" in text
    assert "recommendation" not in text


def test_item_asked_for_in_the_history_says_so_before_the_top_1() -> None:
    text = say([0.5, 0.5], rank=1, asked_in_history="Seen Before")
    assert text.startswith("\u201cSeen Before\u201d is already in user 7's history")
    assert "this explains the top-1, \u201cTarget\u201d, instead." in text
    assert "\u201cTarget\u201d is recommended to user 7 at rank 1" in text
    assert "Seen Before" not in say([0.5, 0.5], rank=1)


def test_no_attribution_at_all_and_one_item() -> None:
    assert "None of the 3 history items moves it either way." in say([0.0, 0.0, 0.0])
    assert "its one item (\u201citem 0\u201d 100%) carries 100%" in say([2.0])
    assert "one of its 2 history items (\u201citem 0\u201d 100%) carries" in say([2.0, 0.0])


@pytest.mark.parametrize(
    ("n", "text"),
    [(1, "1st"), (2, "2nd"), (3, "3rd"), (4, "4th"), (11, "11th"), (12, "12th"), (13, "13th"),
     (21, "21st"), (102, "102nd"), (111, "111th"), (1234, "1,234th")],
)  # fmt: skip
def test_ordinal(n: int, text: str) -> None:
    assert ordinal(n) == text


def test_choose_target_never_explains_a_history_item_silently() -> None:
    top = ["10", "11", "12"]
    assert choose_target("", {"1", "2"}, top).item == "10"
    outside = choose_target("99", {"1", "2"}, top)  # outside the top-K: explained as asked
    assert (outside.item, outside.asked_in_history) == ("99", "")
    inside = choose_target("2", {"1", "2"}, top)
    assert (inside.item, inside.asked_in_history) == ("10", "2")
    assert choose_target("2", {"2"}, []).item == ""


def test_quantity_names_follow_the_link() -> None:
    assert quantity_label("softmax") == "softmax probability"
    assert quantity_label("sigmoid") == "sigmoid probability"
    assert quantity_label("identity") == "score"
    assert quantity_label("") == "model output"
