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

All ``kappa * J`` interpolated inputs of all users in a call go through the model in one
batched forward and backward pass (chunked), on the model's device; the end point, shared by
every path, is computed once. With the zero baseline
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
    as_rows,
    history_items,
    model_device,
    probability_gradients,
    resolve_targets,
    target_probabilities,
    user_ids,
    user_rng,
)
from explainers.fidelity import deletion_aucs

RULES: tuple[str, ...] = ("right", "trapezoid")


@dataclass(kw_only=True)
class SpinRecExplanation(Explanation):
    """A SPINRec explanation: the chosen map plus every candidate path, for drawing.

    Beyond :class:`Explanation` (``scores`` is the chosen candidate's map):

    - ``baseline_users``: int64 [kappa], the training users whose histories were the baselines;
    - ``candidates``: float64 [kappa, n_hist], every path's attribution map over ``items``;
    - ``criterion``: float64 [kappa], each candidate's deletion AUC (lower is better);
    - ``chosen``: index of the chosen candidate (the lowest criterion, first on ties);
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
    alphas_np, weights_np = path_weights(steps, rule)
    j = alphas_np.shape[0] - 1
    first = 0 if weights_np[0] > 0 else 1  # first alpha whose gradient is used
    mid = torch.from_numpy(alphas_np[first:j]).to(x.device, x.dtype)  # [m], alpha < 1
    weights = torch.from_numpy(weights_np).to(x.device, x.dtype)
    m = mid.shape[0]
    diff = (x[:, None, :] - baselines)[:, :, None, :]  # [U, K, 1, n]
    path_rows = baselines[:, :, None, :] + mid[None, None, :, None] * diff  # [U, K, m, n]
    rows = torch.cat([path_rows.reshape(-1, n), x])  # [U K m + U, n]
    row_t = torch.cat([targets.repeat_interleave(k * m), targets])
    probs, grads = probability_gradients(model, rows, row_t, chunk_size)
    cut = u * k * m
    path_p, x_p = probs[:cut].reshape(u, k, m), probs[cut:]  # [U, K, m], [U]
    path_g, x_g = grads[:cut].reshape(u, k, m, n), grads[cut:]  # [U, K, m, n], [U, n]
    parts = [path_p, x_p[:, None, None].expand(u, k, 1)]
    if first == 1:
        base_t = targets.repeat_interleave(k)
        base_p = target_probabilities(model, baselines.reshape(-1, n), base_t, chunk_size)
        parts.insert(0, base_p.reshape(u, k, 1))
    mean_grad = torch.einsum("ukmn,m->ukn", path_g, weights[first:j])
    mean_grad = mean_grad + weights[j] * x_g[:, None, :]
    return PathResult(
        mean_gradient=mean_grad,
        probability=torch.cat(parts, dim=2),
        gradient_at_x=x_g,
    )


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
    ``right`` or ``trapezoid``; ``unobserved``: also score items outside the history (the
    labelled extension); ``chunk_size``: rows per forward/backward chunk; ``batch_users``:
    users integrated together in :meth:`explain_batch`.
    """

    name = "spinrec"

    def __init__(
        self,
        train: sp.csr_matrix,
        kappa: int = 16,
        steps: int = 16,
        rule: str = "right",
        unobserved: bool = False,
        chunk_size: int = 512,
        batch_users: int = 8,
    ) -> None:
        if train is None or not sp.issparse(train):
            raise ReclensError("SPINRec needs the training matrix (CSR) to draw baselines from")
        if int(kappa) < 1:
            raise ReclensError(f"SPINRec needs kappa >= 1 baselines, got {kappa}")
        path_weights(steps, rule)  # validates steps and rule
        self.train = sp.csr_matrix(train, dtype=np.float32)
        self.pool = np.flatnonzero(np.diff(self.train.indptr) > 0).astype(np.int64)
        if self.pool.shape[0] == 0:
            raise ReclensError("SPINRec: the training matrix has no user with an interaction")
        self.kappa = int(kappa)
        self.steps = int(steps)
        self.rule = rule
        self.unobserved = bool(unobserved)
        self.chunk_size = int(chunk_size)
        self.batch_users = max(1, int(batch_users))

    # -- baselines -------------------------------------------------------------------------
    def draw_baselines(
        self, x: np.ndarray, rng: np.random.Generator, max_rounds: int = 100
    ) -> tuple[np.ndarray, np.ndarray]:
        """``kappa`` baseline users int64 [kappa] and their histories float32 [kappa, n_items].

        Drawn uniformly with replacement from training users with at least one item; a draw
        whose history equals ``x`` [n_items] is redrawn.
        """
        target_row = x > 0
        users = self.pool[rng.integers(0, self.pool.shape[0], size=self.kappa)]
        for _ in range(max_rounds):
            dense = self.train[users].toarray()
            same = ((dense > 0) == target_row[None, :]).all(axis=1)
            if not same.any():
                return users, dense
            users = users.copy()
            users[same] = self.pool[rng.integers(0, self.pool.shape[0], size=int(same.sum()))]
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
        if rows.shape[1] != self.train.shape[1]:
            raise ReclensError(
                f"SPINRec: histories have {rows.shape[1]} items, the training matrix "
                f"{self.train.shape[1]}"
            )
        ids = user_ids(users, rows.shape[0])
        tgt = resolve_targets(model, rows, targets)
        out: list[Explanation] = []
        for start in range(0, rows.shape[0], self.batch_users):
            stop = start + self.batch_users
            out.extend(
                self._explain_chunk(model, rows[start:stop], tgt[start:stop], ids[start:stop], seed)
            )
        return out

    def _explain_chunk(
        self,
        model: nn.Module,
        rows: Tensor,
        targets: np.ndarray,
        users: list[int | None],
        seed: int,
    ) -> list[SpinRecExplanation]:
        start = time.perf_counter()
        device = model_device(model)
        x_np = rows.cpu().numpy()
        items, base_users, base_rows = [], [], []
        for i, user in enumerate(users):
            hist = history_items(rows[i])
            if hist.shape[0] == 0:
                raise ReclensError(f"user {user}: cannot explain an empty history")
            b_users, b_dense = self.draw_baselines(x_np[i], user_rng(seed, user))
            items.append(hist)
            base_users.append(b_users)
            base_rows.append(b_dense)
        baselines = torch.from_numpy(np.stack(base_rows)).to(device=device, dtype=rows.dtype)
        t = torch.from_numpy(targets).to(device)
        res = path_gradients(model, rows, baselines, t, self.steps, self.rule, self.chunk_size)
        # x_i * mean_grad_i * (x_i - b_i) on the history items: [U, K, n] -> per user [K, n_u]
        attr = rows[:, None, :] * res.mean_gradient * (rows[:, None, :] - baselines)
        attr_np = attr.double().cpu().numpy()
        maps = [attr_np[i][:, items[i]] for i in range(len(users))]
        p_full = res.probability[:, 0, -1]
        criteria = deletion_aucs(model, rows, targets, items, maps, p_full, self.chunk_size)
        probs = res.probability.double().cpu().numpy()
        alphas, _ = path_weights(self.steps, self.rule)
        grad_x = res.gradient_at_x.double().cpu().numpy() if self.unobserved else None
        per_user = (time.perf_counter() - start) / len(users)
        out = []
        for i, user in enumerate(users):
            chosen = int(np.argmin(criteria[i]))
            unobs_items = unobs_scores = None
            if grad_x is not None:
                unobs_items = np.flatnonzero(x_np[i] <= 0).astype(np.int64)
                unobs_scores = grad_x[i][unobs_items] * (1.0 - x_np[i][unobs_items])
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
                    unobserved_items=unobs_items,
                    unobserved_scores=unobs_scores,
                )
            )
        return out
