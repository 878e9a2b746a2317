"""Labels the dashboard shows: metric ids in words, one stable colour per explainer."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp
import torch

from engine.beyond import METRIC_DOCS, user_metrics
from engine.catalogue import catalogue_metrics
from engine.evaluate import METRICS, ranking_metrics
from engine.groups import GROUP_DOCS
from engine.metric_labels import metric_label


def _computed_metric_names() -> list[str]:
    """Every metric name the engine computes on a small random problem (all variants on)."""
    rng = np.random.default_rng(0)
    n_users, n_items, k = 12, 30, 5
    train = sp.csr_matrix(rng.random((n_users, n_items)) < 0.3, dtype=np.float64)
    heldout = sp.csr_matrix(rng.random((n_users, n_items)) < 0.1, dtype=np.float64)
    recs = np.stack([rng.permutation(n_items)[:k] for _ in range(n_users)])
    users = np.arange(n_users)
    genres = (rng.random((n_items, 4)) < 0.4).astype(np.float64)
    emb = rng.normal(size=(n_items, 3))
    per_user = user_metrics(recs, users, train, heldout, genres, emb)
    catalogue = catalogue_metrics(recs, users, train, heldout, position_weighted=True)
    hits = torch.from_numpy(rng.random((n_users, 20)) < 0.2).float()
    accuracy = ranking_metrics(hits, torch.full((n_users,), 3.0), (10, 20))
    return [
        *(c for c in per_user.columns if c != "user"),
        *catalogue["metric"].to_list(),
        *GROUP_DOCS,
        *accuracy,
    ]


def test_every_metric_the_engine_computes_has_a_label_in_words() -> None:
    names = _computed_metric_names()
    assert {"ild_cooccurrence", "arp", "gini_pw_corrected", "max_gap", "ndcg@20"} <= set(names)
    for name in names:
        label = metric_label(name)
        assert label != name, name
        assert "_" not in label, (name, label)


def test_every_documented_metric_has_a_label_in_words() -> None:
    for name in METRIC_DOCS:
        label = metric_label(name)
        assert label != name, name
        assert "_" not in label, (name, label)


def test_variants_never_share_a_label() -> None:
    labels = [metric_label(n) for n in METRIC_DOCS]
    assert len(set(labels)) == len(labels)


@pytest.mark.parametrize("base", METRICS)
def test_accuracy_metrics_keep_their_cutoff(base: str) -> None:
    label = metric_label(f"{base}@20")
    assert label.endswith("@20") and label != f"{base}@20"


def test_unknown_ids_come_back_unchanged() -> None:
    assert metric_label("seconds_train") == "seconds_train"
    assert metric_label("ndcg@x") == "ndcg@x"
