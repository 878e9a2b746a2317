"""Per-user beyond-accuracy metrics (engine.beyond).

The golden fixture is Microsoft Recommenders' ``diversity_data`` (tests of
``recommenders/evaluation/python_evaluation.py``), ids 1..5 shifted to indices 0..4; the other
tests compare the vectorised code with plain per-user loops on random data.
"""

from __future__ import annotations

import math
from itertools import combinations

import numpy as np
import polars as pl
import pytest
import scipy.sparse as sp

from data.errors import ReclensError
from engine import beyond
from engine.beyond import (
    METRIC_DOCS,
    USER_DOCS,
    calibration_kl,
    genre_matrix,
    item_novelty,
    recommendation_lists,
    user_means,
    user_metrics,
    user_values,
)
from engine.catalogue import CATALOGUE_DOCS, catalogue_values, head_mask, item_popularity

TOL = 1e-4


# -- fixtures ----------------------------------------------------------------------------------
def _csr(pairs: list[tuple[int, int]], shape: tuple[int, int]) -> sp.csr_matrix:
    rows, cols = zip(*pairs, strict=True)
    return sp.csr_matrix((np.ones(len(rows)), (rows, cols)), shape=shape)


@pytest.fixture
def golden() -> dict[str, object]:
    """MS Recommenders' diversity_data with 0-based users and items."""
    train_pairs = [(1, 1), (1, 2), (1, 4), (2, 3), (2, 4), (3, 3), (3, 4), (3, 5)]
    reco = [(1, 3, 1), (1, 5, 0), (2, 2, 1), (2, 5, 1), (3, 1, 1), (3, 2, 0)]
    train = _csr([(u - 1, i - 1) for u, i in train_pairs], (3, 5))
    heldout = _csr([(u - 1, i - 1) for u, i, rel in reco if rel], (3, 5))
    recs = np.array([[i - 1 for u, i, _ in reco if u == user] for user in (1, 2, 3)])
    features = np.array(
        [
            [0, 1, 1, 0, 0],
            [0, 1, 0, 1, 0],
            [0, 0, 1, 1, 0],
            [0, 0, 1, 0, 1],
            [0, 0, 0, 1, 1],
        ],
        dtype=float,
    )
    return {
        "recs": recs,
        "users": np.arange(3),
        "train": train,
        "heldout": heldout,
        "features": features,
    }


def _random_case(seed: int, n_users: int = 40, n_items: int = 30, k: int = 5):
    rng = np.random.default_rng(seed)
    train = sp.csr_matrix((rng.random((n_users, n_items)) < 0.2).astype(np.float64))
    heldout_dense = (rng.random((n_users, n_items)) < 0.15) & (train.toarray() == 0)
    heldout = sp.csr_matrix(heldout_dense.astype(np.float64))
    users = np.flatnonzero(np.diff(train.indptr) > 0)
    recs = np.stack([rng.choice(n_items, size=k, replace=False) for _ in users])
    genres = (rng.random((n_items, 6)) < 0.3).astype(np.float64)
    genres[0] = 0.0  # an item without genres
    emb = rng.normal(size=(n_items, 8))
    return recs, users, train, heldout, genres, emb


def _cos(a: np.ndarray, b: np.ndarray) -> float:
    na, nb = np.linalg.norm(a), np.linalg.norm(b)
    return float(a @ b / (na * nb)) if na > 0 and nb > 0 else 0.0


# -- golden facts from Microsoft Recommenders -----------------------------------------------------
def test_golden_item_novelty_and_novelty(golden: dict) -> None:
    nov = item_novelty(golden["train"])
    np.testing.assert_allclose(nov, [3.0, 3.0, 2.0, 1.41504, 3.0], atol=TOL)
    values = user_values(golden["recs"], golden["users"], golden["train"], golden["heldout"])
    assert values["novelty"].mean() == pytest.approx(2.83333, abs=TOL)


def test_golden_coverage(golden: dict) -> None:
    cat = catalogue_values(golden["recs"], golden["users"], golden["train"], golden["heldout"])
    assert cat["coverage"] == pytest.approx(0.8, abs=TOL)
    assert cat["distributional_coverage"] == pytest.approx(1.9183, abs=TOL)


