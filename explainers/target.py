"""One fidelity pass for one target: explain it with several explainers, measure every map.

:func:`explain_target` is the one orchestration of "these explainers for this target, one
batched fidelity pass": :func:`explainers.batch.evaluate_fidelity` runs it per user for
``reclens fidelity``, and the dashboard runs it for the selected user and item.

A target's *rank* (:func:`target_ranks`, :func:`path_ranks`) is comparable across models whose
outputs are not (a softmax probability, a sigmoid probability, an unbounded score): rank 1 is
the top, counted as in :mod:`explainers.fidelity` among the items outside an excluded set.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor, nn

from data.errors import ReclensError
from explainers.base import Explainer, Explanation, as_rows
from explainers.fidelity import (
    LOWER_IS_BETTER,
    METRICS,
    FidelityCurves,
    fidelity_curves,
    score_rows,
)
from explainers.spinrec import SpinRecExplanation

BEST_OF_KAPPA = "spinrec_best_of_kappa"
"""The report row of SPINRec's best candidate map per metric (an optimistic bound)."""


@dataclass
class TargetFidelity:
    """Several explainers' maps of one (history, target) and their fidelity, from one pass.

    ``explanations``: explainer name -> its explanation; ``ms``: name -> milliseconds taken
    (0 for an explanation given in advance); ``curves``: the fidelity curves of every map that
    was measured, rows in ``rows`` order; ``rows``: report row name -> ``(first, stop)`` rows
    of ``curves`` (``stop`` None: the single row ``first``; else the best of the block, which is
    SPINRec's best-of-kappa bound); ``owners``: the explainer of each row not named after one;
    ``link``: the model's declared output link (``softmax``, ``sigmoid``, ``identity``; "" when
    it declares none): what the probability curves hold.
    """

    target: int
    explanations: dict[str, Explanation]
    ms: dict[str, float]
    curves: FidelityCurves
    rows: dict[str, tuple[int, int | None]]
    owners: dict[str, str]
    link: str = ""

    def owner(self, name: str) -> str:
        """The explainer whose explanation a report row comes from (itself, or the SPINRec
        whose candidate maps give the best-of-kappa bound)."""
        return self.owners.get(name, name)

    def metrics(self, name: str) -> dict[str, float]:
        """Every metric of :data:`explainers.fidelity.METRICS` for report row ``name``."""
        values = self.curves.metrics()
        first, stop = self.rows[name]
        if stop is None:
            return {m: float(values[m][first]) for m in METRICS}
        return {
            m: float(
                values[m][first:stop].min() if m in LOWER_IS_BETTER else values[m][first:stop].max()
            )
            for m in METRICS
        }

    def curve(self, name: str, kind: str) -> np.ndarray:
        """The ``kind`` curve (``del``, ``ins``, ...) of a single-row report ``name``."""
        first, stop = self.rows[name]
        if stop is not None:
            raise ReclensError(f"{name} is a best-of bound, not one curve")
        return self.curves.curves[kind][first]

    def rank_curve(self, name: str, kind: str) -> np.ndarray:
        """The target's rank along the ``kind`` curve (``del`` or ``ins``) of a single-row
        report ``name``: float64 [11]."""
        first, stop = self.rows[name]
        if stop is not None:
            raise ReclensError(f"{name} is a best-of bound, not one curve")
        return self.curves.ranks[kind][first]


