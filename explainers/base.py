"""What every explainer returns, and the helpers they share.

An explainer scores each item of one user's history ``x`` (float [n_items], binary in
practice) by its importance for one *target* item's probability under the model's declared
output link (``model.probability``). It sees the model only through the contract in
:mod:`engine.contract`: ``model(x [B, n_items]) -> scores [B, n_items]``, differentiable in
``x``, and ``model.device``; and, where the model declares them, its exact shortcuts:
``score_items`` (for pointwise links, sigmoid and identity, a target's probability depends on
its score only) and the linear first layer (``first_layer`` / ``forward_from_first``). Every
helper here uses them when present (:func:`row_target_probability`) and falls back to
``forward`` otherwise.

The default target is the user's top-1 recommendation outside the history.
"""

from __future__ import annotations

import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import ClassVar

import numpy as np
import torch
from torch import Tensor, nn

from data.errors import ReclensError


@dataclass(kw_only=True)
class Explanation:
    """One explanation: a score per history item for one target.

    ``items``: int64 [n_hist], the history items (ascending item index);
    ``scores``: float64 [n_hist], their attributions (higher = more important for the target);
    ``target``: the explained item; ``target_probability``: its probability (under the model's
    link) for the full history; ``user``: the user's index when known; ``seconds``: wall time
    the explanation took (for batched calls, the batch's time divided by its users).
    """

    explainer: str
    target: int
    items: np.ndarray
    scores: np.ndarray
    target_probability: float
    user: int | None = None
    seconds: float = 0.0

    @property
    def n_history(self) -> int:
        return int(self.items.shape[0])

    def order(self) -> np.ndarray:
        """Positions into ``items`` from most to least important: int64 [n_hist].

        Ties keep ascending item order (a stable sort), so the ordering is deterministic.
        """
        return importance_order(self.scores[None, :])[0]

    def dense(self, n_items: int) -> np.ndarray:
        """Scores scattered into a float64 vector [n_items], zero outside the history."""
        out = np.zeros(n_items, dtype=np.float64)
        out[self.items] = self.scores
        return out


class Explainer:
    """Base class: subclasses set ``name`` and implement :meth:`explain_batch`.

    ``explain_batch`` takes several users' histories at once; the default :meth:`explain`
    calls it for one user. Every explainer is deterministic for a given ``seed`` and user.
    """

    name: ClassVar[str]

    def explain(
        self,
        model: nn.Module,
        x: Tensor | np.ndarray,
        target: int | None = None,
        *,
        user: int | None = None,
        seed: int = 0,
    ) -> Explanation:
        """Explain ``target`` (default: top-1 outside the history) for one history [n_items]."""
        rows = as_rows(x, model)
        if rows.shape[0] != 1:
            raise ReclensError(f"explain takes one history, got {rows.shape[0]} rows")
        targets = None if target is None else [int(target)]
        return self.explain_batch(model, rows, targets, users=[user], seed=seed)[0]

    def explain_batch(
        self,
        model: nn.Module,
        x: Tensor,
        targets: Sequence[int] | None = None,
        *,
        users: Sequence[int | None] | None = None,
        seed: int = 0,
    ) -> list[Explanation]:
        """Explanations for histories ``x`` [U, n_items] and ``targets`` [U] (default top-1)."""
        rows = as_rows(x, model)
        users = user_ids(users, rows.shape[0])
        tgt = resolve_targets(model, rows, targets)
        out = []
        for i in range(rows.shape[0]):
            start = time.perf_counter()
            items = history_items(rows[i])
            if items.shape[0] == 0:
                raise ReclensError(f"user {users[i]}: cannot explain an empty history")
            exp = self._explain_one(model, rows[i], int(tgt[i]), items, users[i], seed)
            exp.seconds = time.perf_counter() - start
            out.append(exp)
        return out

    def _explain_one(
        self,
        model: nn.Module,
        x: Tensor,
        target: int,
        items: np.ndarray,
        user: int | None,
        seed: int,
    ) -> Explanation:  # pragma: no cover - abstract
        """Explain one history ``x`` [n_items] with history ``items`` [n_hist]."""
        raise NotImplementedError


