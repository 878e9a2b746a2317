"""Counterfactual fidelity of explanations: rescore edited histories and watch the target.

An explanation orders the user's history from most to least important (a stable sort of the
scores: ties keep ascending item order). For each fraction ``f`` in 0, 0.1, ..., 1.0 the
number of items edited is ``round(f * n)`` with halves rounded up (``floor(f * n + 0.5)``,
computed exactly in integers), ``n`` being the history size. The edited histories are:

- ``del``: the ``round(f n)`` most important items removed; the curve is the target
  probability (under the model's link) — lower is better;
- ``ins``: only the ``round(f n)`` most important items kept — higher is better;
- ``pos@K``: 1 if the target is still in the top ``K`` after the ``del`` edit — lower better;
- ``neg@K``: the same after removing the ``round(f n)`` *least* important items — higher better;
- ``cdcg``: ``1 / log2(rank + 1)`` of the target after the ``del`` edit — lower better.

Ranks count only items outside the *original* history (removed items never re-enter the
ranking) and outside an optional further excluded set (the dashboard leaves out the user's
validation items too, as its top-K does):
``rank = 1 + #{j not in history or excluded, j != target : score_j > score_target}``. Each curve
has 11 points; its AUC is their mean (``del_auc``, ``ins_auc``, ``pos@10_auc``, ...).
Fixed-length variants remove (``del@k``) or keep only (``ins@k``) exactly the top ``k`` items,
``k`` = 1..5 (at most ``n``), divided by the target's probability for the full history.

All edited histories of a user (for every map evaluated) go through the model in one batched
forward pass, chunked to bound memory. A model's declared shortcuts are used (see
:mod:`explainers.base`): the probability curves score only the target where the link is
pointwise; the rank curves need every score, but the first layer only the columns in use.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch
from torch import Tensor, nn

from data.errors import ReclensError
from explainers.base import (
    Explanation,
    active_first_layer,
    as_rows,
    eval_mode,
    first_layer_of,
    gather_probabilities,
    history_items,
    importance_order,
    model_device,
    row_moments,
)

N_FRACTIONS = 11
FRACTIONS: np.ndarray = np.arange(N_FRACTIONS) / (N_FRACTIONS - 1)
"""The 11 fractions 0, 0.1, ..., 1.0 of the history edited along each curve."""
KS: tuple[int, ...] = (5, 10, 20)
FIXED_LENGTHS: tuple[int, ...] = (1, 2, 3, 4, 5)

CURVES: tuple[str, ...] = (
    "del",
    "ins",
    *(f"pos@{k}" for k in KS),
    *(f"neg@{k}" for k in KS),
    "cdcg",
)
METRICS: tuple[str, ...] = (
    *(f"{c}_auc" for c in CURVES),
    *(f"del@{k}" for k in FIXED_LENGTHS),
    *(f"ins@{k}" for k in FIXED_LENGTHS),
)
"""Every metric name, in report order."""
LOWER_IS_BETTER: frozenset[str] = frozenset(
    m for m in METRICS if m.startswith(("del", "pos", "cdcg"))
)


EDIT_RULES: tuple[str, ...] = ("round", "array_split")
"""How a fraction f of n history items becomes a count: ``round`` (the default) is
round-half-up(f n); ``array_split`` is the SPINRec/LXR reference code's rule, removing the
first k of ``np.array_split(order, 10)`` bins at f = k/10 (the first n mod 10 bins hold one
item more), so RecLens's numbers can be put beside the paper's."""


def removed_counts(n: int, rule: str = "round") -> np.ndarray:
    """Items edited at each fraction f = 0, 0.1, ..., 1 for ``n`` items, int64 [11]."""
    i = np.arange(N_FRACTIONS, dtype=np.int64)
    n = int(n)
    if rule == "round":
        return (2 * i * n + (N_FRACTIONS - 1)) // (2 * (N_FRACTIONS - 1))
    if rule == "array_split":
        bins = N_FRACTIONS - 1
        return i * (n // bins) + np.minimum(i, n % bins)
    raise ReclensError(f"unknown edit rule {rule!r}: use {' or '.join(EDIT_RULES)}")


@dataclass(frozen=True)
class FidelityCurves:
    """Curves of ``M`` maps of one user's history.

    ``curves``: curve name (:data:`CURVES`) -> float64 [M, 11]; ``fixed``: ``del@k`` / ``ins@k``
    -> float64 [M]; ``counts``: int64 [11], items edited at each fraction;
    ``target_probability``: the target's probability for the full history; ``ranks``: ``del``
    and ``ins`` -> float64 [M, 11], the target's rank (1 = top, among items outside the
    original history and the excluded set) along those curves.
    """

    curves: dict[str, np.ndarray]
    fixed: dict[str, np.ndarray]
    counts: np.ndarray
    target_probability: float
    ranks: dict[str, np.ndarray] = field(default_factory=dict)

    def metrics(self) -> dict[str, np.ndarray]:
        """Every metric of :data:`METRICS` -> float64 [M] (AUCs are curve means)."""
        out = {f"{name}_auc": curve.mean(axis=1) for name, curve in self.curves.items()}
        out.update(self.fixed)
        return {m: out[m] for m in METRICS}


def unique_masks(keep: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Distinct rows of ``keep`` (bool [R, n]) and each row's index among them: [Q, n], [R]."""
    packed = np.ascontiguousarray(np.packbits(keep, axis=1))  # [R, ceil(n / 8)] uint8
    # each row as one opaque value: compared bytewise, the order of np.unique(axis=0) on the
    # packed rows, several times faster than its field-by-field comparison
    whole = packed.view(np.dtype((np.void, packed.shape[1]))).ravel()  # [R]
    _, first, inverse = np.unique(whole, return_index=True, return_inverse=True)
    return keep[first], inverse.reshape(-1).astype(np.int64)


