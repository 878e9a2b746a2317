"""A reusable check that a recommender keeps :mod:`engine.contract`.

In the spirit of scikit-learn's ``check_estimator``, :func:`check_recommender` builds the model
with its default hyper-parameters (through :func:`engine.registry.create` when the class is
registered, as runs are rebuilt), fits it briefly on a tiny random binary split
(:func:`tiny_split`) and checks, in this order:

1. ``declaration``: ``name`` is a string, ``link`` one of softmax, sigmoid and identity,
   ``trainable`` a bool, ``default_train`` valid training settings, and every constructor
   argument after ``n_items`` a keyword argument with a default (the hyper-parameters);
2. ``hparams``: a model built with the defaults records exactly them as ``hparams``;
3. ``fit``: one epoch of :func:`engine.train.fit` (the closed-form fit for non-trainable
   models) runs, with a finite loss, and leaves the model in eval mode;
4. ``scores``: histories [batch, n_items] get finite scores [batch, n_items] and finite
   probabilities through the link;
5. ``deterministic``: scoring twice in eval mode gives identical scores;
6. ``batch``: a history scores the same alone as in a batch (up to float rounding);
7. ``gradient``: the gradient of the (weighted) probabilities reaches ``x`` and is finite, and
   it is non-zero somewhere when the scores depend on ``x`` (pop's do not);
8. ``embeddings``: ``item_embeddings()`` [n_items, d] and ``user_embeddings(x)`` [batch, d'],
   finite, where not None;
9. ``round trip``: the model rebuilt from its ``hparams`` after a JSON round trip (as a run's
   ``config.json`` holds them) records the same ``hparams`` and, given the state dict, scores
   identically;
10. ``shortcuts``: on random sparse histories, ``score_items(x, items)`` equals
    ``forward(x)[:, items]`` and, where a first layer ``W`` is declared, ``forward_from_first``
    of ``h = x W`` (summed from the rows of ``W`` at each history's items, as explainers build
    it) and :func:`engine.contract.row_moments` equals ``forward(x)``, for all items and for a
    few, to 1e-6 relative to the largest score.

A failed check raises :class:`AssertionError` as ``model <name>: <check>: <what went wrong>``.
"""

from __future__ import annotations

import contextlib
import inspect
import json
import math
from collections.abc import Iterator
from typing import Any, get_args

import numpy as np
import scipy.sparse as sp
import torch
from torch import Tensor

from data.errors import ReclensError
from data.splits import Split
from engine import registry
from engine.contract import Link, Recommender, row_moments
from engine.train import TrainConfig, config_for, fit

LINKS: tuple[str, ...] = get_args(Link)
BATCH = 8  # histories scored by the checks
SHORTCUT_RTOL = 1e-6  # shortcuts against forward, relative to the largest score


def check_recommender(
    model: str | type[Recommender], n_items: int = 24, n_users: int = 32, seed: int = 0
) -> None:
    """Check the model registered as ``model`` (or the class ``model``) against the contract.

    Runs on the CPU in a few hundred milliseconds for the registered models; torch's global
    random state is restored afterwards. Raises :class:`AssertionError` naming the failed
    check (see the module docstring).
    """
    cls = registry.model_class(model) if isinstance(model, str) else model
    label = getattr(cls, "name", getattr(cls, "__name__", repr(cls)))
    split = tiny_split(n_items, n_users, seed)
    x = torch.from_numpy(split.train[:BATCH].toarray())
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        with _checking(label, "declaration"):
            _check_declaration(cls)
        with _checking(label, "hparams"):
            recommender = _build(cls, n_items, {})
            defaults = cls.hyper_parameters()
            _require(
                recommender.hparams == defaults,
                f"built with the defaults {defaults}, it records {recommender.hparams}",
            )
        with _checking(label, "fit"):
            _check_fit(recommender, split, seed)
        with _checking(label, "scores"):
            _check_scores(recommender, x)
        with _checking(label, "deterministic"), torch.no_grad():
            _require(torch.equal(recommender(x), recommender(x)), "two scorings differ")
        with _checking(label, "batch"), torch.no_grad():
            _require(
                torch.allclose(recommender(x[:1]), recommender(x)[:1], rtol=1e-4, atol=1e-5),
                "a history scores differently alone than in a batch",
            )
        with _checking(label, "gradient"):
            _check_gradient(recommender, x)
        with _checking(label, "embeddings"):
            _check_embeddings(recommender, x)
        with _checking(label, "round trip"):
            _check_round_trip(cls, recommender, x)
        with _checking(label, "shortcuts"):
            _check_shortcuts(recommender, seed)