def test_golden_cooccurrence_diversity_and_serendipity(golden: dict) -> None:
    per_user = user_metrics(golden["recs"], golden["users"], golden["train"], golden["heldout"])
    np.testing.assert_allclose(per_user["ild_cooccurrence"], [0.29289, 1.0, 0.0], atol=TOL)
    means = user_means(per_user)
    assert means["ild_cooccurrence"] == pytest.approx(0.43096, abs=TOL)
    assert means["serendipity"] == pytest.approx(0.43408, abs=TOL)
    # per user (worked by hand from co-count / sqrt(count_i count_j)): 1 - 0.8165/3, ...
    np.testing.assert_allclose(per_user["serendipity"], [0.36392, 0.53455, 0.40378], atol=TOL)


@pytest.mark.parametrize("as_genres", [True, False])
def test_golden_feature_vector_diversity_and_serendipity(golden: dict, as_genres: bool) -> None:
    # the same feature vectors through the sparse (genre) and the dense (embedding) paths
    kwargs = (
        {"genres": sp.csr_matrix(golden["features"])}
        if as_genres
        else {"item_embeddings": golden["features"]}
    )
    tag = "genre" if as_genres else "embedding"
    per_user = user_metrics(
        golden["recs"], golden["users"], golden["train"], golden["heldout"], **kwargs
    )
    np.testing.assert_allclose(per_user[f"ild_{tag}"], [0.5, 0.5, 0.5], atol=TOL)
    np.testing.assert_allclose(per_user[f"serendipity_{tag}"], [0.25, 0.625, 0.3333], atol=TOL)