def edited_rows(x: Tensor, items: np.ndarray, keep: Tensor) -> Tensor:
    """Histories [R, n_items]: ``x`` [n_items] with history ``items`` [n_hist] kept where
    ``keep`` (bool [R, n_hist]) is true and removed (set to 0) elsewhere."""
    rows = x.expand(keep.shape[0], -1).clone()
    idx = torch.from_numpy(items).to(x.device)
    rows[:, idx] = x[idx] * keep.to(x.dtype)
    return rows


@torch.no_grad()
def score_rows(
    model: nn.Module,
    rows: Tensor,
    targets: Tensor,
    original: Tensor,
    chunk_size: int = 512,
) -> tuple[Tensor, Tensor]:
    """Target probabilities [R] and ranks [R] for edited histories ``rows`` [R, n_items].

    ``targets``: long [R]; ``original``: bool [R, n_items], each row's original history, whose
    items are left out of the ranking. Rank 1 is the top.
    """
    probs, ranks = [], []
    with eval_mode(model):
        weight = first_layer_of(model)
        for start in range(0, rows.shape[0], chunk_size):
            end = start + chunk_size
            chunk = rows[start:end]
            if weight is None:
                s = model(chunk)
            else:  # ranks need every score, but the first layer only the used columns
                s = model.forward_from_first(active_first_layer(chunk, weight), row_moments(chunk))
            t = targets[start:end, None]
            probs.append(model.probability(s).gather(1, t).squeeze(1))
            s_t = s.gather(1, t)
            beaten = (s > s_t) & ~original[start:end]
            beaten.scatter_(1, t, False)
            ranks.append(1 + beaten.sum(dim=1))
    if not probs:
        return rows.new_zeros(0), torch.zeros(0, dtype=torch.long, device=rows.device)
    return torch.cat(probs), torch.cat(ranks)


def _check_maps(scores: np.ndarray, n_hist: int) -> np.ndarray:
    maps = np.asarray(scores, dtype=np.float64)
    if maps.ndim == 1:
        maps = maps[None, :]
    if maps.ndim != 2 or maps.shape[1] != n_hist:
        raise ReclensError(
            f"attribution maps must be [maps, {n_hist}] for a history of {n_hist} items, "
            f"got {tuple(maps.shape)}"
        )
    if not np.isfinite(maps).all():
        raise ReclensError("attribution maps contain NaN or infinite scores")
    return maps


def _excluded(exclude: np.ndarray | None, n_items: int, device: torch.device) -> Tensor:
    """``exclude`` (bool [n_items], or None: nothing) as a tensor on ``device``."""
    if exclude is None:
        return torch.zeros(n_items, dtype=torch.bool, device=device)
    mask = torch.as_tensor(np.asarray(exclude, dtype=bool), device=device)
    if mask.shape != (n_items,):
        raise ReclensError(f"exclude must be [{n_items}] booleans, got {tuple(mask.shape)}")
    return mask


def _positions(maps: np.ndarray) -> np.ndarray:
    """Each item's position in its map's importance order (0 = most important): [M, n]."""
    order = importance_order(maps)
    pos = np.empty_like(order)
    pos[np.arange(order.shape[0])[:, None], order] = np.arange(order.shape[1])
    return pos