def tiny_split(n_items: int = 24, n_users: int = 32, seed: int = 0) -> Split:
    """A random binary split [n_users, n_items], every user a fitting user.

    Each user likes about a quarter of the items and at least four; one of them is held out
    as the user's validation item, the rest is the training history. The test part is empty.
    """
    if n_items < 8 or n_users < 2:
        raise ReclensError(f"a tiny split needs 8 items and 2 users, got {n_items}, {n_users}")
    rng = np.random.default_rng(seed)
    liked = rng.random((n_users, n_items)) < 0.25
    four = np.argsort(rng.random((n_users, n_items)), axis=1)[:, :4]
    liked[np.arange(n_users)[:, None], four] = True
    held = np.argmax(liked * rng.random(liked.shape), axis=1)  # a random liked item per user
    valid = np.zeros_like(liked)
    valid[np.arange(n_users), held] = True
    return Split(
        train=sp.csr_matrix((liked & ~valid).astype(np.float32)),
        valid=sp.csr_matrix(valid.astype(np.float32)),
        test=sp.csr_matrix((n_users, n_items), dtype=np.float32),
        protocol="random",
        seed=seed,
        ratios=(0.8, 0.2, 0.0),
        fit_users=np.arange(n_users, dtype=np.int64),
    )


@contextlib.contextmanager
def _checking(label: str, check: str) -> Iterator[None]:
    """Re-raise any error of the block as an AssertionError naming the model and ``check``."""
    try:
        yield
    except Exception as err:
        detail = str(err) if isinstance(err, AssertionError) else f"{type(err).__name__}: {err}"
        raise AssertionError(f"model {label}: {check}: {detail}") from err


def _require(ok: bool | Tensor, detail: str) -> None:
    if not bool(ok):
        raise AssertionError(detail)


def _build(cls: type[Recommender], n_items: int, hparams: dict[str, Any]) -> Recommender:
    """``cls`` through :func:`engine.registry.create` when it is registered there, else directly."""
    if registry.MODELS.get(cls.name) is cls:
        return registry.create(cls.name, n_items, **hparams)
    return cls(n_items=n_items, **hparams)


def _check_declaration(cls: type[Recommender]) -> None:
    _require(isinstance(cls, type) and issubclass(cls, Recommender), "not a Recommender subclass")
    _require(isinstance(getattr(cls, "name", None), str), "name must be a string")
    _require(getattr(cls, "link", None) in LINKS, f"link must be one of {', '.join(LINKS)}")
    _require(isinstance(cls.trainable, bool), "trainable must be a bool")
    unknown = sorted(set(cls.default_train) - set(TrainConfig.names()))
    _require(not unknown, f"default_train has unknown settings {unknown}")
    TrainConfig(**cls.default_train)
    parameters = list(inspect.signature(cls.__init__).parameters.values())[1:]
    _require(
        bool(parameters) and parameters[0].name == "n_items",
        "the constructor's first argument must be n_items",
    )
    keyword = (inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY)
    for p in parameters[1:]:
        _require(
            p.kind in keyword and p.default is not inspect.Parameter.empty,
            f"constructor argument {p.name} must be a keyword argument with a default",
        )


def _check_fit(model: Recommender, split: Split, seed: int) -> None:
    config = config_for(model, epochs=1, batch_size=16, patience=0, eval_every=1, seed=seed)
    result = fit(model, split, config)
    _require(not model.training, "fit must leave the model in eval mode")
    if model.trainable:
        losses = [report.loss for report in result.history]
        _require(
            result.epochs_run == 1 and all(v is not None and math.isfinite(v) for v in losses),
            f"one epoch should run with a finite loss, got {result.epochs_run} epochs, {losses}",
        )