def explain_target(
    model: nn.Module,
    x: Tensor,
    target: int,
    explainers: Mapping[str, Explainer],
    *,
    user: int | None = None,
    seed: int = 0,
    given: Mapping[str, Explanation] | None = None,
    best_of_kappa: bool = True,
    chunk_size: int = 512,
    edit_rule: str = "round",
    exclude: np.ndarray | None = None,
) -> TargetFidelity:
    """Explain ``target`` for history ``x`` with each explainer, then measure every map at once.

    ``explainers``: name -> built explainer; ``given``: explanations already made (e.g. a
    cached SPINRec one), used instead of explaining again. All maps go through
    :func:`explainers.fidelity.fidelity_curves` in one batched call; with ``best_of_kappa``
    SPINRec's kappa candidate maps are measured too (the ``spinrec_best_of_kappa`` row);
    ``exclude`` (bool [n_items]): items the rank curves leave out besides the history (the
    dashboard passes the user's validation items, so the ranks agree with its top-K).
    """
    given = dict(given or {})
    explanations: dict[str, Explanation] = {}
    ms: dict[str, float] = {}
    maps: list[np.ndarray] = []
    rows: dict[str, tuple[int, int | None]] = {}
    owners: dict[str, str] = {}
    names = list(dict.fromkeys([*given, *explainers]))
    for name in names:
        start = time.perf_counter()
        exp = (
            given[name]
            if name in given
            else explainers[name].explain(model, x, target, user=user, seed=seed)
        )
        ms[name] = 0.0 if name in given else 1000.0 * (time.perf_counter() - start)
        explanations[name] = exp
        if isinstance(exp, SpinRecExplanation) and best_of_kappa and exp.select == "del":
            first = len(maps)
            maps.extend(exp.candidates)
            rows[name] = (first + exp.chosen, None)
            rows[BEST_OF_KAPPA] = (first, first + exp.kappa)
            owners[BEST_OF_KAPPA] = name
        else:
            rows[name] = (len(maps), None)
            maps.append(np.asarray(exp.scores, dtype=np.float64))
    items = next(iter(explanations.values())).items
    curves = fidelity_curves(
        model,
        x,
        target,
        np.stack(maps),
        items,
        chunk_size=chunk_size,
        edit_rule=edit_rule,
        exclude=exclude,
    )
    link = str(getattr(model, "link", ""))
    return TargetFidelity(target, explanations, ms, curves, rows, owners, link)


def target_ranks(
    model: nn.Module,
    rows: Tensor | np.ndarray,
    target: int,
    exclude: np.ndarray,
    chunk_size: int = 512,
) -> np.ndarray:
    """The rank of ``target`` (1 = top) for each history of ``rows`` [R, n_items] (or one
    [n_items]) among the items not in ``exclude`` (bool [n_items]): int64 [R].

    ``rank = 1 + #{j not excluded, j != target : score_j > score_target}``, one no-grad forward
    pass (chunked, through the model's first layer when it declares one).
    """
    x = as_rows(rows, model)
    mask = torch.as_tensor(np.asarray(exclude, dtype=bool), device=x.device)
    if mask.shape != (x.shape[1],):
        raise ReclensError(f"exclude must be [{x.shape[1]}] booleans, got {tuple(mask.shape)}")
    targets = torch.full((x.shape[0],), int(target), dtype=torch.long, device=x.device)
    _, ranks = score_rows(model, x, targets, mask.expand(x.shape[0], -1), chunk_size)
    return ranks.cpu().numpy().astype(np.int64)


def path_ranks(
    model: nn.Module,
    x: Tensor | np.ndarray,
    baselines: np.ndarray,
    alphas: np.ndarray,
    target: int,
    exclude: np.ndarray | None = None,
    chunk_size: int = 512,
) -> np.ndarray:
    """The target's rank along straight paths ``b + alpha (x - b)`` (SPINRec's paths), among
    the items outside ``exclude`` (bool [n_items]; default: the history ``x`` [n_items]):
    int64 [kappa, n_alpha] for ``baselines`` [kappa, n_items] and ``alphas`` [n_alpha]."""
    end = as_rows(x, model)[0]
    base = as_rows(baselines, model)
    a = torch.as_tensor(np.asarray(alphas, dtype=np.float32), device=end.device)
    points = base[:, None, :] + a[None, :, None] * (end - base)[:, None, :]
    if exclude is None:
        exclude = (end > 0).cpu().numpy()
    ranks = target_ranks(model, points.reshape(-1, end.shape[0]), target, exclude, chunk_size)
    return ranks.reshape(base.shape[0], a.shape[0])
