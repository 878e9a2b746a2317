"""engine.evaluate against ir-measures (trec_eval) as an oracle, and by hand.

Scores are strictly decreasing along every ranking, so ties never decide a metric. For MAP,
RecBole divides by min(|held-out|, K) while trec_eval's AP@K divides by |held-out|: the two
agree when |held-out| <= K (checked against the oracle), and differ by the factor
|held-out| / K otherwise (checked by hand and through that exact relation).
"""

from __future__ import annotations

import math

import ir_measures
import numpy as np
import pytest
import scipy.sparse as sp
import torch
from ir_measures import AP, RR, P, R, Success, nDCG
from torch import Tensor

from data.splits import Split
from engine.contract import Recommender
from engine.evaluate import evaluate, ranking_metrics, top_k

KS = (1, 3, 5, 10, 20)
ORACLE = {"recall": R, "ndcg": nDCG, "mrr": RR, "precision": P, "hit": Success, "map": AP}


def oracle_metrics(
    rankings: dict[str, list[str]], relevant: dict[str, set[str]], ks: tuple[int, ...]
) -> dict[tuple[str, str], float]:
    """ir-measures values keyed by (``metric@K``, user) for full rankings (best first)."""
    qrels = [ir_measures.Qrel(u, d, 1) for u, docs in relevant.items() for d in sorted(docs)]
    run = [
        ir_measures.ScoredDoc(u, d, float(len(docs) - r))  # strictly decreasing scores
        for u, docs in rankings.items()
        for r, d in enumerate(docs)
    ]
    measures = [ORACLE[m] @ k for m in ORACLE for k in ks]
    names = {ORACLE[m] @ k: f"{m}@{k}" for m in ORACLE for k in ks}
    return {
        (names[v.measure], v.query_id): float(v.value)
        for v in ir_measures.iter_calc(measures, qrels, run)
    }


def random_cases(
    n_users: int, n_items: int, seed: int
) -> tuple[dict[str, list[str]], dict[str, set[str]]]:
    """Random full rankings and held-out sets of 1..30 items (some larger than K)."""
    rng = np.random.default_rng(seed)
    rankings, relevant = {}, {}
    for u in range(n_users):
        order = rng.permutation(n_items)
        size = int(rng.integers(1, 31))
        held = rng.choice(n_items, size=size, replace=False)
        rankings[f"u{u}"] = [f"d{i}" for i in order]
        relevant[f"u{u}"] = {f"d{i}" for i in held}
    return rankings, relevant


def hits_of(
    rankings: dict[str, list[str]], relevant: dict[str, set[str]], depth: int
) -> tuple[Tensor, Tensor]:
    """The hit matrix [U, depth] and held-out counts [U] in the order of ``rankings``."""
    hits = [
        [1.0 if d in relevant[u] else 0.0 for d in docs[:depth]] for u, docs in rankings.items()
    ]
    counts = [float(len(relevant[u])) for u in rankings]
    return torch.tensor(hits, dtype=torch.float64), torch.tensor(counts, dtype=torch.float64)


def test_ranking_metrics_equal_the_oracle() -> None:
    rankings, relevant = random_cases(n_users=150, n_items=60, seed=7)
    hits, counts = hits_of(rankings, relevant, max(KS))
    ours = ranking_metrics(hits, counts, KS)
    oracle = oracle_metrics(rankings, relevant, KS)
    users = list(rankings)
    checked_map = 0
    for metric in ORACLE:
        for k in KS:
            key = f"{metric}@{k}"
            for i, u in enumerate(users):
                if metric == "map" and len(relevant[u]) > k:
                    continue  # the normalisations differ; see the next test
                checked_map += metric == "map"
                assert ours[key][i].item() == pytest.approx(oracle[(key, u)], abs=1e-12), (key, u)
    assert checked_map > 100  # the comparison did cover many users


def test_map_normalisation_differs_from_trec_eval_by_held_out_over_k() -> None:
    rankings, relevant = random_cases(n_users=150, n_items=60, seed=11)
    hits, counts = hits_of(rankings, relevant, max(KS))
    ours = ranking_metrics(hits, counts, KS)
    oracle = oracle_metrics(rankings, relevant, KS)
    larger = 0
    for i, u in enumerate(rankings):
        for k in KS:
            n = len(relevant[u])
            expected = oracle[(f"map@{k}", u)] * n / min(n, k)
            assert ours[f"map@{k}"][i].item() == pytest.approx(expected, abs=1e-12)
            larger += n > k
    assert larger > 100