# -- vectorised code against per-user loops ----------------------------------------------------
@pytest.mark.parametrize("seed", [0, 1])
@pytest.mark.parametrize("listed", [None, True, False])
@pytest.mark.parametrize("cells", [1 << 22, 7])
def test_against_naive_loops(
    seed: int, listed: bool | None, cells: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    # listed: every space through the listed items' cosines (True), through summed user
    # vectors (False), or each as chosen (None: co-occurrence, d = users > items, is listed);
    # a tiny batch size makes every block and every gather piece a few cells
    if listed is not None:
        monkeypatch.setattr(beyond, "_by_listed_items", lambda unit: listed)
    monkeypatch.setattr(beyond, "BATCH_CELLS", cells)
    recs, users, train, heldout, genres, emb = _random_case(seed)
    values = user_values(recs, users, train, heldout, genres, emb)
    dense = train.toarray()
    held = heldout.toarray()
    pop = dense.sum(axis=0)
    spaces = {"cooccurrence": dense.T, "genre": genres, "embedding": emb}
    head = head_mask(pop.astype(np.int64))
    for row, (u, lst) in enumerate(zip(users, recs, strict=True)):
        history = np.flatnonzero(dense[u])
        for name, vec in spaces.items():
            pairs = [_cos(vec[a], vec[b]) for a, b in combinations(lst, 2)]
            assert values[f"ild_{name}"][row] == pytest.approx(1 - np.mean(pairs))
            sims = np.array([np.mean([_cos(vec[i], vec[h]) for h in history]) for i in lst])
            tag = "" if name == "cooccurrence" else f"_{name}"
            assert values[f"unexpectedness{tag}"][row] == pytest.approx(1 - sims.mean())
            rel = held[u, lst] > 0
            assert values[f"serendipity{tag}"][row] == pytest.approx(np.mean((1 - sims) * rel))
        total = pop.sum()
        nov = [-math.log2(max(pop[i], 1) / total) for i in lst]
        assert values["novelty"][row] == pytest.approx(np.mean(nov))
        n_active = (dense.sum(axis=1) > 0).sum()
        nov_u = [-math.log2(max(pop[i], 1) / n_active) for i in lst]
        assert values["novelty_users"][row] == pytest.approx(np.mean(nov_u))
        assert values["arp"][row] == pytest.approx(pop[lst].mean())
        assert values["long_tail_share"][row] == pytest.approx(np.mean(~head[lst]))


def _naive_kl(genres: np.ndarray, history: list[int], lst: list[int], alpha: float) -> float:
    def dist(items: list[int]) -> np.ndarray:
        acc = np.zeros(genres.shape[1])
        for i in items:
            n = genres[i].sum()
            if n:
                acc += genres[i] / n
        return acc / acc.sum() if acc.sum() else acc

    p, q = dist(history), dist(lst)
    mix = (1 - alpha) * q + alpha * p
    return float(sum(pg * math.log(pg / mg) for pg, mg in zip(p, mix, strict=True) if pg > 0))


def test_calibration_matches_steck_formula() -> None:
    recs, users, train, heldout, genres, _ = _random_case(3)
    values = user_values(recs, users, train, heldout, genres)
    dense = train.toarray()
    for row, (u, lst) in enumerate(zip(users, recs, strict=True)):
        history = list(np.flatnonzero(dense[u]))
        expected = _naive_kl(genres, history, list(lst), 0.01)
        if not any(genres[h].sum() for h in history):
            assert math.isnan(values["calibration_kl"][row])
        else:
            assert values["calibration_kl"][row] == pytest.approx(expected)


def test_calibration_zero_for_a_list_matching_the_history() -> None:
    # two genres; history = one item of each, list = two other items of each genre
    genres = sp.csr_matrix(np.array([[1, 0], [0, 1], [1, 0], [0, 1]], dtype=float))
    history = sp.csr_matrix(np.array([[1, 1, 0, 0]], dtype=float))
    kl = calibration_kl(genres, history, np.array([[2, 3]]), 0.01)
    assert kl[0] == pytest.approx(0.0, abs=1e-12)
    skewed = calibration_kl(genres, history, np.array([[2, 0]]), 0.01)
    # p = (.5, .5), q = (1, 0): the smoothed list distribution is 0.99 q + 0.01 p
    mix = np.array([0.99 * 1 + 0.01 * 0.5, 0.01 * 0.5])
    assert skewed[0] == pytest.approx(float((0.5 * np.log(0.5 / mix)).sum()))


def test_ild_undefined_for_single_item_lists() -> None:
    recs, users, train, heldout, _, _ = _random_case(4, k=1)
    frame = user_metrics(recs, users, train, heldout)
    assert frame["ild_cooccurrence"].null_count() == frame.height
    assert frame["novelty"].null_count() == 0


# -- tables, docs, inputs ----------------------------------------------------------------------
def test_user_table_is_wide_with_documented_metrics() -> None:
    recs, users, train, heldout, genres, emb = _random_case(5)
    frame = user_metrics(recs, users, train, heldout, genres, emb)
    assert frame.columns[0] == "user"
    assert frame.height == len(users)
    assert frame["user"].to_list() == users.tolist()
    metrics = frame.columns[1:]
    assert set(metrics) == set(USER_DOCS)
    assert all(frame[m].dtype == pl.Float64 for m in metrics)
    for name in (*USER_DOCS, *CATALOGUE_DOCS):
        assert METRIC_DOCS[name] and "\n" not in METRIC_DOCS[name]


def test_genre_matrix_from_items_table() -> None:
    items = pl.DataFrame(
        {
            "item": pl.Series([0, 1, 2], dtype=pl.UInt32),
            "genres": [["Drama", "Comedy"], [], ["Drama"]],
        }
    )
    mat, names = genre_matrix(items)
    assert names == ["Comedy", "Drama"]
    np.testing.assert_array_equal(mat.toarray(), [[1, 1], [0, 0], [0, 1]])


def test_recommendation_lists_takes_first_k_by_rank() -> None:
    frame = pl.DataFrame(
        {
            "user": [5, 5, 5, 2, 2, 2],
            "rank": [3, 1, 2, 1, 2, 3],
            "item": [30, 10, 20, 11, 21, 31],
        }
    )
    recs, users = recommendation_lists(frame, 2)
    assert users.tolist() == [2, 5]
    assert recs.tolist() == [[11, 21], [10, 20]]
    with pytest.raises(ReclensError, match="fewer than k=4"):
        recommendation_lists(frame, 4)


@pytest.mark.parametrize(
    ("recs", "users", "message"),
    [
        (np.array([[0, 0]]), np.array([0]), "repeats an item"),
        (np.array([[0, 9]]), np.array([0]), "out of range"),
        (np.array([0, 1]), np.array([0]), r"\[users, k\]"),
        (np.array([[0, 1]]), np.array([0, 1]), "one entry per list"),
        (np.array([[0, 1]]), np.array([7]), "user index out of range"),
    ],
)
def test_bad_input_is_one_line_error(recs: np.ndarray, users: np.ndarray, message: str) -> None:
    train = sp.csr_matrix(np.eye(3, 5))
    with pytest.raises(ReclensError, match=message) as info:
        user_metrics(recs, users, train, train)
    assert "\n" not in str(info.value)


def test_popularity_counts_training_interactions() -> None:
    train = sp.csr_matrix(np.array([[1, 0, 1], [1, 0, 0]], dtype=float))
    np.testing.assert_array_equal(item_popularity(train), [2, 0, 1])
