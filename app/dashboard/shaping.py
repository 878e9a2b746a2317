"""Engine results shaped for display: the tables and records the views draw.

Nothing here computes a number the engine or the explainers own; it joins their results with
ids, titles and genres (asking :mod:`explainers.target` for an explained item's ranks), and
names columns and model outputs for people.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
import scipy.sparse as sp
from torch import Tensor

from data.dataset import Dataset
from data.splits import Split
from data.summary import summarize
from engine.runs import Run
from engine.session import OpenRun
from explainers.spinrec import SpinRecExplanation
from explainers.target import TargetFidelity, path_ranks, target_ranks

QUANTITIES: dict[str, str] = {
    "softmax": "softmax probability",
    "sigmoid": "sigmoid probability",
    "identity": "score",
}
"""What a model's output for an item is, by its declared link (:mod:`engine.contract`)."""
RANK_LABEL = "rank of the target (1 = top)"
"""The axis label of a target's rank (:func:`explainers.target.target_ranks`)."""


def quantity_label(link: str) -> str:
    """The name of what a model with output ``link`` gives an item, for axes and sentences."""
    return QUANTITIES.get(link, "model output")


# -- a run ready for the views -----------------------------------------------------------------
@dataclass
class LoadedRun:
    """An opened run with the display tables of its items and users.

    ``items``: pandas frame [n_items] with ``item`` (index), ``id`` (raw id), ``label``
    (title), ``title``, ``genres`` (joined text), ``genre`` (first genre), ``year``,
    ``popularity`` (training interactions) and, for synthetic data, ``community`` (the community
    that favours the item's main genre most); ``users``: pandas frame [n_users] with ``user``,
    ``id``, ``label``, ``activity`` (training interactions) and the user attributes.
    """

    run_id: str
    opened: OpenRun
    items: pd.DataFrame
    users: pd.DataFrame

    @classmethod
    def build(cls, run_id: str, opened: OpenRun) -> LoadedRun:
        return cls(
            run_id,
            opened,
            item_table(opened.dataset, opened.popularity),
            user_table(opened.dataset, opened.activity),
        )

    @property
    def run(self) -> Run:
        return self.opened.run

    @property
    def dataset(self) -> Dataset:
        return self.opened.dataset

    @property
    def split(self) -> Split:
        return self.opened.split

    @property
    def mask(self) -> sp.csr_matrix:
        return self.opened.eval_mask

    @property
    def model_name(self) -> str:
        return self.opened.model_name

    def user_index(self, raw_id: str) -> int:
        return self.opened.user_index(raw_id)

    def item_index(self, raw_id: str) -> int:
        return self.opened.item_index(raw_id)

    def history(self, user: int) -> np.ndarray:
        return self.opened.history(user)

    def heldout(self, user: int) -> np.ndarray:
        return self.opened.heldout(user)


def item_table(dataset: Dataset, popularity: np.ndarray) -> pd.DataFrame:
    """Items for display: ids, titles, genres, year, training popularity and (synthetic) truth."""
    items = dataset.items
    genres = items["genres"].to_list()
    frame = pd.DataFrame(
        {
            "item": items["item"].to_numpy().astype(np.int64),
            "id": items["raw_id"].to_list(),
            "title": items["title"].to_list(),
            "genres": [", ".join(g or []) for g in genres],
            "genre": [(g[0] if g else "(none)") for g in genres],
            "year": items["year"].to_list(),
            "popularity": np.asarray(popularity, dtype=np.int64),
        }
    )
    frame["label"] = frame["title"]
    truth = dataset.truth
    if truth is not None and truth.item_genre.shape[0] == len(frame):
        affinity = np.asarray(truth.community_genre_affinity)
        frame["community"] = affinity[:, truth.item_genre].argmax(axis=0).astype(str)
    return frame


def user_table(dataset: Dataset, activity: np.ndarray) -> pd.DataFrame:
    """Users for display: ids, training activity, attributes (and synthetic community)."""
    users = dataset.users
    frame = users.drop("user").rename({"raw_id": "id"}).to_pandas()
    frame.insert(0, "user", users["user"].to_numpy().astype(np.int64))
    frame["label"] = "user " + frame["id"].astype(str)
    frame["activity"] = np.asarray(activity, dtype=np.int64)
    if "community" in frame.columns:
        frame["community"] = frame["community"].astype(str)
    return frame


def attribute_columns(users: pd.DataFrame) -> list[str]:
    """User attribute columns that can group users (few distinct values)."""
    skip = {"user", "id", "label", "activity", "x", "y"}
    return [c for c in users.columns if c not in skip and users[c].nunique(dropna=True) <= 40]