@torch.no_grad()
def _check_scores(model: Recommender, x: Tensor) -> None:
    scores = model(x)
    expected = (x.shape[0], model.n_items)
    _require(tuple(scores.shape) == expected, f"shape {tuple(scores.shape)}, expected {expected}")
    _require(torch.isfinite(scores).all(), "scores are not all finite")
    probability = model.probability(scores)
    _require(
        probability.shape == scores.shape and torch.isfinite(probability).all(),
        f"the {model.link} link gives non-finite or misshapen probabilities",
    )


def _check_gradient(model: Recommender, x: Tensor) -> None:
    x = x.clone().requires_grad_(True)
    scores = model(x)
    if not scores.requires_grad:
        raise AssertionError("the scores are not differentiable in x (no autograd graph)")
    weights = torch.rand(scores.shape, generator=torch.Generator().manual_seed(0))
    (model.probability(scores) * weights).sum().backward()  # softmax sums to 1: weight it
    model.zero_grad(set_to_none=True)
    grad = x.grad
    if grad is None:
        raise AssertionError("no gradient reaches x: scores must be differentiable in x")
    _require(torch.isfinite(grad).all(), "the gradient w.r.t. x is not finite")
    with torch.no_grad():
        depends = not torch.equal(model(x.detach().roll(1, dims=1)), scores.detach())
    if depends:
        _require(grad.abs().sum() > 0, "the scores depend on x but its gradient is zero")


@torch.no_grad()
def _check_embeddings(model: Recommender, x: Tensor) -> None:
    items = model.item_embeddings()
    if items is not None:
        _require(
            items.ndim == 2 and items.shape[0] == model.n_items and items.shape[1] > 0,
            f"item_embeddings() has shape {tuple(items.shape)}, expected [{model.n_items}, d]",
        )
        _require(torch.isfinite(items).all(), "item_embeddings() are not all finite")
    users = model.user_embeddings(x)
    if users is not None:
        _require(
            users.ndim == 2 and users.shape[0] == x.shape[0] and users.shape[1] > 0,
            f"user_embeddings(x) has shape {tuple(users.shape)}, expected [{x.shape[0]}, d]",
        )
        _require(torch.isfinite(users).all(), "user_embeddings(x) are not all finite")


@torch.no_grad()
def _check_round_trip(cls: type[Recommender], model: Recommender, x: Tensor) -> None:
    stored = json.loads(json.dumps(model.hparams))  # as a run's config.json holds them
    clone = _build(cls, model.n_items, stored)
    _require(
        clone.hparams == model.hparams,
        f"rebuilt from its hparams it records {clone.hparams}, not {model.hparams}",
    )
    clone.load_state_dict(model.state_dict())
    clone.eval()
    _require(
        torch.equal(clone(x), model(x)),
        "rebuilt from its hparams and state dict, it scores differently",
    )


def _close(got: Tensor, want: Tensor) -> bool:
    """Whether ``got`` equals ``want`` to :data:`SHORTCUT_RTOL` of ``want``'s largest entry."""
    scale = float(want.abs().max()) if want.numel() else 0.0
    return got.shape == want.shape and bool((got - want).abs().max() <= SHORTCUT_RTOL * scale)


@torch.no_grad()
def _check_shortcuts(model: Recommender, seed: int) -> None:
    generator = torch.Generator().manual_seed(seed)
    x = (torch.rand((BATCH, model.n_items), generator=generator) < 0.2).float()
    x[0] = 0.0
    x[0, 0] = 1.0  # a one-item history
    items = torch.randint(model.n_items, (3,), generator=generator)
    items[1] = items[0]  # a repeated item
    full = model(x)
    _require(
        _close(model.score_items(x, items), full[:, items]),
        "score_items(x, items) differs from forward(x)[:, items]",
    )
    weight = model.first_layer()
    if weight is None:
        return
    rows, cols = torch.nonzero(x, as_tuple=True)
    h = weight.new_zeros((x.shape[0], weight.shape[1]))
    h.index_add_(0, rows, weight[cols] * x[rows, cols, None])  # sparse gather of W's rows
    moments = row_moments(x)
    _require(
        _close(model.forward_from_first(h, moments), full),
        "forward_from_first(x W, moments) differs from forward(x)",
    )
    _require(
        _close(model.forward_from_first(h, moments, items), full[:, items]),
        "forward_from_first(x W, moments, items) differs from forward(x)[:, items]",
    )
