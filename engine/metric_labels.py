"""Human labels of metric ids: ``metric_label("ild_cooccurrence")`` -> "Intra-list diversity
(co-occurrence)".

One table for every metric the engine computes: the accuracy metrics of
:mod:`engine.evaluate` (``ndcg@10`` -> "NDCG@10", the cut-off kept), the per-user
beyond-accuracy metrics of :mod:`engine.beyond`, the catalogue metrics of
:mod:`engine.catalogue` and the group gaps of :mod:`engine.groups`. Each label names the metric
in words and its variant (the item representation, the popularity count, corrected or
position-weighted) so that two variants never share a label. Unknown ids come back unchanged.
"""

from __future__ import annotations

ACCURACY_LABELS: dict[str, str] = {
    "recall": "Recall",
    "ndcg": "NDCG",
    "mrr": "MRR",
    "hit": "Hit rate",
    "precision": "Precision",
    "map": "MAP",
}
"""Base names of :data:`engine.evaluate.METRICS`; the ``@K`` suffix is appended."""

USER_LABELS: dict[str, str] = {
    "ild_genre": "Intra-list diversity (genre)",
    "ild_embedding": "Intra-list diversity (model embedding)",
    "ild_cooccurrence": "Intra-list diversity (co-occurrence)",
    "novelty": "Novelty (share of interactions)",
    "novelty_users": "Novelty (share of users)",
    "unexpectedness": "Unexpectedness (co-occurrence)",
    "unexpectedness_genre": "Unexpectedness (genre)",
    "unexpectedness_embedding": "Unexpectedness (model embedding)",
    "serendipity": "Serendipity (co-occurrence)",
    "serendipity_genre": "Serendipity (genre)",
    "serendipity_embedding": "Serendipity (model embedding)",
    "arp": "Average recommendation popularity",
    "long_tail_share": "Long-tail share",
    "calibration_kl": "Genre calibration (KL divergence)",
}

CATALOGUE_LABELS: dict[str, str] = {
    "coverage": "Item coverage",
    "coverage_corrected": "Item coverage (corrected)",
    "distributional_coverage": "Distributional coverage (bits)",
    "gini": "Exposure Gini index",
    "gini_corrected": "Exposure Gini index (corrected)",
    "entropy": "Exposure entropy",
    "entropy_corrected": "Exposure entropy (corrected)",
    "jain": "Jain's exposure index",
    "jain_corrected": "Jain's exposure index (corrected)",
    "fsat": "FSat (maximin share)",
    "fsat_corrected": "FSat (maximin share, corrected)",
    "fsat_meaningful": "FSat is informative (km >= n)",
    "personalization": "Personalization",
    "rec_rate_head": "Recommendation rate (head items)",
    "rec_rate_tail": "Recommendation rate (tail items)",
    "hit_rate_head": "Hit rate (head items)",
    "hit_rate_tail": "Hit rate (tail items)",
    "pop_rsp": "Popularity statistical parity (RSP)",
    "pop_reo": "Popularity equal opportunity (REO)",
    "gini_pw": "Exposure Gini index (position-weighted)",
    "gini_pw_corrected": "Exposure Gini index (position-weighted, corrected)",
    "entropy_pw": "Exposure entropy (position-weighted)",
    "entropy_pw_corrected": "Exposure entropy (position-weighted, corrected)",
    "jain_pw": "Jain's exposure index (position-weighted)",
    "jain_pw_corrected": "Jain's exposure index (position-weighted, corrected)",
}

GROUP_LABELS: dict[str, str] = {
    "max_gap": "Largest gap between groups",
    "mad": "Mean absolute gap between groups (UserMAD)",
}

METRIC_LABELS: dict[str, str] = {**USER_LABELS, **CATALOGUE_LABELS, **GROUP_LABELS}
"""Every metric id without a cut-off -> its label (accuracy metrics: :func:`metric_label`)."""


def metric_label(name: str) -> str:
    """Words for metric id ``name``: "ndcg@10" -> "NDCG@10", "arp" -> "Average recommendation
    popularity"; an id the engine does not define is returned unchanged."""
    base, sep, cutoff = name.partition("@")
    if sep and base in ACCURACY_LABELS and cutoff.isdigit():
        return f"{ACCURACY_LABELS[base]}@{cutoff}"
    return METRIC_LABELS.get(name, name)