def with_xy(frame: pd.DataFrame, xy: np.ndarray) -> pd.DataFrame:
    """``frame`` with the columns ``x`` and ``y`` of ``xy`` [len(frame), 2]."""
    out = frame.reset_index(drop=True).copy()
    out["x"] = xy[:, 0]
    out["y"] = xy[:, 1]
    return out


def dataset_card(dataset: Dataset) -> dict[str, Any]:
    """Dataset summary numbers plus ``item_counts`` and ``user_counts`` (interactions each)."""
    card = summarize(dataset)
    inter = dataset.interactions
    for column, n in (("item", dataset.n_items), ("user", dataset.n_users)):
        values = inter[column].to_numpy().astype(np.int64)
        card[f"{column}_counts"] = np.bincount(values, minlength=n)
    return card


def recommendation_frame(
    loaded: LoadedRun, items: np.ndarray, scores: np.ndarray, heldout: np.ndarray
) -> pd.DataFrame:
    """A top-K list: ``rank``, ``item``, ``id``, ``title``, ``genres``, ``score``, ``heldout``."""
    frame = loaded.items.iloc[items][["item", "id", "title", "genres"]].copy()
    frame.insert(0, "rank", np.arange(1, len(frame) + 1))
    frame["score"] = np.asarray(scores, dtype=np.float64)
    held = set(np.asarray(heldout).tolist())
    frame["heldout"] = [int(i) in held for i in items]
    return frame.reset_index(drop=True)


# -- explanations ------------------------------------------------------------------------------
def attribution_frame(
    titles: Sequence[str], ids: Sequence[str], scores: np.ndarray
) -> pd.DataFrame:
    """History items with their attribution and share of the positive mass, strongest first.

    Columns: ``id``, ``title``, ``attribution``, ``share`` (score / sum of positive scores, 0 for
    non-positive ones), ``sign`` ("pushes up" / "pushes down").
    """
    scores = np.asarray(scores, dtype=np.float64)
    positive = scores.clip(min=0).sum()
    frame = pd.DataFrame(
        {
            "id": list(ids),
            "title": list(titles),
            "attribution": scores,
            "share": np.where(scores > 0, scores / positive, 0.0) if positive > 0 else 0.0,
            "sign": np.where(scores >= 0, "pushes up", "pushes down"),
        }
    )
    return frame.sort_values("attribution", ascending=False, kind="stable").reset_index(drop=True)


@dataclass(frozen=True)
class ExplanationView:
    """A SPINRec explanation as the Explain tab shows it.

    ``attributions``: frame from :func:`attribution_frame`; ``target``/``target_id``: the
    explained item's title and raw id; ``probability``: the model's output for it;
    ``baseline``: raw id of the chosen baseline user; ``alternatives``: frame of the candidate
    baseline users with their deletion AUC; ``alphas`` [n_alpha]; ``paths`` [kappa, n_alpha];
    ``chosen``: the chosen path; ``path_labels`` [kappa]; ``raw``: the explainer's result;
    ``link``: the model's output link (``probability`` and ``paths`` are in its units, see
    :attr:`quantity`); ``rank``: the target's rank (1 = top) among the ``candidates`` items
    the top-K ranks (outside the history and the validation items), so the target is in the
    top-K exactly when ``rank <= K`` (its rank along the paths: :func:`path_rank_curves`).
    """

    attributions: pd.DataFrame
    target: str
    target_id: str
    probability: float
    baseline: str
    alternatives: pd.DataFrame
    alphas: np.ndarray
    paths: np.ndarray
    chosen: int
    path_labels: list[str]
    seconds: float
    raw: SpinRecExplanation
    link: str
    rank: int
    candidates: int

    @property
    def quantity(self) -> str:
        """What ``probability`` and ``paths`` are: "softmax probability", "score", ..."""
        return quantity_label(self.link)


def explanation_view(loaded: LoadedRun, target: int, exp: SpinRecExplanation) -> ExplanationView:
    """Join a SPINRec explanation with titles and ids, and the target's ranks."""
    items = loaded.items
    user_ids = loaded.users["id"].to_numpy()
    baselines = np.asarray(exp.baseline_users, dtype=np.int64)
    opened = loaded.opened
    x, exclude = ranked_against(loaded, exp)
    rank = int(target_ranks(opened.model, x, target, exclude)[0])
    alternatives = pd.DataFrame(
        {
            "path": np.arange(1, baselines.shape[0] + 1),
            "baseline user": user_ids[baselines],
            "history (training part)": loaded.opened.activity[baselines],
            "deletion AUC": np.asarray(exp.criterion, dtype=np.float64),
            "chosen": np.arange(baselines.shape[0]) == int(exp.chosen),
        }
    ).sort_values(["deletion AUC", "path"], kind="stable")
    return ExplanationView(
        attributions=attribution_frame(
            items["title"].to_numpy()[exp.items].tolist(),
            items["id"].to_numpy()[exp.items].tolist(),
            np.asarray(exp.scores),
        ),
        target=str(items["title"].iloc[target]),
        target_id=str(items["id"].iloc[target]),
        probability=float(exp.target_probability),
        baseline=str(user_ids[baselines[int(exp.chosen)]]),
        alternatives=alternatives.reset_index(drop=True),
        alphas=np.asarray(exp.alphas, dtype=np.float64),
        paths=np.asarray(exp.path_probability, dtype=np.float64),
        chosen=int(exp.chosen),
        path_labels=[f"path {k + 1}: user {user_ids[b]}" for k, b in enumerate(baselines)],
        seconds=float(exp.seconds),
        raw=exp,
        link=str(opened.model.link),
        rank=rank,
        candidates=int((~exclude).sum()),
    )


