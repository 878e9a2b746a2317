"""The model contract every recommender follows.

A recommender is a torch module mapping a batch of user interaction vectors
``x`` (float, [batch, n_items], values in [0, 1]) to item scores [batch, n_items],
differentiable in ``x``. Because the user side is always computed from ``x``, any history,
including an edited what-if one, is scorable without retraining, and every model can be
explained by path integration over ``x``.

Each model declares:

- ``link``: how scores become probabilities for explanation (``softmax`` over items for
  multinomial models, ``sigmoid`` for pointwise ones, ``identity`` for linear ones);
- ``item_embeddings()`` [n_items, d] and ``user_embeddings(x)`` [batch, d] for projection;
- either ``fit(train)`` (closed form, ``trainable = False``) or ``loss(x, ctx)`` (gradient
  training by :mod:`engine.train`);
- its hyper-parameters, stated once: the constructor's keyword arguments after ``n_items``,
  each with its default (see :class:`Recommender`).

Two optional shortcuts, exact, which explainers use when a model declares them (and fall back
to ``forward`` otherwise):

- ``score_items(x, items)``: the scores of a few items only, ``forward(x)[:, items]``, cheaper
  where a model can score an item on its own (a dot product, one item's towers);
- a *linear first layer*: ``first_layer()`` returns ``W`` [n_items, d] when, in eval mode,
  the model reads ``x`` only through ``h = x W`` and the row moments
  ``(sum_i x_i, sum_i x_i^2)`` [batch, 2] (:func:`row_moments`), and
  ``forward_from_first(h, moments, items)`` continues from there. Along a path
  ``b + alpha (x - b)`` then ``h = W b + alpha W (x - b)``: the first layer of every path point
  costs two products per baseline, and gradients reach ``x`` through ``W``.

:func:`engine.conformance.check_recommender` checks all of this for a model.
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass
from typing import Any, ClassVar, Literal

import scipy.sparse as sp
import torch
from torch import Tensor, nn

Link = Literal["softmax", "sigmoid", "identity"]


@dataclass
class LossContext:
    """What a model's ``loss`` may need beyond the batch.

    ``generator``: seeded torch generator on the model's device for sampling (negatives,
    dropout masks are drawn through torch's global seed); ``step``: number of optimiser steps
    taken so far; ``total_steps``: planned steps over all epochs (for annealing);
    ``train``: the whole training matrix [n_users, n_items] (CSR) for models that sample
    from it; ``users``: the batch's user indices [batch] (long tensor).
    """

    generator: torch.Generator
    step: int
    total_steps: int
    train: sp.csr_matrix
    users: Tensor


class Recommender(nn.Module):
    """Base class: subclasses set ``name``, ``link``, ``trainable`` and implement ``forward``.

    ``default_train`` holds the model's training settings over :class:`engine.train.TrainConfig`'s
    defaults (none for closed-form models).

    A subclass's hyper-parameters are its constructor's keyword arguments after ``n_items``,
    each with a default (:meth:`hyper_parameters` reads them from the signature), and its
    constructor passes the values it was given on to ``Recommender.__init__``, which keeps them
    as ``hparams``: a run stores them and rebuilds the model as
    ``cls(n_items=n_items, **hparams)`` before loading its state dict.
    """

    name: ClassVar[str]
    link: ClassVar[Link]
    trainable: ClassVar[bool] = True
    default_train: ClassVar[dict[str, Any]] = {}

    def __init__(self, n_items: int, **hparams: Any) -> None:
        super().__init__()
        self.n_items = n_items
        self.hparams = hparams

    @classmethod
    def hyper_parameters(cls) -> dict[str, Any]:
        """The constructor's keyword arguments after ``n_items`` and their defaults, in order."""
        parameters = inspect.signature(cls.__init__).parameters.values()
        return {p.name: p.default for p in parameters if p.name not in ("self", "n_items")}

    # -- scoring ---------------------------------------------------------------------------
    def forward(self, x: Tensor) -> Tensor:  # pragma: no cover - abstract
        """Scores [batch, n_items] for histories ``x`` [batch, n_items]."""
        raise NotImplementedError

    def score_items(self, x: Tensor, items: Tensor) -> Tensor:
        """Scores [batch, m] of ``items`` (long [m]) for histories ``x`` [batch, n_items].

        Equal to ``forward(x)[:, items]`` (the default); with a declared first layer, in eval
        mode, :meth:`forward_from_first` scores only ``items``.
        """
        weight = self.first_layer()
        if weight is None or self.training:
            return self(x)[:, items]
        return self.forward_from_first(x @ weight, row_moments(x), items)

    def first_layer(self) -> Tensor | None:
        """``W`` [n_items, d] of a first layer linear in ``x``, or None (the default).

        Declared only when, in eval mode, ``forward(x)`` equals
        ``forward_from_first(x @ W, row_moments(x))``.
        """
        return None

    def forward_from_first(
        self, h: Tensor, moments: Tensor, items: Tensor | None = None
    ) -> Tensor:  # pragma: no cover - abstract
        """Scores [batch, n_items] (or [batch, m] of ``items``, long [m]) from the first
        layer's output ``h = x W`` [batch, d] and ``moments`` [batch, 2] (eval mode)."""
        raise NotImplementedError

    def probability(self, scores: Tensor) -> Tensor:
        """Apply the declared output link to ``scores`` [batch, n_items]."""
        if self.link == "softmax":
            return torch.softmax(scores, dim=-1)
        if self.link == "sigmoid":
            return torch.sigmoid(scores)
        return scores

    @property
    def device(self) -> torch.device:
        for tensor in list(self.parameters()) + list(self.buffers()):
            return tensor.device
        return torch.device("cpu")

    # -- embeddings ------------------------------------------------------------------------
    def item_embeddings(self) -> Tensor | None:
        """Learned item factors [n_items, d], or None for models without them."""
        return None

    def user_embeddings(self, x: Tensor) -> Tensor | None:
        """User factors [batch, d] computed from histories ``x``, or None."""
        return None

    # -- fitting ---------------------------------------------------------------------------
    def fit(self, train: sp.csr_matrix) -> None:  # pragma: no cover - abstract
        """Closed-form fit on the training matrix [n_users, n_items] (non-trainable models)."""
        raise NotImplementedError

    def loss(self, x: Tensor, ctx: LossContext) -> Tensor:  # pragma: no cover - abstract
        """Training loss (scalar) for a batch of histories ``x`` [batch, n_items]."""
        raise NotImplementedError


def row_moments(x: Tensor) -> Tensor:
    """``(sum_i x_i, sum_i x_i^2)`` per row: [batch, 2] for histories ``x`` [batch, n_items]."""
    return torch.stack([x.sum(dim=1), (x * x).sum(dim=1)], dim=1)