def fidelity_curves(
    model: nn.Module,
    x: Tensor | np.ndarray,
    target: int,
    scores: np.ndarray,
    items: np.ndarray | None = None,
    *,
    chunk_size: int = 512,
    edit_rule: str = "round",
    exclude: np.ndarray | None = None,
) -> FidelityCurves:
    """Every fidelity curve of ``M`` attribution maps of one history.

    ``x``: the history [n_items]; ``scores``: float [M, n_hist] (or [n_hist]), a score per
    history item for each map; ``items``: int64 [n_hist], the history items the scores refer
    to (default: the nonzero entries of ``x``, ascending); ``edit_rule``: how fractions become
    counts (:data:`EDIT_RULES`); ``exclude``: bool [n_items], items left out of the ranks
    besides the original history (default: none). One forward pass (chunked) over the
    distinct ones among the 43 * M edited histories.
    """
    row = as_rows(x, model)[0]
    items = history_items(row) if items is None else np.asarray(items, dtype=np.int64)
    n = int(items.shape[0])
    if n == 0:
        raise ReclensError("cannot measure the fidelity of an explanation of an empty history")
    maps = _check_maps(scores, n)
    m = maps.shape[0]
    device = model_device(model)
    p = _positions(maps)[:, None, :]  # [M, 1, n]
    counts = removed_counts(n, edit_rule)
    c = counts[None, :, None]  # [1, 11, 1]
    fixed = np.array([min(k, n) for k in FIXED_LENGTHS])[None, :, None]  # [1, 5, 1]
    keeps = [
        p >= c,  # del: the most important c removed
        p < c,  # ins: only the most important c kept
        p < n - c,  # neg: the least important c removed
        p >= fixed,  # del@k
        p < fixed,  # ins@k
    ]
    widths = [k.shape[1] for k in keeps]
    keep = np.concatenate(keeps, axis=1)  # [M, 43, n]
    per_map = keep.shape[1]
    flat = np.concatenate([keep.reshape(-1, n), np.ones((1, n), dtype=bool)])  # + full history
    unique, inverse = unique_masks(flat)
    rows = edited_rows(row, items, torch.from_numpy(unique).to(device))
    targets = torch.full((rows.shape[0],), int(target), dtype=torch.long, device=device)
    original = (row > 0) | _excluded(exclude, row.shape[0], row.device)
    original = original.expand(rows.shape[0], -1)
    probs_u, ranks_u = score_rows(model, rows, targets, original, chunk_size)
    probs_all = probs_u.double().cpu().numpy()[inverse]
    ranks_all = ranks_u.double().cpu().numpy()[inverse]
    p_full = float(probs_all[-1])
    probs = probs_all[:-1].reshape(m, per_map)
    ranks = ranks_all[:-1].reshape(m, per_map)
    bounds = np.cumsum([0, *widths])
    part = {
        name: slice(bounds[i], bounds[i + 1])
        for i, name in enumerate(("del", "ins", "neg", "del_k", "ins_k"))
    }
    curves: dict[str, np.ndarray] = {
        "del": probs[:, part["del"]],
        "ins": probs[:, part["ins"]],
    }
    for k in KS:
        curves[f"pos@{k}"] = (ranks[:, part["del"]] <= k).astype(np.float64)
    for k in KS:
        curves[f"neg@{k}"] = (ranks[:, part["neg"]] <= k).astype(np.float64)
    curves["cdcg"] = 1.0 / np.log2(ranks[:, part["del"]] + 1.0)
    denom = p_full if p_full != 0.0 else float("nan")
    fixed_out: dict[str, np.ndarray] = {}
    for j, k in enumerate(FIXED_LENGTHS):
        fixed_out[f"del@{k}"] = probs[:, part["del_k"]][:, j] / denom
    for j, k in enumerate(FIXED_LENGTHS):
        fixed_out[f"ins@{k}"] = probs[:, part["ins_k"]][:, j] / denom
    return FidelityCurves(
        curves={name: curves[name] for name in CURVES},
        fixed=fixed_out,
        counts=counts,
        target_probability=p_full,
        ranks={"del": ranks[:, part["del"]], "ins": ranks[:, part["ins"]]},
    )


def explanation_metrics(
    model: nn.Module, x: Tensor | np.ndarray, explanation: Explanation, chunk_size: int = 512
) -> dict[str, float]:
    """Every metric of :data:`METRICS` for one explanation of history ``x`` [n_items]."""
    res = fidelity_curves(
        model,
        x,
        explanation.target,
        explanation.scores[None, :],
        explanation.items,
        chunk_size=chunk_size,
    )
    return {name: float(v[0]) for name, v in res.metrics().items()}