# -- the model's shortcuts -------------------------------------------------------------------
POINTWISE_LINKS: tuple[str, ...] = ("sigmoid", "identity")


def is_pointwise(model: nn.Module) -> bool:
    """Whether a target's probability depends only on its own score (sigmoid or identity link)
    and the model can score a few items (``score_items``)."""
    return getattr(model, "link", None) in POINTWISE_LINKS and callable(
        getattr(model, "score_items", None)
    )


def first_layer_of(model: nn.Module) -> Tensor | None:
    """The model's declared linear first layer ``W`` [n_items, d] (detached), or None."""
    if getattr(model, "training", False):
        return None
    get = getattr(model, "first_layer", None)
    weight = get() if callable(get) else None
    return None if weight is None else weight.detach()


def row_moments(x: Tensor) -> Tensor:
    """``(sum_i x_i, sum_i x_i^2)`` per row [R, 2] of ``x`` [R, n_items] (the contract's)."""
    return torch.stack([x.sum(dim=1), (x * x).sum(dim=1)], dim=1)


def active_first_layer(rows: Tensor, weight: Tensor) -> Tensor:
    """``rows @ weight`` [R, d] for ``rows`` [R, n_items], over the columns some row uses."""
    cols = torch.nonzero(rows.detach().any(dim=0)).flatten()
    return rows[:, cols] @ weight[cols]


def row_target_probability(
    model: nn.Module,
    rows: Tensor,
    targets: Tensor,
    row: Tensor | None = None,
    *,
    dense_first: bool = False,
) -> Tensor:
    """Probabilities ``p_{targets[r]}(rows[row[r]])`` [R] (``row`` default: 0..R-1).

    ``rows`` [Q, n_items]; ``targets``, ``row``: long [R]. Through the first layer when the
    model declares one (over the columns the rows use, or every column with ``dense_first``, as
    gradients in ``rows`` need), else ``score_items`` for pointwise links, else the full forward
    pass. Pointwise links score only the distinct targets; softmax needs every logit.
    """
    weight = first_layer_of(model)
    if weight is not None:
        h = rows @ weight if dense_first else active_first_layer(rows, weight)
        return first_target_probability(model, h, row_moments(rows), targets, row)
    if is_pointwise(model):
        distinct, index = torch.unique(targets, return_inverse=True)
        scores = model.score_items(rows, distinct)
        scores = scores if row is None else scores[row]
        return model.probability(scores.gather(1, index[:, None])).squeeze(1)
    return _pick_probability(model, model(rows), targets, row)


def first_target_probability(
    model: nn.Module, h: Tensor, moments: Tensor, targets: Tensor, row: Tensor | None = None
) -> Tensor:
    """:func:`row_target_probability` from the first layer's output ``h`` [Q, d] and the
    rows' ``moments`` [Q, 2] (a model declaring ``first_layer``)."""
    if is_pointwise(model):
        distinct, index = torch.unique(targets, return_inverse=True)
        scores = model.forward_from_first(h, moments, distinct)
        scores = scores if row is None else scores[row]
        return model.probability(scores.gather(1, index[:, None])).squeeze(1)
    return _pick_probability(model, model.forward_from_first(h, moments), targets, row)


def _pick_probability(
    model: nn.Module, scores: Tensor, targets: Tensor, row: Tensor | None
) -> Tensor:
    """``probability(scores)[row[r], targets[r]]`` [R] from full scores [Q, n_items]."""
    probability = model.probability(scores)
    if row is None:
        return probability.gather(1, targets[:, None]).squeeze(1)
    return probability[row, targets]


# -- helpers ---------------------------------------------------------------------------------
@contextmanager
def eval_mode(model: nn.Module) -> Iterator[nn.Module]:
    """Put ``model`` in eval mode (no dropout, fixed normalisation), restoring it after.

    When no module of ``model`` is in training mode there is nothing to switch (or restore).
    """
    if not any(m.training for m in model.modules()):
        yield model
        return
    was_training = model.training
    model.eval()
    try:
        yield model
    finally:
        model.train(was_training)


