"""SPINRec: Stochastic Path Integration for recommendation explanations.

From "Fidelity-Aware Recommendation Explanations via Stochastic Path Integration". For a user
history ``x`` (binary [n_items]) and a target item ``t`` (default: the top-1 recommendation
outside the history):

1. draw ``kappa`` baseline profiles ``b_1..b_kappa``: training users' histories (rows of the
   training matrix with at least one item), uniformly with replacement from a generator
   seeded by ``(seed, user)``; a baseline equal to ``x`` is redrawn;
2. for each baseline, integrate the gradient of ``p_t`` (the target's probability under the
   model's declared link) along the straight path ``b + alpha (x - b)``. The ``right`` rule
   (default) averages the gradients at ``alpha = 1/J, ..., 1``; the ``trapezoid`` rule uses
   ``alpha = 0, 1/J, ..., 1`` with halved end weights. The target probability is recorded at
   every ``alpha`` in ``0, 1/J, ..., 1`` (the path curve);
3. the attribution of history item ``i`` on path ``k`` is
   ``x_i * mean_gradient_ki * (x_i - b_ki)`` (an item the baseline shares scores 0);
4. the explanation is the candidate map with the lowest *deletion AUC* on this user (the mean
   target probability after removing the top ``round(f n)`` items, ``f`` = 0, 0.1, ..., 1;
   see :mod:`explainers.fidelity`). This fixed criterion queries only the model.

The selection criterion is a parameter (``select``): ``del`` (the paper's, above), any other
metric of :data:`explainers.fidelity.METRICS` (e.g. ``ins_auc``: the candidate whose insertion
AUC is best), or ``none`` (no selection: the first sampled path, the ablation that shows what
selection buys). A map selected on a metric must not be *evaluated* on it (nor on metrics built
from the same edits: the deletion AUC, POS@K and CDCG all remove the top items) without saying
so: the selection itself improves that number. :data:`SELECTED_ON` names what each registered
variant was selected on.

All ``kappa * J`` interpolated inputs of all users in a call go through the model in one
batched forward and backward pass (chunked), on the model's device; the end point, shared by
every path, is computed once. The baselines (the path curves' first point, each distinct
training user once) and the distinct edited histories of every candidate map's deletion
curve then go through one no-grad forward pass together. With the zero baseline
this is plain Integrated Gradients (:func:`integrated_gradients`).

Extension (off by default, ``unobserved=True``): a score for each item *outside* the history,
``d p_t / d x_j`` at ``x`` (the path end point, shared by every path) — a first-order estimate
of what adding item ``j`` would do to the target's probability. It is not part of SPINRec.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import scipy.sparse as sp
import torch
from torch import Tensor, nn

from data.errors import ReclensError
from explainers.base import (
    Explainer,
    Explanation,
    _gather_probabilities,
    _probability_gradients,
    as_rows,
    eval_mode,
    first_layer_of,
    first_target_probability,
    is_pointwise,
    resolve_targets,
    row_moments,
    target_probabilities,
    user_ids,
    user_rng,
)
from explainers.fidelity import (
    LOWER_IS_BETTER,
    METRICS,
    deletion_criteria,
    deletion_masks,
    deletion_requests,
    fidelity_curves,
    removed_counts,
)
from explainers.training_rows import TrainingRows

RULES: tuple[str, ...] = ("right", "trapezoid")
SELECTS: tuple[str, ...] = ("del", "none", *METRICS)
"""Path-selection criteria: the deletion AUC (fused, fast), none, or any fidelity metric."""
FIRST_CHUNK_VALUES = 1 << 17
"""First-layer values per chunk of a pointwise model's path rows (half a MiB of float32: large
enough that the fixed cost of a pass is paid rarely, small enough to stay in a core's cache)."""
TIE_RTOL = 1e-6
"""Criteria this close (relative) tie: float32 rounding of a mean of probabilities, which the
exact shortcuts of :mod:`explainers.base` may change, must not change the chosen path."""


def choose(criterion: np.ndarray) -> int:
    """The chosen candidate for ``criterion`` [kappa]: the first whose criterion is within
    :data:`TIE_RTOL` (relative) of the lowest."""
    low = float(np.min(criterion))
    return int(np.flatnonzero(criterion <= low + TIE_RTOL * abs(low))[0])


