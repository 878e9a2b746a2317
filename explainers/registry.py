"""Explainers by name: ``create(name, train=..., **params)``.

Names: ``spinrec``, ``ig_zero``, ``grad_x_input``, ``cosine``, ``jaccard``, ``lime``,
``kernel_shap``, ``leave_one_out``, ``random``, and two SPINRec variants that are not in
``all``: ``spinrec_ins`` (path selected on the insertion AUC) and ``spinrec_single`` (no path
selection). ``train`` (the training matrix, CSR [n_users, n_items]) is needed by the SPINRecs
(baselines), ``cosine`` and ``jaccard`` (co-occurrence columns); the others ignore it.
"""

from __future__ import annotations

from typing import Any

import scipy.sparse as sp

from data.errors import ReclensError
from explainers.base import Explainer
from explainers.baselines import (
    Cosine,
    GradientXInput,
    IntegratedGradientsZero,
    Jaccard,
    KernelShap,
    LeaveOneOut,
    Lime,
    RandomExplainer,
)
from explainers.spinrec import SpinRec, SpinRecIns, SpinRecSingle

_CLASSES: dict[str, type[Explainer]] = {
    "spinrec": SpinRec,
    "ig_zero": IntegratedGradientsZero,
    "grad_x_input": GradientXInput,
    "cosine": Cosine,
    "jaccard": Jaccard,
    "lime": Lime,
    "kernel_shap": KernelShap,
    "leave_one_out": LeaveOneOut,
    "random": RandomExplainer,
    "spinrec_ins": SpinRecIns,
    "spinrec_single": SpinRecSingle,
}
VARIANTS = ("spinrec_ins", "spinrec_single")
"""Explainers only run when named (``all`` means the others)."""
_NEEDS_TRAIN = frozenset({"spinrec", "spinrec_ins", "spinrec_single", "cosine", "jaccard"})


def explainer_names() -> tuple[str, ...]:
    """Every explainer name, SPINRec first."""
    return tuple(_CLASSES)


def create(name: str, train: sp.csr_matrix | None = None, **params: Any) -> Explainer:
    """The explainer called ``name``, built with ``params`` (and ``train`` where it needs it)."""
    cls = _CLASSES.get(name)
    if cls is None:
        raise ReclensError(f"unknown explainer {name!r}: use one of {', '.join(explainer_names())}")
    try:
        if name in _NEEDS_TRAIN:
            return cls(train, **params)  # type: ignore[call-arg]
        return cls(**params)
    except TypeError as err:
        raise ReclensError(f"bad parameters for explainer {name}: {err}") from err


def parse_names(spec: str | list[str] | tuple[str, ...]) -> list[str]:
    """Explainer names from ``all`` or a comma-separated list (checked, duplicates dropped)."""
    parts = spec.split(",") if isinstance(spec, str) else list(spec)
    names: list[str] = []
    for part in (p.strip() for p in parts):
        if not part:
            continue
        everyday = [n for n in explainer_names() if n not in VARIANTS]
        expanded = everyday if part == "all" else [part]
        for name in expanded:
            if name not in _CLASSES:
                raise ReclensError(
                    f"unknown explainer {name!r}: use all or some of {', '.join(explainer_names())}"
                )
            if name not in names:
                names.append(name)
    if not names:
        raise ReclensError("no explainer named: use all or a comma-separated list")
    return names