def test_metrics_by_hand() -> None:
    # ranking a b c d e; held out {b, d, z}: hits at ranks 2 and 4, three relevant items.
    hits = torch.tensor([[0.0, 1.0, 0.0, 1.0, 0.0]], dtype=torch.float64)
    counts = torch.tensor([3.0], dtype=torch.float64)
    out = {k: v.item() for k, v in ranking_metrics(hits, counts, (2, 5)).items()}
    g = [1.0 / math.log2(r + 1) for r in range(1, 6)]
    assert out["recall@5"] == pytest.approx(2 / 3)
    assert out["precision@5"] == pytest.approx(2 / 5)
    assert out["hit@5"] == 1.0
    assert out["mrr@5"] == pytest.approx(1 / 2)
    assert out["ndcg@5"] == pytest.approx((g[1] + g[3]) / (g[0] + g[1] + g[2]))
    assert out["map@5"] == pytest.approx((1 / 2 + 2 / 4) / 3)
    # At K=2 only rank 2 counts; RecBole divides by min(3, 2) = 2, trec_eval by 3.
    assert out["map@2"] == pytest.approx((1 / 2) / 2)
    assert out["ndcg@2"] == pytest.approx(g[1] / (g[0] + g[1]))
    assert out["recall@2"] == pytest.approx(1 / 3)
    assert out["mrr@2"] == pytest.approx(1 / 2)
    # No hit at all: every metric is 0.
    none = ranking_metrics(torch.zeros(1, 5, dtype=torch.float64), counts, (5,))
    assert all(v.item() == 0.0 for v in none.values())


class LinearScores(Recommender):
    """Known scores: x @ W + b with a fixed W [n_items, n_items] and b [n_items]."""

    name = "linear-test"
    link = "identity"
    trainable = False

    def __init__(self, n_items: int, seed: int = 0) -> None:
        super().__init__(n_items, seed=seed)
        gen = torch.Generator().manual_seed(seed)
        self.register_buffer("w", torch.randn(n_items, n_items, generator=gen, dtype=torch.float64))
        self.register_buffer("b", torch.randn(n_items, generator=gen, dtype=torch.float64))

    def forward(self, x: Tensor) -> Tensor:
        return x.to(torch.float64) @ self.w + self.b


def tiny_split(n_users: int, n_items: int, seed: int) -> Split:
    """Random disjoint train/valid/test parts; every user has at least one train item."""
    rng = np.random.default_rng(seed)
    parts = np.zeros((3, n_users, n_items), dtype=np.float32)
    for u in range(n_users):
        chosen = rng.choice(n_items, size=int(rng.integers(4, n_items // 2)), replace=False)
        roles = rng.integers(0, 3, size=chosen.shape[0])
        roles[0] = 0
        parts[roles, u, chosen] = 1.0
    parts[2, 0, :] = 0.0  # a user without test items is not evaluated
    mats = [sp.csr_matrix(p) for p in parts]
    return Split(*mats, protocol="random", seed=seed, ratios=(0.8, 0.1, 0.1),
                 fit_users=np.arange(n_users, dtype=np.int64))  # fmt: skip


@pytest.mark.parametrize("part", ["test", "valid"])
def test_evaluate_end_to_end_equals_the_oracle(part: str) -> None:
    n_users, n_items, ks = 40, 30, (1, 5, 10)
    split = tiny_split(n_users, n_items, seed=3)
    model = LinearScores(n_items, seed=5)
    result = evaluate(model, split, part, ks=ks)

    train = split.train.toarray()
    mask = train + (split.valid.toarray() if part == "test" else 0)
    target = split.target(part).toarray()
    scores = model(torch.from_numpy(train)).numpy()
    rankings, relevant = {}, {}
    for u in range(n_users):
        if target[u].sum() == 0:
            continue
        candidates = [i for i in np.argsort(-scores[u], kind="stable") if mask[u, i] == 0]
        assert len(set(scores[u, candidates])) == len(candidates)  # no ties
        rankings[f"u{u}"] = [f"d{i}" for i in candidates]
        relevant[f"u{u}"] = {f"d{i}" for i in np.flatnonzero(target[u])}
    oracle = oracle_metrics(rankings, relevant, ks)

    assert result.per_user["user"].to_list() == [int(u[1:]) for u in rankings]
    assert 0 not in result.per_user["user"].to_list() or part == "valid"
    for metric in ORACLE:
        for k in ks:
            key = f"{metric}@{k}"
            ours = result.per_user[key].to_list()
            for value, u in zip(ours, rankings, strict=True):
                if metric == "map" and len(relevant[u]) > k:
                    n = len(relevant[u])
                    assert value == pytest.approx(oracle[(key, u)] * n / k, abs=1e-9)
                else:
                    assert value == pytest.approx(oracle[(key, u)], abs=1e-9), (key, u)
            assert result.means[key] == pytest.approx(float(np.mean(ours)), abs=1e-12)


def test_top_k_masks_history_and_orders_scores() -> None:
    split = tiny_split(12, 20, seed=1)
    model = LinearScores(20, seed=2)
    users = np.arange(12)
    items, scores = top_k(model, split.train, users, 5, split.mask("test"))
    mask = split.mask("test").toarray()
    full = model(torch.from_numpy(split.train.toarray())).numpy()
    for u in users:
        assert mask[u, items[u]].sum() == 0
        assert np.all(np.diff(scores[u]) <= 0)
        expected = [i for i in np.argsort(-full[u]) if mask[u, i] == 0][:5]
        assert items[u].tolist() == expected