@dataclass(kw_only=True)
class SpinRecExplanation(Explanation):
    """A SPINRec explanation: the chosen map plus every candidate path, for drawing.

    Beyond :class:`Explanation` (``scores`` is the chosen candidate's map):

    - ``baseline_users``: int64 [kappa], the training users whose histories were the baselines;
    - ``candidates``: float64 [kappa, n_hist], every path's attribution map over ``items``;
    - ``criterion``: float64 [kappa], each candidate's deletion AUC (lower is better), or,
      with another ``select``, its value of that metric;
    - ``chosen``: index of the chosen candidate (:func:`choose`: the best criterion, the
      first among those within float32 rounding of it; 0 with ``select="none"``);
    - ``select``: the criterion the candidate was chosen on (``del``, a metric, ``none``);
    - ``alphas``: float64 [J + 1], the path positions 0, 1/J, ..., 1;
    - ``path_probability``: float64 [kappa, J + 1], the target probability along each path
      (column 0: the baseline itself, column J: the user's history);
    - ``rule``: ``right`` or ``trapezoid``;
    - ``unobserved_items`` / ``unobserved_scores``: int64 / float64 [n_items - n_hist], the
      extension's add-an-item scores (``None`` unless asked for).
    """

    baseline_users: np.ndarray
    candidates: np.ndarray
    criterion: np.ndarray
    chosen: int
    alphas: np.ndarray
    path_probability: np.ndarray
    rule: str = "right"
    select: str = "del"
    unobserved_items: np.ndarray | None = field(default=None)
    unobserved_scores: np.ndarray | None = field(default=None)

    @property
    def kappa(self) -> int:
        return int(self.candidates.shape[0])


def path_weights(steps: int, rule: str = "right") -> tuple[np.ndarray, np.ndarray]:
    """Path positions ``alpha`` = 0, 1/J, ..., 1 and their quadrature weights: two [J + 1].

    ``right``: weight 1/J on alpha = 1/J..1, 0 on alpha = 0; ``trapezoid``: 1/J inside,
    1/(2J) at both ends. The weights sum to 1.
    """
    if int(steps) < 1:
        raise ReclensError(f"the number of path steps must be at least 1, got {steps}")
    if rule not in RULES:
        raise ReclensError(f"unknown integration rule {rule!r}: use right or trapezoid")
    j = int(steps)
    alphas = np.arange(j + 1, dtype=np.float64) / j
    weights = np.full(j + 1, 1.0 / j)
    if rule == "right":
        weights[0] = 0.0
    else:
        weights[0] = weights[-1] = 0.5 / j
    return alphas, weights


@dataclass(frozen=True)
class PathResult:
    """Gradients along the paths of ``U`` users x ``K`` baselines.

    ``mean_gradient``: [U, K, n_items], the quadrature-weighted mean gradient of ``p_t`` along
    each path; ``probability``: [U, K, J + 1], ``p_t`` at each alpha; ``gradient_at_x``:
    [U, n_items], the gradient at the user's history (alpha = 1).
    """

    mean_gradient: Tensor
    probability: Tensor
    gradient_at_x: Tensor


@dataclass(frozen=True)
class HistoryColumns:
    """The (user, item) pairs of ``U`` users' histories, where attributions are formed.

    ``owner``, ``col``: long [C] each (``owner`` ascending), user ``owner[c]`` has item
    ``col[c]``; ``x``: the history values there [C]; ``base``: every baseline's value there
    [C, K]; ``lengths``: each user's number of pairs (``owner``'s run lengths).
    """

    owner: Tensor
    col: Tensor
    x: Tensor
    base: Tensor
    lengths: list[int]


@dataclass(frozen=True)
class FirstInputs:
    """A declared linear first layer ``W`` [n_items, d] read at what a chunk of ``U`` users
    needs: ``at_cols``, its rows at the history pairs' items [C, d] (see
    :class:`HistoryColumns`); ``x_h``, the histories' outputs ``x W`` [U, d]; ``base_h``, the
    baselines' outputs ``b W`` [U K, d]; and ``base_moments``, their moments [U K, 2]."""

    at_cols: Tensor
    x_h: Tensor
    base_h: Tensor
    base_moments: Tensor