def model_device(model: nn.Module) -> torch.device:
    """The model's device (its ``device`` property, else its first parameter's, else CPU)."""
    device = getattr(model, "device", None)
    if isinstance(device, torch.device):
        return device
    for tensor in list(model.parameters()) + list(model.buffers()):
        return tensor.device
    return torch.device("cpu")


def as_rows(x: Tensor | np.ndarray, model: nn.Module) -> Tensor:
    """Histories as a float32 tensor [U, n_items] on the model's device (a vector gives U=1)."""
    if isinstance(x, np.ndarray):
        x = torch.from_numpy(np.asarray(x, dtype=np.float32))
    if not isinstance(x, Tensor):
        raise ReclensError(f"a history must be a tensor or an array, got {type(x).__name__}")
    if x.dim() == 1:
        x = x[None, :]
    if x.dim() != 2:
        raise ReclensError(f"histories must be [n_items] or [users, n_items], got {tuple(x.shape)}")
    n_items = getattr(model, "n_items", None)
    if n_items is not None and x.shape[1] != n_items:
        raise ReclensError(f"a history has {x.shape[1]} items but the model has {n_items}")
    return x.detach().to(device=model_device(model), dtype=torch.float32)


def history_items(x: Tensor) -> np.ndarray:
    """Indices of the items present in one history ``x`` [n_items]: int64 [n_hist], ascending."""
    return torch.nonzero(x > 0).flatten().cpu().numpy().astype(np.int64)


@torch.no_grad()
def target_probabilities(
    model: nn.Module, rows: Tensor, targets: Tensor, chunk_size: int = 512
) -> Tensor:
    """Target probabilities [R] of histories ``rows`` [R, n_items] under the model's link.

    ``targets``: long [R], one target per row. The forward pass runs in chunks of
    ``chunk_size`` rows, in eval mode.
    """
    probs = []
    with eval_mode(model):
        for start in range(0, rows.shape[0], chunk_size):
            stop = start + chunk_size
            probs.append(row_target_probability(model, rows[start:stop], targets[start:stop]))
    return torch.cat(probs) if probs else rows.new_zeros(0)


def probability_gradients(
    model: nn.Module, rows: Tensor, targets: Tensor, chunk_size: int = 512
) -> tuple[Tensor, Tensor]:
    """Target probabilities [R] and their gradients [R, n_items] at ``rows`` [R, n_items].

    ``targets``: long [R]. Each row's gradient is d p_target(row) / d row, computed with one
    backward pass per chunk of ``chunk_size`` rows (rows are independent in eval mode).
    """
    with eval_mode(model):
        return _probability_gradients(model, rows, targets, chunk_size)


def _probability_gradients(
    model: nn.Module, rows: Tensor, targets: Tensor, chunk_size: int
) -> tuple[Tensor, Tensor]:
    """:func:`probability_gradients` for a model already in eval mode."""
    if rows.shape[0] == 0:
        return rows.new_zeros(0), rows.new_zeros((0, rows.shape[1]))
    probs: Tensor | None = None
    single = rows.shape[0] <= chunk_size  # one chunk: its gradient is returned as it is
    grads = rows if single else torch.empty_like(rows)  # (placeholder when single)
    with torch.enable_grad():
        for start in range(0, rows.shape[0], chunk_size):
            stop = start + chunk_size
            # a detached view is a fresh leaf: no copy of the rows is needed (except for
            # tensors made in inference mode, which cannot require gradients)
            inp = rows[start:stop].detach()
            if inp.is_inference():
                inp = inp.clone()
            inp.requires_grad_(True)
            p_t = row_target_probability(model, inp, targets[start:stop], dense_first=True)
            (g,) = torch.autograd.grad(p_t.sum(), inp, allow_unused=True)
            if probs is None:
                probs = p_t.new_empty(rows.shape[0])
            probs[start:stop] = p_t.detach()
            if g is None:
                g = torch.zeros_like(rows[start:stop])
            if single:
                grads = g
            else:
                grads[start:stop] = g
    assert probs is not None
    return probs, grads


