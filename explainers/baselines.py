"""Baseline explainers SPINRec is compared with. Each scores every history item.

- ``ig_zero``: Integrated Gradients from the empty history (right Riemann sum, J = 16);
- ``grad_x_input``: ``x_i * d p_t / d x_i`` at the history;
- ``cosine`` / ``jaccard``: similarity of each history item's column of the training matrix
  (the users who have it) to the target's column;
- ``lime``: perturbed histories (each drops a uniformly drawn number of random items), an
  exponential kernel on the cosine distance to the full history (width 0.25), weighted ridge
  regression (alpha 1) of the target probability on the kept-item indicators;
- ``kernel_shap``: coalitions sampled from the Shapley kernel (paired with their complements;
  all coalitions when there are few enough), absent items removed, weighted least squares
  constrained to efficiency (scores sum to ``p_t(x) - p_t(empty)``);
- ``leave_one_out``: ``p_t(x) - p_t(x without i)``;
- ``random``: uniform random scores, the floor every explainer must beat.

Gradient explainers batch several users per pass; the others batch all of one user's
perturbed histories into one forward pass. Random draws come from a generator seeded by
``(seed, user)``.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from math import comb

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
    probability_gradients,
    resolve_targets,
    target_probabilities,
    user_ids,
    user_rng,
)
from explainers.spinrec import path_gradients


class _GradientExplainer(Explainer):
    """Shared batching for explainers computed from gradients of all users at once."""

    def __init__(self, chunk_size: int = 512, batch_users: int = 32) -> None:
        self.chunk_size = int(chunk_size)
        self.batch_users = max(1, int(batch_users))

    def explain_batch(
        self,
        model: nn.Module,
        x: Tensor,
        targets: Sequence[int] | None = None,
        *,
        users: Sequence[int | None] | None = None,
        seed: int = 0,
    ) -> list[Explanation]:
        """Explanations for histories ``x`` [U, n_items], ``batch_users`` per pass."""
        rows = as_rows(x, model)
        ids = user_ids(users, rows.shape[0])
        tgt = resolve_targets(model, rows, targets)
        out: list[Explanation] = []
        for start in range(0, rows.shape[0], self.batch_users):
            t0 = time.perf_counter()
            chunk = rows[start : start + self.batch_users]
            t = torch.from_numpy(tgt[start : start + self.batch_users]).to(chunk.device)
            items = [history_items(r) for r in chunk]
            for i, hist in enumerate(items):
                if hist.shape[0] == 0:
                    raise ReclensError(f"user {ids[start + i]}: cannot explain an empty history")
            probs, attr = self._attributions(model, chunk, t)
            attr_np = attr.double().cpu().numpy()
            per_user = (time.perf_counter() - t0) / chunk.shape[0]
            for i, hist in enumerate(items):
                out.append(
                    Explanation(
                        explainer=self.name,
                        target=int(t[i]),
                        items=hist,
                        scores=attr_np[i][hist],
                        target_probability=float(probs[i]),
                        user=ids[start + i],
                        seconds=per_user,
                    )
                )
        return out

    def _attributions(
        self, model: nn.Module, x: Tensor, targets: Tensor
    ) -> tuple[Tensor, Tensor]:  # pragma: no cover - abstract
        """Target probabilities [U] and dense attributions [U, n_items] for ``x`` [U, n]."""
        raise NotImplementedError


class IntegratedGradientsZero(_GradientExplainer):
    """Integrated Gradients from the zero (empty) history: ``x_i * mean_grad_i * x_i``."""

    name = "ig_zero"

    def __init__(
        self, steps: int = 16, rule: str = "right", chunk_size: int = 512, batch_users: int = 16
    ) -> None:
        super().__init__(chunk_size, batch_users)
        self.steps = int(steps)
        self.rule = rule

    def _attributions(self, model: nn.Module, x: Tensor, targets: Tensor) -> tuple[Tensor, Tensor]:
        base = torch.zeros_like(x)[:, None, :]
        res = path_gradients(model, x, base, targets, self.steps, self.rule, self.chunk_size)
        return res.probability[:, 0, -1], x * res.mean_gradient[:, 0, :] * x


class GradientXInput(_GradientExplainer):
    """Gradient times input: ``x_i * d p_t / d x_i`` at the history."""

    name = "grad_x_input"

    def _attributions(self, model: nn.Module, x: Tensor, targets: Tensor) -> tuple[Tensor, Tensor]:
        probs, grads = probability_gradients(model, x, targets, self.chunk_size)
        return probs, grads * x


class _PerUserExplainer(Explainer):
    """Explainers computed one user at a time (all of that user's probes in one pass)."""

    def __init__(self, chunk_size: int = 512) -> None:
        self.chunk_size = int(chunk_size)

    def _probabilities(self, model: nn.Module, rows: Tensor, target: int) -> np.ndarray:
        """Target probabilities float64 [R] of histories ``rows`` [R, n_items]."""
        t = torch.full((rows.shape[0],), int(target), dtype=torch.long, device=rows.device)
        return target_probabilities(model, rows, t, self.chunk_size).double().cpu().numpy()


def _masked(x: Tensor, items: np.ndarray, keep: np.ndarray) -> Tensor:
    """Histories [R, n_items]: ``x`` with ``items`` kept where ``keep`` (bool [R, n_hist])."""
    rows = x.expand(keep.shape[0], -1).clone()
    idx = torch.from_numpy(items).to(x.device)
    rows[:, idx] = x[idx] * torch.from_numpy(keep).to(device=x.device, dtype=x.dtype)
    return rows


class LeaveOneOut(_PerUserExplainer):
    """Score change when each history item alone is removed: ``p_t(x) - p_t(x - e_i)``."""

    name = "leave_one_out"

    def _explain_one(
        self,
        model: nn.Module,
        x: Tensor,
        target: int,
        items: np.ndarray,
        user: int | None,
        seed: int,
    ) -> Explanation:
        n = items.shape[0]
        keep = np.vstack([np.ones((1, n), dtype=bool), ~np.eye(n, dtype=bool)])
        probs = self._probabilities(model, _masked(x, items, keep), target)
        return Explanation(
            explainer=self.name,
            target=target,
            items=items,
            scores=probs[0] - probs[1:],
            target_probability=float(probs[0]),
            user=user,
        )


class RandomExplainer(_PerUserExplainer):
    """Uniform random scores in [0, 1), seeded by ``(seed, user)``; one forward pass for p_t."""

    name = "random"

    def _explain_one(
        self,
        model: nn.Module,
        x: Tensor,
        target: int,
        items: np.ndarray,
        user: int | None,
        seed: int,
    ) -> Explanation:
        rng = user_rng(seed, user)
        probs = self._probabilities(model, x[None, :], target)
        return Explanation(
            explainer=self.name,
            target=target,
            items=items,
            scores=rng.random(items.shape[0]),
            target_probability=float(probs[0]),
            user=user,
        )


class Lime(_PerUserExplainer):
    """LIME on history items: ``n_samples`` perturbed histories, weighted ridge fit.

    Sample 0 is the full history; each other sample removes ``r`` items, ``r`` uniform in
    1..n, chosen at random. Weights: ``exp(-d^2 / width^2)`` with ``d = 1 - sqrt(kept / n)``
    (the cosine distance to the full history). The scores are the ridge (``alpha``)
    coefficients of the kept-item indicators, fitted with an intercept.
    """

    name = "lime"

    def __init__(
        self,
        n_samples: int = 150,
        kernel_width: float = 0.25,
        alpha: float = 1.0,
        chunk_size: int = 512,
    ) -> None:
        super().__init__(chunk_size)
        if int(n_samples) < 2:
            raise ReclensError(f"LIME needs at least 2 samples, got {n_samples}")
        self.n_samples = int(n_samples)
        self.kernel_width = float(kernel_width)
        self.alpha = float(alpha)

    def _explain_one(
        self,
        model: nn.Module,
        x: Tensor,
        target: int,
        items: np.ndarray,
        user: int | None,
        seed: int,
    ) -> Explanation:
        rng = user_rng(seed, user)
        n = items.shape[0]
        s = self.n_samples
        n_remove = rng.integers(1, n + 1, size=s - 1)
        order = np.argsort(rng.random((s - 1, n)), axis=1)
        pos = np.empty_like(order)
        np.put_along_axis(pos, order, np.arange(n)[None, :], axis=1)
        keep = np.vstack([np.ones((1, n), dtype=bool), pos >= n_remove[:, None]])
        probs = self._probabilities(model, _masked(x, items, keep), target)
        z = keep.astype(np.float64)
        distance = 1.0 - np.sqrt(z.sum(axis=1) / n)
        weights = np.exp(-(distance**2) / self.kernel_width**2)
        coef = weighted_ridge(z, probs, weights, self.alpha)
        return Explanation(
            explainer=self.name,
            target=target,
            items=items,
            scores=coef,
            target_probability=float(probs[0]),
            user=user,
        )


def weighted_ridge(z: np.ndarray, y: np.ndarray, w: np.ndarray, alpha: float) -> np.ndarray:
    """Coefficients [d] of ridge regression with intercept of ``y`` [S] on ``z`` [S, d].

    Minimises ``sum_s w_s (y_s - c - z_s b)^2 + alpha |b|^2`` (the intercept ``c`` is not
    penalised), solving the primal or the dual system, whichever is smaller.
    """
    w = w / w.sum()
    zc = z - w @ z
    yc = y - w @ y
    sw = np.sqrt(w)[:, None]
    a, b = sw * zc, sw[:, 0] * yc
    if a.shape[1] <= a.shape[0]:
        return np.linalg.solve(a.T @ a + alpha * np.eye(a.shape[1]), a.T @ b)
    return a.T @ np.linalg.solve(a @ a.T + alpha * np.eye(a.shape[0]), b)


class KernelShap(_PerUserExplainer):
    """Kernel SHAP over history items, absent items removed from the history.

    With ``n`` items, all ``2^n - 2`` proper coalitions are used (with exact Shapley kernel
    weights) when that is at most ``n_samples``; otherwise ``n_samples`` coalitions are
    sampled, half drawn by size ``s`` with probability ``(n - 1) / (s (n - s))`` then uniformly
    among those of that size, half their complements, all weighted equally. The scores solve a
    weighted least squares fit constrained to sum to ``p_t(x) - p_t(empty)``, with a tiny ridge
    (1e-6 of the mean diagonal) so it is solvable when there are fewer coalitions than items.
    """

    name = "kernel_shap"

    def __init__(self, n_samples: int = 150, chunk_size: int = 512) -> None:
        super().__init__(chunk_size)
        if int(n_samples) < 2:
            raise ReclensError(f"Kernel SHAP needs at least 2 samples, got {n_samples}")
        self.n_samples = int(n_samples)

    def coalitions(self, n: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        """Coalitions bool [S, n] (proper, non-empty) and their regression weights [S]."""
        if n < 2:
            return np.zeros((0, n), dtype=bool), np.zeros(0)
        sizes = np.arange(1, n)
        kernel = (n - 1) / (sizes * (n - sizes))
        if n <= 20 and 2**n - 2 <= self.n_samples:
            codes = np.arange(1, 2**n - 1)
            z = ((codes[:, None] >> np.arange(n)[None, :]) & 1).astype(bool)
            size = z.sum(axis=1)
            # Shapley kernel weight per coalition: (n - 1) / (C(n, s) s (n - s))
            binom = np.array([comb(n, int(k)) for k in size], dtype=np.float64)
            return z, (n - 1) / (binom * size * (n - size))
        half = (self.n_samples + 1) // 2
        size = rng.choice(sizes, size=half, p=kernel / kernel.sum())
        order = np.argsort(rng.random((half, n)), axis=1)
        pos = np.empty_like(order)
        np.put_along_axis(pos, order, np.arange(n)[None, :], axis=1)
        z = pos < size[:, None]
        z = np.vstack([z, ~z])[: self.n_samples]
        return z, np.ones(z.shape[0])

    def _explain_one(
        self,
        model: nn.Module,
        x: Tensor,
        target: int,
        items: np.ndarray,
        user: int | None,
        seed: int,
    ) -> Explanation:
        rng = user_rng(seed, user)
        n = items.shape[0]
        z, w = self.coalitions(n, rng)
        keep = np.vstack([np.ones((1, n), dtype=bool), np.zeros((1, n), dtype=bool), z])
        probs = self._probabilities(model, _masked(x, items, keep), target)
        p_full, p_empty, y = probs[0], probs[1], probs[2:] - probs[1]
        scores = constrained_shap(z.astype(np.float64), y, w, p_full - p_empty)
        return Explanation(
            explainer=self.name,
            target=target,
            items=items,
            scores=scores,
            target_probability=float(p_full),
            user=user,
        )


def constrained_shap(z: np.ndarray, y: np.ndarray, w: np.ndarray, total: float) -> np.ndarray:
    """Scores [n] minimising ``sum_s w_s (y_s - z_s phi)^2 + eps |phi|^2`` s.t. ``sum phi = total``.

    ``z``: coalitions float [S, n]; ``y``: ``v(z) - v(empty)`` [S]; ``w``: weights [S]. Solved
    through its KKT system; with no coalitions the total is shared equally.
    """
    n = z.shape[1]
    if z.shape[0] == 0 or n == 1:
        return np.full(n, total / n)
    w = w / w.sum()
    gram = (z * w[:, None]).T @ z
    eps = 1e-6 * max(float(np.trace(gram)) / n, 1e-12)
    kkt = np.zeros((n + 1, n + 1))
    kkt[:n, :n] = gram + eps * np.eye(n)
    kkt[:n, n] = kkt[n, :n] = 1.0
    rhs = np.concatenate([(z * w[:, None]).T @ y, [total]])
    return np.linalg.solve(kkt, rhs)[:n]


class _Similarity(_PerUserExplainer):
    """Item-to-target similarity over the columns of the training matrix ``train``."""

    def __init__(self, train: sp.csr_matrix, chunk_size: int = 512) -> None:
        super().__init__(chunk_size)
        if train is None or not sp.issparse(train):
            raise ReclensError(f"{self.name} needs the training matrix (CSR)")
        binary = sp.csr_matrix(train, dtype=np.float32, copy=True)  # never write into train
        binary.data[:] = 1.0
        self.train = binary
        self.columns = sp.csc_matrix(binary)
        self.counts = np.asarray(binary.sum(axis=0)).ravel().astype(np.float64)  # [n_items]

    def cooccurrence(self, target: int) -> np.ndarray:
        """Users having both the target and each item: float64 [n_items]."""
        col = self.columns[:, target]
        users = col.indices
        return np.asarray(self.train[users].sum(axis=0)).ravel().astype(np.float64)

    def _explain_one(
        self,
        model: nn.Module,
        x: Tensor,
        target: int,
        items: np.ndarray,
        user: int | None,
        seed: int,
    ) -> Explanation:
        if x.shape[0] != self.train.shape[1]:
            raise ReclensError(
                f"{self.name}: histories have {x.shape[0]} items, the training matrix "
                f"{self.train.shape[1]}"
            )
        co = self.cooccurrence(target)[items]
        scores = self._similarity(co, self.counts[items], self.counts[target])
        probs = self._probabilities(model, x[None, :], target)
        return Explanation(
            explainer=self.name,
            target=target,
            items=items,
            scores=scores,
            target_probability=float(probs[0]),
            user=user,
        )

    def _similarity(
        self, co: np.ndarray, n_item: np.ndarray, n_target: float
    ) -> np.ndarray:  # pragma: no cover - abstract
        raise NotImplementedError


class Cosine(_Similarity):
    """``|U_i & U_t| / sqrt(|U_i| |U_t|)`` over training users (0 when a column is empty)."""

    name = "cosine"

    def _similarity(self, co: np.ndarray, n_item: np.ndarray, n_target: float) -> np.ndarray:
        denom = np.sqrt(n_item * n_target)
        return np.divide(co, denom, out=np.zeros_like(co), where=denom > 0)


class Jaccard(_Similarity):
    """``|U_i & U_t| / |U_i | U_t|`` over training users (0 when both columns are empty)."""

    name = "jaccard"

    def _similarity(self, co: np.ndarray, n_item: np.ndarray, n_target: float) -> np.ndarray:
        denom = n_item + n_target - co
        return np.divide(co, denom, out=np.zeros_like(co), where=denom > 0)


__all__ = [
    "Cosine",
    "GradientXInput",
    "IntegratedGradientsZero",
    "Jaccard",
    "KernelShap",
    "LeaveOneOut",
    "Lime",
    "RandomExplainer",
    "constrained_shap",
    "weighted_ridge",
]