def path_gradients(
    model: nn.Module,
    x: Tensor,
    baselines: Tensor,
    targets: Tensor,
    steps: int = 16,
    rule: str = "right",
    chunk_size: int = 512,
) -> PathResult:
    """Integrate ``d p_t / d x`` along ``b + alpha (x - b)`` for every user and baseline.

    ``x``: [U, n_items]; ``baselines``: [U, K, n_items]; ``targets``: long [U]. The
    interpolated inputs of all paths go through one batched forward and backward pass, in
    chunks of ``chunk_size`` rows. The end point ``alpha = 1`` is the user's history on every
    path, so its gradient is computed once per user; under the ``right`` rule the baselines
    (``alpha = 0``) need no gradient and only get a forward pass (for the path curve).
    """
    u, k, n = baselines.shape
    with eval_mode(model):
        mean_grad, probability, x_g = _integrate(
            model, x, baselines, targets, steps, rule, chunk_size
        )
        if path_weights(steps, rule)[1][0] == 0:  # right rule: the baselines' forward pass
            base_t = targets.repeat_interleave(k)
            base_p = target_probabilities(model, baselines.reshape(-1, n), base_t, chunk_size)
            probability = torch.cat([base_p.reshape(u, k, 1), probability], dim=2)
    return PathResult(mean_gradient=mean_grad, probability=probability, gradient_at_x=x_g)


def _interpolated_rows(x: Tensor, baselines: Tensor, mid: Tensor) -> Tensor:
    """The path inputs ``b + alpha (x - b)`` for ``alpha`` in ``mid`` [m], then ``x``.

    ``x``: [U, n]; ``baselines``: [U, K, n]. Returns [U K m + U, n] (user, baseline, alpha
    order), written in place into one buffer.
    """
    u, k, n = baselines.shape
    m = mid.shape[0]
    rows = x.new_empty((u * k * m + u, n))
    path = rows[: u * k * m].view(u, k, m, n)
    diff = (x[:, None, :] - baselines)[:, :, None, :]  # [U, K, 1, n]
    torch.mul(mid[None, None, :, None], diff, out=path)
    path.add_(baselines[:, :, None, :])
    rows[u * k * m :] = x
    return rows


def _integrate(
    model: nn.Module,
    x: Tensor,
    baselines: Tensor,
    targets: Tensor,
    steps: int,
    rule: str,
    chunk_size: int,
    columns: HistoryColumns | None = None,
    first: FirstInputs | None = None,
    x_gradient: bool = True,
) -> tuple[Tensor, Tensor, Tensor | None]:
    """The batched forward and backward pass of :func:`path_gradients` (model in eval mode).

    Returns the mean gradients [U, K, n], ``p_t`` at every alpha whose gradient is used up to
    alpha = 1 ([U, K, J + 1] under the trapezoid rule, [U, K, J] without alpha = 0 under the
    right rule) and the gradients at ``x`` [U, n]. With ``columns``, the mean gradients are
    only those of user ``owner[c]`` at item ``col[c]``: [C, K] (through a first layer, formed
    at those pairs only).
    ``first``: the first layer read at ``columns`` and the baselines, when the caller has it
    (a model with a first layer, given with ``columns``; formed densely here otherwise).
    Without ``x_gradient``, a first-layer model's gradients at ``x`` are not formed (None).
    """
    u, k, n = baselines.shape
    alphas_np, weights_np = path_weights(steps, rule)
    j = alphas_np.shape[0] - 1
    lo = 0 if weights_np[0] > 0 else 1  # first alpha whose gradient is used
    mid = torch.from_numpy(alphas_np[lo:j]).to(x.device, x.dtype)  # [m], alpha < 1
    weights = torch.from_numpy(weights_np).to(x.device, x.dtype)
    weight = first_layer_of(model)
    if weight is not None:
        return _integrate_first(
            model,
            weight,
            x,
            baselines,
            targets,
            mid,
            weights,
            chunk_size,
            columns,
            first,
            x_gradient,
        )
    m = mid.shape[0]
    rows = _interpolated_rows(x, baselines, mid)  # [U K m + U, n]
    row_t = torch.cat([targets.repeat_interleave(k * m), targets])
    probs, grads = _probability_gradients(model, rows, row_t, chunk_size)
    cut = u * k * m
    path_p, x_p = probs[:cut].reshape(u, k, m), probs[cut:]  # [U, K, m], [U]
    path_g, x_g = grads[:cut].reshape(u, k, m, n), grads[cut:]  # [U, K, m, n], [U, n]
    mean_grad = torch.einsum("ukmn,m->ukn", path_g, weights[lo:j])
    mean_grad = mean_grad + weights[j] * x_g[:, None, :]
    if columns is not None:
        mean_grad = mean_grad[columns.owner, :, columns.col]  # [C, K]
    probability = torch.cat([path_p, x_p[:, None, None].expand(u, k, 1)], dim=2)
    return mean_grad, probability, x_g