def gather_probabilities(
    model: nn.Module,
    rows: Tensor,
    row_index: np.ndarray,
    targets: np.ndarray,
    chunk_size: int = 512,
) -> Tensor:
    """Probabilities ``p_{targets[r]}(rows[row_index[r]])`` for requests ``r``: float [R].

    ``rows``: distinct histories [Q, n_items]; ``row_index`` / ``targets``: int64 [R]. Each
    row goes through the model once (one no-grad forward pass in chunks of ``chunk_size``
    rows, in eval mode), however many requests (targets) refer to it.
    """
    with eval_mode(model):
        return _gather_probabilities(model, rows, row_index, targets, chunk_size)


@torch.inference_mode()
def _gather_probabilities(
    model: nn.Module,
    rows: Tensor,
    row_index: np.ndarray,
    targets: np.ndarray,
    chunk_size: int,
) -> Tensor:
    """:func:`gather_probabilities` for a model already in eval mode."""
    row_index = np.asarray(row_index, dtype=np.int64)
    order = np.argsort(row_index, kind="stable")
    sorted_rows = row_index[order]
    out: Tensor | None = None
    device = rows.device
    tgt = np.asarray(targets, dtype=np.int64)
    for start in range(0, rows.shape[0], chunk_size):
        stop = min(start + chunk_size, rows.shape[0])
        lo, hi = np.searchsorted(sorted_rows, [start, stop])
        if lo == hi:
            continue
        req = torch.from_numpy(order[lo:hi]).to(device)
        r = torch.from_numpy(sorted_rows[lo:hi] - start).to(device)
        t = torch.from_numpy(tgt[order[lo:hi]]).to(device)
        p = row_target_probability(model, rows[start:stop], t, r)
        if out is None:
            out = p.new_empty(row_index.shape[0])
        out[req] = p
    return rows.new_zeros(0) if out is None else out


@torch.no_grad()
def top1_outside(model: nn.Module, rows: Tensor, chunk_size: int = 512) -> np.ndarray:
    """Each history's top-1 item among items not in it: int64 [U] for ``rows`` [U, n_items]."""
    out = []
    with eval_mode(model):
        for start in range(0, rows.shape[0], chunk_size):
            chunk = rows[start : start + chunk_size]
            s = model(chunk).masked_fill(chunk > 0, float("-inf"))
            out.append(s.argmax(dim=1))
    if not out:
        return np.zeros(0, dtype=np.int64)
    return torch.cat(out).cpu().numpy().astype(np.int64)


def resolve_targets(model: nn.Module, rows: Tensor, targets: Sequence[int] | None) -> np.ndarray:
    """Targets int64 [U]: the given ones (checked) or each history's top-1 outside it."""
    if targets is None:
        return top1_outside(model, rows)
    tgt = np.asarray(list(targets), dtype=np.int64)
    if tgt.shape != (rows.shape[0],):
        raise ReclensError(f"got {tgt.shape[0]} targets for {rows.shape[0]} histories")
    bad = (tgt < 0) | (tgt >= rows.shape[1])
    if bad.any():
        raise ReclensError(f"target item {int(tgt[bad][0])} is out of range 0..{rows.shape[1] - 1}")
    return tgt


def importance_order(scores: np.ndarray) -> np.ndarray:
    """Per row, positions from most to least important: int64 [M, n] for ``scores`` [M, n].

    A stable sort of ``-scores``: ties keep ascending position order.
    """
    return np.argsort(-np.asarray(scores, dtype=np.float64), axis=1, kind="stable").astype(np.int64)


def user_rng(seed: int, user: int | None) -> np.random.Generator:
    """A numpy generator seeded by ``(seed, user)``, so each user's draws are reproducible."""
    return np.random.default_rng([int(seed) & 0xFFFFFFFF, 0 if user is None else int(user) + 1])


def user_ids(users: Sequence[int | None] | None, n: int) -> list[int | None]:
    """``n`` user ids (``None`` where unknown), checked against the number of histories."""
    if users is None:
        return [None] * n
    users = list(users)
    if len(users) != n:
        raise ReclensError(f"got {len(users)} user ids for {n} histories")
    return [None if u is None else int(u) for u in users]