def path_rank_curves(loaded: LoadedRun, exp: ExplanationView) -> np.ndarray:
    """The target's rank along each SPINRec path of ``exp`` [kappa, n_alpha], among the items
    its ``rank`` counts (so every path ends at ``rank``): one batched forward pass over the
    ``kappa * n_alpha`` path points, made only when the rank view is asked for."""
    raw = exp.raw
    x, exclude = ranked_against(loaded, raw)
    baselines = loaded.split.train[np.asarray(raw.baseline_users, dtype=np.int64)].toarray()
    return path_ranks(loaded.opened.model, x, baselines, raw.alphas, raw.target, exclude)


def ranked_against(loaded: LoadedRun, exp: SpinRecExplanation) -> tuple[Tensor, np.ndarray]:
    """The explained history as a vector [n_items] and the items a rank leaves out, bool
    [n_items]: the history and the user's validation items, as the top-K leaves them out."""
    x = loaded.opened.history_vector(exp.items)
    exclude = x.numpy() > 0
    if exp.user is not None:
        exclude[loaded.opened.validation(int(exp.user))] = True
    return x, exclude


def fidelity_frame(result: TargetFidelity) -> pd.DataFrame:
    """Deletion and insertion curves of every explainer of ``result`` as one long frame:
    ``explainer``, ``kind`` (deletion/insertion), ``fraction``, ``value`` (the model's output
    for the target), ``quantity`` (what that is, :func:`quantity_label`) and ``rank`` (the
    target's rank among the items the fidelity pass ranks: the service passes
    :func:`ranked_against`'s, outside the history and the validation items, as the top-K)."""
    n_hist = max(int(next(iter(result.explanations.values())).items.shape[0]), 1)
    fractions = result.curves.counts / n_hist
    rows = [
        pd.DataFrame(
            {
                "explainer": name,
                "kind": kind,
                "fraction": fractions,
                "value": result.curve(name, key),
                "quantity": quantity_label(result.link),
                "rank": result.rank_curve(name, key),
            }
        )
        for kind, key in (("deletion", "del"), ("insertion", "ins"))
        for name in result.explanations
    ]
    return pd.concat(rows, ignore_index=True)


@dataclass(frozen=True)
class TargetChoice:
    """The item the Explain tab explains: ``item`` (raw id, "" when there is none) and
    ``asked_in_history``: the requested raw id when it is in the history (so it is not
    recommended and the top-1 is explained instead), else ""."""

    item: str
    asked_in_history: str = ""


def choose_target(requested: str, history: set[str], top: Sequence[str]) -> TargetChoice:
    """The requested item when it is outside the ``history`` (raw ids), else the first of
    ``top`` (raw ids in rank order), saying that the requested one is in the history."""
    first = str(top[0]) if len(top) else ""
    if not requested:
        return TargetChoice(first)
    if requested in history:
        return TargetChoice(first, requested)
    return TargetChoice(requested)


def compare_lists(lists: Mapping[str, Sequence[str]]) -> pd.DataFrame:
    """Side by side top-K lists of several runs; ``in all`` marks items every list holds.

    ``lists``: run name -> titles in rank order. Returns a frame with ``rank`` and one column per
    run (titles, prefixed with a check mark when the title is in every list), plus ``overlap``:
    in how many lists (the first one included) the first run's item of that row appears, at any
    rank.
    """
    names = list(lists)
    k = max((len(v) for v in lists.values()), default=0)
    common = set.intersection(*(set(v) for v in lists.values())) if lists else set()
    data: dict[str, list] = {"rank": list(range(1, k + 1))}
    for name in names:
        col = list(lists[name]) + [""] * (k - len(lists[name]))
        data[name] = [f"\u2713 {t}" if t in common and t else t for t in col]
    if names:
        first = list(lists[names[0]]) + [""] * (k - len(lists[names[0]]))
        data["overlap"] = [sum(t in set(lists[n]) for n in names) if t else 0 for t in first]
    return pd.DataFrame(data)