def deletion_masks(
    items: list[np.ndarray], maps: list[np.ndarray], edit_rule: str = "round"
) -> list[tuple[np.ndarray, np.ndarray]]:
    """The edits behind the deletion curves of several users' maps, as keep masks.

    ``items[u]``: int64 [n_u]; ``maps[u]``: float [M_u, n_u]. For each user: the distinct keep
    masks over its history items, bool [Q_u, n_u], and for each of its ``M_u * 10`` curve
    points (map by map, fraction 0.1 .. 1.0) the index of its mask among them, int64
    [M_u * 10].
    """
    out = []
    for hist, scores in zip(items, maps, strict=True):
        n = int(hist.shape[0])
        pos = _positions(_check_maps(scores, n))  # [M, n]
        c = removed_counts(n, edit_rule)[1:]  # [10]
        keep = (pos[:, None, :] >= c[None, :, None]).reshape(-1, n)  # [M * 10, n]
        out.append(unique_masks(keep))
    return out


def deletion_requests(
    rows: Tensor,
    targets: np.ndarray,
    items: list[np.ndarray],
    maps: list[np.ndarray],
    edit_rule: str = "round",
) -> tuple[Tensor, np.ndarray, np.ndarray, list[int]]:
    """The edited histories behind the deletion curves of several users' maps.

    ``rows``, ``targets``, ``items``, ``maps``: as in :func:`deletion_aucs`. Returns the
    distinct edited histories of each user (:func:`deletion_masks`), concatenated:
    [Q, n_items]; for each of the ``sum_u M_u * 10`` curve points (user by user, map by map,
    fraction 0.1 .. 1.0) the index of its history among them and its target: int64 [R] twice;
    and ``M_u`` per user.
    """
    parts, index, tgts, sizes = [], [], [], []
    offset = 0
    for u, (unique, inverse) in enumerate(deletion_masks(items, maps, edit_rule)):
        parts.append(edited_rows(rows[u], items[u], torch.from_numpy(unique).to(rows.device)))
        index.append(inverse + offset)
        tgts.append(np.full(inverse.shape[0], int(targets[u]), dtype=np.int64))
        offset += unique.shape[0]
        sizes.append(inverse.shape[0] // (N_FRACTIONS - 1))
    if not parts:
        empty = np.zeros(0, dtype=np.int64)
        return rows.new_zeros((0, rows.shape[1])), empty, empty, []
    return torch.cat(parts), np.concatenate(index), np.concatenate(tgts), sizes


def deletion_criteria(probs: Tensor, p_full: Tensor, sizes: list[int]) -> list[np.ndarray]:
    """Deletion AUCs float64 [M_u] per user from the curve points ``probs`` [R] (in the order
    of :func:`deletion_requests`) and each user's full-history probability ``p_full`` [U]."""
    probs = probs.double().cpu()
    p_full = p_full.double().cpu()
    out, start = [], 0
    for u, m in enumerate(sizes):
        block = probs[start : start + m * (N_FRACTIONS - 1)].reshape(m, N_FRACTIONS - 1)
        start += m * (N_FRACTIONS - 1)
        total = block.sum(dim=1) + p_full[u]
        out.append((total / N_FRACTIONS).numpy())
    return out


def deletion_aucs(
    model: nn.Module,
    rows: Tensor,
    targets: np.ndarray,
    items: list[np.ndarray],
    maps: list[np.ndarray],
    p_full: Tensor,
    chunk_size: int = 512,
    edit_rule: str = "round",
) -> list[np.ndarray]:
    """Deletion AUC of each map, for several users at once (one batched forward pass).

    ``rows``: histories [U, n_items]; ``targets``: int64 [U]; ``items[u]``: int64 [n_u], the
    history items of user ``u``; ``maps[u]``: float [M_u, n_u]; ``p_full``: [U], each target's
    probability for the full history (the fraction-0 point, shared by all maps). Returns
    float64 [M_u] per user: the mean of the 11 deletion-curve points. Identical edited
    histories (maps agreeing on their top items) are scored once.
    """
    edited, index, tgts, sizes = deletion_requests(rows, targets, items, maps, edit_rule)
    if not sizes:
        return []
    probs = gather_probabilities(model, edited, index, tgts, chunk_size)
    return deletion_criteria(probs, p_full, sizes)