def _integrate_first(
    model: nn.Module,
    weight: Tensor,
    x: Tensor,
    baselines: Tensor,
    targets: Tensor,
    mid: Tensor,
    weights: Tensor,
    chunk_size: int,
    columns: HistoryColumns | None = None,
    first: FirstInputs | None = None,
    x_gradient: bool = True,
) -> tuple[Tensor, Tensor, Tensor | None]:
    """:func:`_integrate` through the model's linear first layer ``W`` [n, d].

    On the path ``p = b + alpha (x - b)`` the first layer's output is ``h = A + alpha D`` with
    ``A = b W`` and ``D = (x - b) W``, and the moments are polynomials in alpha, so only
    ``h`` [rows, d] and the moments [rows, 2] go through the model, with gradients. Then
    ``d p_t / d p_i = W_i . g_h + g_1 + 2 p_i g_2`` (``g_1``, ``g_2``: the moments' gradients),
    and its quadrature-weighted mean over alpha is
    ``W_i . G + M_1 + 2 b_i M_2 + 2 (x_i - b_i) M_2'`` with ``G``, ``M_1``, ``M_2`` the weighted
    sums of ``g_h``, ``g_1``, ``g_2`` and ``M_2'`` that of ``alpha g_2``. A pointwise model's
    rows are [d] wide in and a few scores out, so they go through in chunks of
    :data:`FIRST_CHUNK_VALUES` first-layer values (at least ``chunk_size`` rows); a softmax
    model's give full logits, so ``chunk_size`` rows. ``first``: ``W`` read at ``columns`` and
    the baselines by the caller (formed here otherwise).
    """
    u, k, n = baselines.shape
    m, j = mid.shape[0], weights.shape[0] - 1
    d = weight.shape[1]
    if first is None:
        flat = baselines.reshape(u * k, n)
        base_h, base_moments, hx = flat @ weight, row_moments(flat), x @ weight
    else:
        base_h, base_moments, hx = first.base_h, first.base_moments, first.x_h
    a = base_h.view(u, k, 1, d)  # b W
    diff = hx[:, None, None, :] - a  # (x - b) W: [U, K, 1, d]
    s_b, q_b = base_moments.view(u, k, 2).unbind(-1)  # sum b, sum b^2: [U, K]
    s_x, q_x = row_moments(x).unbind(-1)  # [U]
    if columns is None:
        bx = torch.einsum("ukn,un->uk", baselines, x)  # b . x: [U, K]
    else:  # b . x over the history items only
        terms = columns.base * columns.x[:, None]  # [C, K]
        bx = terms.new_zeros((u, k)).index_add_(0, columns.owner, terms)
    q_d = q_x[:, None] - 2 * bx + q_b  # |x - b|^2
    al = mid[None, None, :]  # [1, 1, m]
    first_m = s_b[..., None] + al * (s_x[:, None, None] - s_b[..., None])  # [U, K, m]
    second_m = q_b[..., None] + 2 * al * (bx - q_b)[..., None] + al * al * q_d[..., None]
    cut = u * k * m
    h = hx.new_empty((cut + u, d))  # the path points' first layer, then x's: [U K m + U, d]
    torch.addcmul(a, mid[None, None, :, None], diff, out=h[:cut].view(u, k, m, d))
    h[cut:] = hx
    moments = hx.new_empty((cut + u, 2))
    torch.stack([first_m, second_m], dim=-1, out=moments[:cut].view(u, k, m, 2))
    moments[cut:] = torch.stack([s_x, q_x], dim=1)
    row_t = torch.cat([targets.repeat_interleave(k * m), targets])
    probs = h.new_empty(h.shape[0])
    g_h, g_m = torch.empty_like(h), torch.empty_like(moments)
    step = max(chunk_size, FIRST_CHUNK_VALUES // d) if is_pointwise(model) else chunk_size
    with torch.enable_grad():
        for start in range(0, h.shape[0], step):
            stop = start + step
            h_in = h[start:stop].detach().requires_grad_(True)
            m_in = moments[start:stop].detach().requires_grad_(True)
            p_t = first_target_probability(model, h_in, m_in, row_t[start:stop])
            grads = torch.autograd.grad(p_t.sum(), (h_in, m_in), allow_unused=True)
            g_h[start:stop] = 0.0 if grads[0] is None else grads[0]
            g_m[start:stop] = 0.0 if grads[1] is None else grads[1]
            probs[start:stop] = p_t.detach()
    w_mid, w_end = weights[-1 - m : j], weights[j]
    # weighted sums over alpha, as [U K] batches of [m] x [m, .] products (no copies)
    big_g = torch.matmul(w_mid, g_h[:cut].view(u * k, m, d)).view(u, k, d)
    big_g += w_end * g_h[cut:, None, :]
    path_gm = g_m[:cut].view(u * k, m, 2)
    m_12 = torch.matmul(w_mid, path_gm).view(u, k, 2) + w_end * g_m[cut:, None, :]
    m_1, m_2 = m_12.unbind(-1)
    m_2a = torch.matmul(path_gm[..., 1], w_mid * mid).view(u, k) + w_end * g_m[cut:, None, 1]
    if columns is None:
        mean_grad = (big_g.reshape(u * k, d) @ weight.T).view(u, k, n)
        mean_grad += m_1[..., None] + (2 * (m_2 - m_2a))[..., None] * baselines
        mean_grad += (2 * m_2a)[..., None] * x[:, None, :]
    else:  # W_i . G at each user's own items only: one [K, d] x [d, n_u] product per user
        owner = columns.owner
        at_cols = weight[columns.col] if first is None else first.at_cols
        w_cols = at_cols.split(columns.lengths)  # [n_u, d] each
        mean_grad = torch.cat([w_c @ g.T for w_c, g in zip(w_cols, big_g, strict=True)])
        mean_grad += m_1[owner] + (2 * (m_2 - m_2a))[owner] * columns.base
        mean_grad += (2 * m_2a)[owner] * columns.x[:, None]
    grad_x = None
    if x_gradient:
        grad_x = g_h[cut:] @ weight.T + g_m[cut:, :1] + 2 * g_m[cut:, 1:] * x
    path_p, x_p = probs[:cut].view(u, k, m), probs[cut:]
    probability = torch.cat([path_p, x_p[:, None, None].expand(u, k, 1)], dim=2)
    return mean_grad, probability, grad_x


def integrated_gradients(
    model: nn.Module,
    x: Tensor | np.ndarray,
    target: int,
    baseline: Tensor | np.ndarray | None = None,
    steps: int = 16,
    rule: str = "right",
) -> Tensor:
    """Dense Integrated Gradients ``(x - b) * mean_gradient``: [n_items] for ``x`` [n_items].

    ``baseline`` defaults to the zero history. The attributions of all items sum to
    ``p_t(x) - p_t(b)`` up to the quadrature error (completeness).
    """
    row = as_rows(x, model)
    base = torch.zeros_like(row) if baseline is None else as_rows(baseline, model)
    tgt = torch.tensor([int(target)], dtype=torch.long, device=row.device)
    res = path_gradients(model, row, base[:, None, :], tgt, steps, rule)
    return ((row - base) * res.mean_gradient[:, 0, :])[0]


class SpinRec(Explainer):
    """SPINRec over baselines drawn from the training matrix ``train`` [n_users, n_items].

    ``kappa``: number of sampled baselines (paths); ``steps``: J, points per path; ``rule``:
    ``right`` or ``trapezoid``; ``select``: the path-selection criterion (see the module
    docstring); ``edit_rule``: how the deletion criterion turns fractions into counts
    (:data:`explainers.fidelity.EDIT_RULES`); ``unobserved``: also score items outside the
    history (the labelled extension); ``chunk_size``: rows per forward/backward chunk;
    ``batch_users``: users integrated together in :meth:`explain_batch` (default: 32 for a
    pointwise-link model with a linear first layer, whose per-user arithmetic is a few small
    products, so the fixed cost of a pass dominates; 8 for the others, which are bound by their
    matrix products, where larger batches only cost memory).
    """

    name = "spinrec"
    default_select = "del"

    def __init__(
        self,
        train: sp.csr_matrix,
        kappa: int = 16,
        steps: int = 16,
        rule: str = "right",
        select: str | None = None,
        edit_rule: str = "round",
        unobserved: bool = False,
        chunk_size: int = 512,
        batch_users: int | None = None,
    ) -> None:
        self.select = self.default_select if select is None else str(select)
        if self.select not in SELECTS:
            raise ReclensError(
                f"unknown SPINRec selection {self.select!r}: use {', '.join(SELECTS)}"
            )
        if int(kappa) < 1:
            raise ReclensError(f"SPINRec needs kappa >= 1 baselines, got {kappa}")
        path_weights(steps, rule)  # validates steps and rule
        removed_counts(1, edit_rule)  # validates the edit rule
        self.edit_rule = edit_rule
        self.rows = TrainingRows(train)
        self.kappa = int(kappa)
        self.steps = int(steps)
        self.rule = rule
        self.unobserved = bool(unobserved)
        self.chunk_size = int(chunk_size)
        self.batch_users = None if batch_users is None else max(1, int(batch_users))

    # -- baselines -------------------------------------------------------------------------
    def draw_baselines(
        self, hist: list[np.ndarray], rngs: Sequence[np.random.Generator], max_rounds: int = 100
    ) -> tuple[np.ndarray, np.ndarray]:
        """``kappa`` baseline users per history, int64 [U, kappa], and their histories float32
        [U, kappa, n_items], for the histories' positive items ``hist`` (U ascending int64
        arrays) and one generator per history.

        Drawn uniformly with replacement from training users with at least one item; a draw
        whose history has the same positive items as its user's is redrawn from that user's
        generator (so each user's draws do not depend on the others in the batch). The check
        reads the sparse rows: only draws with as many items as the history are compared.
        """
        u, n = len(hist), self.rows.n_items
        pool = self.rows.pool
        users = np.stack([pool[rng.integers(0, pool.shape[0], size=self.kappa)] for rng in rngs])
        lengths = np.array([h.shape[0] for h in hist], dtype=np.int64)
        support = self.rows.support
        indptr, indices = support.indptr, support.indices
        for _ in range(max_rounds):
            same = np.zeros((u, self.kappa), dtype=bool)
            counts = indptr[users + 1] - indptr[users]  # the draws' numbers of items: [U, K]
            for i, k in zip(*np.nonzero(counts == lengths[:, None]), strict=True):
                start = indptr[users[i, k]]
                same[i, k] = np.array_equal(indices[start : start + lengths[i]], hist[i])
            if not same.any():
                return users, self.rows.dense(users.reshape(-1)).reshape(u, self.kappa, n)
            for i in np.flatnonzero(same.any(axis=1)):
                redraw = rngs[i].integers(0, pool.shape[0], size=int(same[i].sum()))
                users[i, same[i]] = pool[redraw]
        raise ReclensError("SPINRec: every training history drawn equals the user's history")

    # -- explanation -----------------------------------------------------------------------
    def explain_batch(
        self,
        model: nn.Module,
        x: Tensor,
        targets: Sequence[int] | None = None,
        *,
        users: Sequence[int | None] | None = None,
        seed: int = 0,
    ) -> list[Explanation]:
        """SPINRec explanations for histories ``x`` [U, n_items] (``batch_users`` at a time)."""
        rows = as_rows(x, model)
        if rows.shape[1] != self.rows.n_items:
            raise ReclensError(
                f"SPINRec: histories have {rows.shape[1]} items, the training matrix "
                f"{self.rows.n_items}"
            )
        ids = user_ids(users, rows.shape[0])
        out: list[Explanation] = []
        with eval_mode(model):
            tgt = resolve_targets(model, rows, targets)
            step = self.batch_users or self.default_batch_users(model)
            for start in range(0, rows.shape[0], step):
                stop = start + step
                out.extend(
                    self._explain_chunk(
                        model, rows[start:stop], tgt[start:stop], ids[start:stop], seed
                    )
                )
        return out

    @staticmethod
    def default_batch_users(model: nn.Module) -> int:
        """Users explained together when ``batch_users`` is not given (see the class)."""
        return 32 if is_pointwise(model) and first_layer_of(model) is not None else 8

    def _base_requests(
        self, base_users: list[np.ndarray], targets: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Each chunk's distinct baseline users' first position among all ``U * kappa``
        baselines, each baseline's index among them and its target: int64 [D], [U K], [U K]."""
        flat_users = np.concatenate(base_users)
        _, distinct, inverse = np.unique(flat_users, return_index=True, return_inverse=True)
        return distinct, inverse.reshape(-1), np.repeat(targets, self.kappa)

    def _score_dense(
        self,
        model: nn.Module,
        rows: Tensor,
        baselines: Tensor,
        base_users: list[np.ndarray],
        targets: np.ndarray,
        items: list[np.ndarray],
        maps: list[np.ndarray],
    ) -> Tensor:
        """Target probabilities of the baselines (right rule) then of every deletion-curve
        point, through dense edited histories."""
        edited, index, tgts, _ = deletion_requests(rows, targets, items, maps, self.edit_rule)
        if self.rule == "right":
            distinct, b_index, b_tgts = self._base_requests(base_users, targets)
            base_flat = baselines.reshape(-1, baselines.shape[2])
            edited = torch.cat([base_flat[torch.from_numpy(distinct).to(rows.device)], edited])
            index = np.concatenate([b_index, index + distinct.shape[0]])
            tgts = np.concatenate([b_tgts, tgts])
        return _gather_probabilities(model, edited, index, tgts, self.chunk_size)

    @torch.inference_mode()
    def _score_first(
        self,
        model: nn.Module,
        columns: HistoryColumns,
        first: FirstInputs,
        base_users: list[np.ndarray],
        targets: np.ndarray,
        items: list[np.ndarray],
        maps: list[np.ndarray],
    ) -> Tensor:
        """:meth:`_score_dense` through the model's first layer ``W``: an edited history keeps
        some history items, so its ``h`` and moments are its keep mask times those items'
        ``x_i W_i``, ``x_i`` and ``x_i^2`` (one [Q_u, n_u] x [n_u, d + 2] product per user);
        the baselines' ``h`` and moments [U K, .] are ``first``'s."""
        device, d = columns.x.device, first.at_cols.shape[1]
        values = columns.x[:, None]  # [C, 1]
        terms = torch.cat([values * first.at_cols, values, values * values], dim=1)
        parts, index, tgts = [], [], []
        offset = 0
        if self.rule == "right":
            distinct, b_index, b_tgts = self._base_requests(base_users, targets)
            pick = torch.from_numpy(distinct).to(device)
            parts.append(torch.cat([first.base_h[pick], first.base_moments[pick]], dim=1))
            index.append(b_index)
            tgts.append(b_tgts)
            offset = distinct.shape[0]
        per_user = terms.split(columns.lengths)  # [n_u, d + 2] each
        masks = deletion_masks(items, maps, self.edit_rule)
        for u, ((unique, inverse), term) in enumerate(zip(masks, per_user, strict=True)):
            parts.append(torch.from_numpy(unique).to(device, term.dtype) @ term)  # [Q_u, d + 2]
            index.append(inverse + offset)
            tgts.append(np.full(inverse.shape[0], int(targets[u]), dtype=np.int64))
            offset += unique.shape[0]
        scored = torch.cat(parts)
        return first_target_probability(
            model,
            scored[:, :d],
            scored[:, d:],
            torch.from_numpy(np.concatenate(tgts)).to(device),
            torch.from_numpy(np.concatenate(index)).to(device),
        )

    def _metric_criterion(
        self, model: nn.Module, x: Tensor, target: int, maps: np.ndarray, items: np.ndarray
    ) -> np.ndarray:
        """Each candidate's value of the ``select`` metric [kappa], oriented so that lower is
        better (as :func:`choose` wants)."""
        values = fidelity_curves(
            model, x, target, maps, items, chunk_size=self.chunk_size, edit_rule=self.edit_rule
        )
        metric = values.metrics()[self.select]
        return metric if self.select in LOWER_IS_BETTER else -metric

    def _explain_chunk(
        self,
        model: nn.Module,
        rows: Tensor,
        targets: np.ndarray,
        users: list[int | None],
        seed: int,
    ) -> list[SpinRecExplanation]:
        """Explain ``rows`` [U, n_items] (model in eval mode): one gradient pass over every
        path of every user, then one no-grad pass scoring the baselines (the path curves'
        first point) and the deletion curves of every candidate map together."""
        start = time.perf_counter()
        device = rows.device
        n_users = len(users)
        x_np = rows.cpu().numpy()
        items = []
        for i, user in enumerate(users):
            hist = np.flatnonzero(x_np[i] > 0).astype(np.int64)
            if hist.shape[0] == 0:
                raise ReclensError(f"user {user}: cannot explain an empty history")
            items.append(hist)
        drawn, base_np = self.draw_baselines(items, [user_rng(seed, user) for user in users])
        base_users = list(drawn)
        baselines = torch.from_numpy(base_np).to(device=device, dtype=rows.dtype)
        t = torch.from_numpy(targets).to(device)
        lengths = [hist.shape[0] for hist in items]
        owner = torch.from_numpy(np.repeat(np.arange(n_users), lengths)).to(device)
        col = torch.from_numpy(np.concatenate(items)).to(device)
        columns = HistoryColumns(owner, col, rows[owner, col], baselines[owner, :, col], lengths)
        weight = first_layer_of(model)
        first = None
        if weight is not None:
            at_cols = weight[col]  # [C, d]; x W is summed from them
            history_h = rows.new_zeros((n_users, weight.shape[1]))
            flat_users = np.concatenate(base_users)
            first = FirstInputs(
                at_cols,
                history_h.index_add_(0, owner, columns.x[:, None] * at_cols),
                self.rows.first_sums(weight, flat_users, baselines.flatten(0, 1)).to(rows.dtype),
                torch.from_numpy(self.rows.moments[flat_users]).to(device, rows.dtype),
            )
        mean_grad, probability, grad_x = _integrate(
            model,
            rows,
            baselines,
            t,
            self.steps,
            self.rule,
            self.chunk_size,
            columns,
            first,
            x_gradient=self.unobserved,
        )
        # x_i * mean_grad_i * (x_i - b_i) on the history items: [C, K] -> per user [K, n_u]
        x_h = columns.x[:, None]  # [C, 1]
        attr = x_h * mean_grad * (x_h - columns.base)
        attr_np = attr.double().cpu().numpy().T  # [K, C]
        maps = [np.ascontiguousarray(m) for m in np.split(attr_np, np.cumsum(lengths)[:-1], 1)]
        p_full = probability[:, 0, -1]
        # one no-grad pass: the edited histories of the deletion curves and, under the right
        # rule, the baselines (each distinct training user once, whatever its targets)
        need_base = probability.shape[2] < self.steps + 1
        if first is None:
            scored = self._score_dense(model, rows, baselines, base_users, targets, items, maps)
        else:
            scored = self._score_first(model, columns, first, base_users, targets, items, maps)
        sizes = [m.shape[0] for m in maps]
        n_base = n_users * self.kappa if need_base else 0
        criteria = deletion_criteria(scored[n_base:], p_full, sizes)
        if need_base:
            base_p = scored[:n_base].reshape(n_users, self.kappa, 1).to(probability.dtype)
            probability = torch.cat([base_p, probability], dim=2)
        probs = probability.double().cpu().numpy()
        alphas, _ = path_weights(self.steps, self.rule)
        grad_np = None if grad_x is None or not self.unobserved else grad_x.double().cpu().numpy()
        per_user = (time.perf_counter() - start) / n_users
        if self.select not in ("del", "none"):
            criteria = [
                self._metric_criterion(model, rows[i], int(targets[i]), maps[i], items[i])
                for i in range(n_users)
            ]
        out = []
        for i, user in enumerate(users):
            chosen = 0 if self.select == "none" else choose(criteria[i])
            unobs_items = unobs_scores = None
            if grad_np is not None:
                unobs_items = np.flatnonzero(x_np[i] <= 0).astype(np.int64)
                unobs_scores = grad_np[i][unobs_items] * (1.0 - x_np[i][unobs_items])
            out.append(
                SpinRecExplanation(
                    explainer=self.name,
                    target=int(targets[i]),
                    items=items[i],
                    scores=maps[i][chosen].copy(),
                    target_probability=float(probs[i, 0, -1]),
                    user=user,
                    seconds=per_user,
                    baseline_users=base_users[i],
                    candidates=maps[i],
                    criterion=criteria[i],
                    chosen=chosen,
                    alphas=alphas,
                    path_probability=probs[i],
                    rule=self.rule,
                    select=self.select,
                    unobserved_items=unobs_items,
                    unobserved_scores=unobs_scores,
                )
            )
        return out


class SpinRecIns(SpinRec):
    """SPINRec with the path chosen on the insertion AUC (so it can be evaluated, without the
    selection's own advantage, on the deletion-based metrics)."""

    name = "spinrec_ins"
    default_select = "ins_auc"


class SpinRecSingle(SpinRec):
    """SPINRec without path selection: the first sampled path (the ablation)."""

    name = "spinrec_single"
    default_select = "none"


SELECTED_ON: dict[str, frozenset[str]] = {
    "spinrec": frozenset({"del_auc", "cdcg_auc", *(m for m in METRICS if m.startswith("pos@"))}),
    "spinrec_ins": frozenset({"ins_auc"}),
    "spinrec_single": frozenset(),
}
"""For each SPINRec variant, the metrics its selection used (deletion: also POS@K and CDCG,
which score the same deleted histories): comparing it on them would count the selection."""
