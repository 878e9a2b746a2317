"""The explanation in one plain-language paragraph that follows the numbers.

:func:`explanation_sentence` turns an attribution table and the target's rank into plain text:
where the item stands (in the top-K and at which rank, or not in it and its rank among the
items the model can recommend), how concentrated the explanation is, and whether the history
pushes the item up or down. Plain text only: the views escape it when they show it
(:mod:`app.dashboard.views.common`).
"""

from __future__ import annotations

import pandas as pd

CONCENTRATED = 0.5
"""The top items carry at least this share of the push up: the explanation rests on a few."""
DIFFUSE = 0.25
"""The top items carry less than this share: the recommendation rests on many small signals."""


def explanation_sentence(
    attributions: pd.DataFrame,
    target: str,
    user: str,
    *,
    rank: int,
    k: int,
    candidates: int = 0,
    model: str = "",
    quantity: str = "",
    value: float | None = None,
    asked_in_history: str = "",
    n_top: int = 3,
) -> str:
    """What the explanation of ``target`` (a title) for ``user`` (e.g. "user 7") says.

    ``attributions``: one row per history item with ``title``, ``attribution`` and ``share``
    (of the positive mass), as :func:`app.dashboard.shaping.attribution_frame` makes it;
    ``rank``: the target's rank (1 = top) among the ``candidates`` items the top-``k`` ranks;
    ``quantity`` and ``value``: what the model outputs for the target ("softmax
    probability", "score", ...) and its value; ``asked_in_history``: the title of a requested
    item that is in the history (the target is then the top-1 explained instead).
    """
    by = f" by {model}" if model else ""
    output = f" ({quantity} {value:.3g})" if quantity and value is not None else ""
    parts = []
    if asked_in_history:
        parts.append(
            f"\u201c{asked_in_history}\u201d is already in {user}'s history (the model's "
            f"input), so it is not recommended and there is nothing to explain about it; "
            f"this explains the top-1, \u201c{target}\u201d, instead."
        )
    if rank <= k:
        parts.append(
            f"\u201c{target}\u201d is recommended to {user}{by} at rank {rank} of the "
            f"top-{k}{output}."
        )
    else:
        among = f"of the {candidates:,} items it can recommend" if candidates else "overall"
        parts.append(
            f"\u201c{target}\u201d is not in {user}'s top-{k}{by}: it ranks "
            f"{ordinal(rank)} {among}{output}."
        )
    parts.append(_attribution_part(attributions, recommended=rank <= k, n_top=n_top))
    return " ".join(parts)


def _attribution_part(frame: pd.DataFrame, *, recommended: bool, n_top: int) -> str:
    """How the history moves the target: concentrated, diffuse, or pushing it down."""
    scores = frame["attribution"].to_numpy(dtype=float)
    n = len(frame)
    up = float(scores[scores > 0].sum())
    down = float(-scores[scores < 0].sum())
    if up <= 0 and down <= 0:
        return f"None of the {n} history items moves it either way."
    neg = frame[frame["attribution"] < 0].sort_values("attribution", kind="stable")
    if up <= 0 or down > up:
        share = down / (up + down)
        why = (
            "it is recommended although its history, on balance, lowers its "
            "score (this attribution does not say what raises it)"
            if recommended
            else "the history holds it back"
        )
        return (
            f"On balance the history pushes it down: {len(neg)} of its {n} items "
            f"{'pulls' if len(neg) == 1 else 'pull'} it down, "
            f"{share:.0%} of the attribution (most of all \u201c{neg['title'].iloc[0]}\u201d); "
            f"{why}."
        )
    pos = frame[frame["attribution"] > 0].sort_values("attribution", ascending=False)
    top = pos.head(n_top)
    shares = [f"\u201c{t}\u201d {s:.0%}" for t, s in zip(top["title"], top["share"], strict=True)]
    listed = shares[0] if len(shares) == 1 else ", ".join(shares[:-1]) + " and " + shares[-1]
    covered = float(top["share"].sum())
    if len(top) == n:
        which, verb = (f"its {n} history items", "carry") if n > 1 else ("its one item", "carries")
    elif len(top) == 1:
        which, verb = f"one of its {n} history items", "carries"
    else:
        which, verb = f"its top {len(top)} of {n} history items", "carry"
    what = "the recommendation" if recommended else "its rank"
    if covered >= CONCENTRATED:
        text = f"It rests on a few items: {which} ({listed}) {verb} {covered:.0%} of the push up."
    elif covered < DIFFUSE:
        text = (
            f"{_capital(which)} ({listed}) {verb} only {covered:.0%} of the push up: {what} "
            "rests on many small signals."
        )
    else:
        text = (
            f"{_capital(which)} ({listed}) {verb} {covered:.0%} of the push up; the rest is "
            f"spread over {len(pos) - len(top)} more."
        )
    if len(neg):
        text += (
            f" \u201c{neg['title'].iloc[0]}\u201d pulls the other way most ("
            f"{'1 item pushes' if len(neg) == 1 else f'{len(neg)} items push'} it down, "
            f"{down / (up + down):.0%} of the attribution)."
        )
    return text


def _capital(text: str) -> str:
    return text[:1].upper() + text[1:]


def ordinal(n: int) -> str:
    """``1st``, ``2nd``, ``3rd``, ``4th``, ``11th``, ``21st``, ``1,234th``."""
    suffix = "th" if n % 100 in (11, 12, 13) else {1: "st", 2: "nd", 3: "rd"}.get(n % 10, "th")
    return f"{n:,}{suffix}"
