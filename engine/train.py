"""One trainer for every gradient-trained recommender.

:func:`fit` takes a model (already on its device), a :class:`~data.splits.Split` and a
:class:`TrainConfig`, and trains on mini-batches of user rows of ``split.fit_matrix()``:

1. the model's weights are redrawn from ``config.seed`` (``reinit``), and every random draw of
   the run (batch order, sampled negatives, dropout masks, reparameterisation noise) comes from
   that seed, so on the CPU the same seed gives the same weights and the same metrics, whatever
   the thread count (which :class:`~engine.device.ThreadGovernor` changes with the machine's
   load): training runs under torch's deterministic algorithms (:func:`deterministic`), as the
   backward pass of advanced indexing (``h[rows]`` with repeated rows, an ``index_put_`` with
   accumulation) otherwise adds in thread-dependent order on the CPU;
2. each epoch shuffles the fitting users, builds their dense history rows [batch, n_items] on
   the model's device and takes one Adam/AdamW step on ``model.loss(x, ctx)`` per batch;
3. every ``eval_every`` epochs (and after the last one) the validation ``valid_metric``
   (NDCG@10 unless set; any ``metric@K`` that :mod:`engine.evaluate` measures) is computed by
   :func:`engine.evaluate.evaluate`; the best weights are kept and restored at the end, and
   training stops early after ``patience`` evaluations without improvement, but never before
   ``min_epochs`` epochs (by default half the planned ``epochs``: on temporal splits the
   validation curve is flat and noisy, and an early peak would otherwise end training while
   the model still improves; selection uses validation data only, never the test part);
4. ``callback(report)`` is called after each epoch with an :class:`EpochReport`, and a set
   ``cancel`` event stops training between two batches.

Closed-form models (``trainable = False``) are fitted once with ``model.fit`` instead, with the
thread count the governor chooses on entry (on a loaded two-core machine, EASE's Cholesky
inverse at ML-1M size took 37 s with two spinning threads and 4 s with one).
"""

from __future__ import annotations

import contextlib
import math
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field, fields
from typing import Any

import numpy as np
import scipy.sparse as sp
import torch
import torch._dynamo  # noqa: F401  torch.optim imports it on its first step; pay it at import
from torch import Tensor

from data.errors import ReclensError
from data.splits import Split
from engine.contract import LossContext, Recommender
from engine.device import ThreadGovernor
from engine.evaluate import METRICS, dense_rows, evaluate

VALID_METRIC = "ndcg@10"  # the default selection metric
DENSE_LIMIT = 1 << 26  # keep the whole fit matrix dense on the device up to 64M cells (256 MB)


@dataclass
class TrainConfig:
    """Training settings; a model's defaults live in its class's ``default_train``.

    ``epochs``: most epochs (passes over the fitting users); ``batch_size``: users per step;
    ``lr``, ``weight_decay``: optimiser settings (``adam``: L2 added to the gradient,
    ``adamw``: decoupled decay); ``patience``: evaluations without a better validation
    ``valid_metric`` before stopping (0 turns early stopping off); ``eval_every``: epochs
    between evaluations; ``valid_metric``: the selection metric, ``name@K`` with a name of
    :data:`engine.evaluate.METRICS` (e.g. ``recall@20``); ``min_epochs``: epochs always run
    before patience may stop training (None: half of ``epochs``; 0: patience from the start);
    ``seed``: seed of every random draw; ``max_seconds``: wall-clock budget after which training
    stops at the end of the epoch (None: no budget); ``reinit``: redraw the weights from
    ``seed`` before training.
    """

    epochs: int = 50
    batch_size: int = 256
    lr: float = 1e-3
    weight_decay: float = 0.0
    optimizer: str = "adam"
    patience: int = 5
    eval_every: int = 1
    valid_metric: str = VALID_METRIC
    min_epochs: int | None = None
    seed: int = 0
    max_seconds: float | None = None
    reinit: bool = True

    def __post_init__(self) -> None:
        if self.optimizer not in ("adam", "adamw"):
            raise ReclensError(f"unknown optimizer {self.optimizer!r}: use adam or adamw")
        for name in ("epochs", "batch_size", "eval_every"):
            if int(getattr(self, name)) < 1:
                raise ReclensError(f"training setting {name} must be at least 1")
        if self.lr <= 0 or self.weight_decay < 0 or self.patience < 0:
            raise ReclensError("training settings need lr > 0, weight_decay >= 0, patience >= 0")
        if self.min_epochs is not None and int(self.min_epochs) < 0:
            raise ReclensError("training setting min_epochs must be at least 0")
        self.valid_metric = str(self.valid_metric).strip().lower()
        parse_metric(self.valid_metric)

    @property
    def first_stop(self) -> int:
        """The first epoch after which patience may stop training."""
        return self.epochs // 2 if self.min_epochs is None else int(self.min_epochs)

    @classmethod
    def names(cls) -> tuple[str, ...]:
        """The settings' names."""
        return tuple(f.name for f in fields(cls))

    def to_dict(self) -> dict[str, Any]:
        """The settings as a plain dict (for run metadata)."""
        return asdict(self)


def parse_metric(name: str) -> tuple[str, int]:
    """``"recall@20"`` -> ``("recall", 20)``; :class:`ReclensError` for anything else."""
    metric, sep, k = str(name).strip().lower().partition("@")
    if not sep or metric not in METRICS or not k.isdigit() or int(k) < 1:
        raise ReclensError(
            f"unknown validation metric {name!r}: use NAME@K with NAME one of "
            f"{', '.join(METRICS)} and K a positive integer (e.g. recall@20)"
        )
    return metric, int(k)


@dataclass(frozen=True)
class EpochReport:
    """Progress after one epoch.

    ``epoch``: 1-based epoch number (0 for a closed-form fit); ``loss``: mean training loss
    over the epoch's batches (None for a closed-form fit); ``valid``: the validation selection
    metric (``TrainResult.metric``) when this epoch was evaluated, else None; ``seconds``: wall
    seconds since training began; ``epochs``: planned epochs; ``best``: whether this epoch is
    the best so far.
    """

    epoch: int
    loss: float | None
    valid: float | None
    seconds: float
    epochs: int = 0
    best: bool = False


@dataclass
class TrainResult:
    """Outcome of :func:`fit`.

    ``history``: one :class:`EpochReport` per epoch run; ``best_epoch``: the epoch whose
    weights the model holds now (0 for closed-form models); ``best_valid``: its validation
    ``metric`` (None when the split has no validation users); ``seconds``: wall seconds;
    ``cancelled``: stopped by the cancel event; ``epochs_run``: epochs completed;
    ``stopped_early``: stopped by patience or ``max_seconds``; ``metric``: the selection metric;
    ``min_epochs``: the epochs run before patience could stop training; ``stop``: why training
    ended (``epochs``: all planned epochs ran; ``patience``; ``budget``: ``max_seconds`` was
    reached; ``cancelled``; ``closed-form``); ``planned``: the planned epochs; ``budget``: the
    ``max_seconds`` in force (None: none).
    """

    history: list[EpochReport] = field(default_factory=list)
    best_epoch: int = 0
    best_valid: float | None = None
    seconds: float = 0.0
    cancelled: bool = False
    epochs_run: int = 0
    stopped_early: bool = False
    metric: str = VALID_METRIC
    min_epochs: int = 0
    stop: str = "epochs"
    planned: int = 0
    budget: float | None = None


def config_for(model: Recommender, **overrides: Any) -> TrainConfig:
    """The model class's ``default_train`` settings with ``overrides`` applied."""
    settings = {**getattr(type(model), "default_train", {}), **overrides}
    unknown = sorted(set(settings) - set(TrainConfig.names()))
    if unknown:
        raise ReclensError(
            f"unknown training setting(s) {', '.join(unknown)}: "
            f"use {', '.join(TrainConfig.names())}"
        )
    return TrainConfig(**settings)


def fit(
    model: Recommender,
    split: Split,
    config: TrainConfig | None = None,
    callback: Callable[[EpochReport], Any] | None = None,
    cancel: threading.Event | None = None,
) -> TrainResult:
    """Fit ``model`` on ``split`` (see the module docstring) and return what happened.

    The model must already be on its device (``model.device`` is used throughout). On return
    the model holds its best weights and is in eval mode.
    """
    config = config or config_for(model)
    start = time.perf_counter()
    train = split.fit_matrix()
    if not model.trainable:  # one big product or factorisation: threads chosen once, too
        with ThreadGovernor(model.device):
            return _fit_closed_form(model, split, train, config, callback, cancel, start)

    device = model.device
    with _seeded(config.seed, device), deterministic(device), ThreadGovernor(device) as threads:
        if config.reinit:
            _reset_parameters(model)
        return _fit_gradient(model, split, train, config, callback, cancel, start, threads)


def _fit_closed_form(
    model: Recommender,
    split: Split,
    train: sp.csr_matrix,
    config: TrainConfig,
    callback: Callable[[EpochReport], Any] | None,
    cancel: threading.Event | None,
    start: float,
) -> TrainResult:
    metric = config.valid_metric
    if cancel is not None and cancel.is_set():
        return TrainResult(
            seconds=time.perf_counter() - start, cancelled=True, metric=metric, stop="cancelled"
        )
    model.fit(train)
    model.eval()
    valid = _validate(model, split, metric)
    report = EpochReport(0, None, valid, time.perf_counter() - start, epochs=0, best=True)
    if callback is not None:
        callback(report)
    return TrainResult(
        history=[report],
        best_epoch=0,
        best_valid=valid,
        seconds=report.seconds,
        epochs_run=0,
        metric=metric,
        stop="closed-form",
    )


def _fit_gradient(
    model: Recommender,
    split: Split,
    train: sp.csr_matrix,
    config: TrainConfig,
    callback: Callable[[EpochReport], Any] | None,
    cancel: threading.Event | None,
    start: float,
    threads: ThreadGovernor,
) -> TrainResult:
    device = model.device
    users = split.fit_users[np.diff(train.indptr)[split.fit_users] > 0]
    if len(users) == 0:
        raise ReclensError(f"cannot train {model.name}: the split has no training interactions")
    rows = _RowSource(train, users, device)
    n_batches = max(1, math.ceil(len(users) / config.batch_size))
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer_class = torch.optim.AdamW if config.optimizer == "adamw" else torch.optim.Adam
    optimizer = optimizer_class(params, lr=config.lr, weight_decay=config.weight_decay)
    order_gen = torch.Generator().manual_seed(config.seed)  # CPU: same order on every device
    sample_gen = torch.Generator(device=device).manual_seed(config.seed)

    result = TrainResult(
        metric=config.valid_metric,
        min_epochs=config.first_stop,
        planned=config.epochs,
        budget=config.max_seconds,
    )
    best_state: dict[str, Tensor] | None = None
    since_best, step = 0, 0
    for epoch in range(1, config.epochs + 1):
        model.train()
        total, seen = 0.0, 0
        for batch in _batches(len(users), config.batch_size, order_gen):
            if cancel is not None and cancel.is_set():
                result.cancelled = True
                break
            ctx = LossContext(
                generator=sample_gen,
                step=step,
                total_steps=config.epochs * n_batches,
                train=train,
                users=torch.from_numpy(users[batch]).to(device),
            )
            loss = model.loss(rows.get(batch), ctx)
            value = float(loss.detach())
            if not math.isfinite(value):
                raise ReclensError(
                    f"training {model.name} diverged (loss {value} at epoch {epoch}); "
                    "try a smaller learning rate"
                )
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            total += value * len(batch)
            seen += len(batch)
            step += 1
            threads.tick()  # intra-op threads: the cores other processes leave free
        if result.cancelled:
            result.stop = "cancelled"
            break

        elapsed = time.perf_counter() - start
        out_of_time = config.max_seconds is not None and elapsed >= config.max_seconds
        last = epoch == config.epochs or out_of_time
        valid, best = None, False
        if epoch % config.eval_every == 0 or last:
            valid = _validate(model, split, config.valid_metric)
            if valid is None:
                pass  # no validation users: train for all epochs, keep the last weights
            elif result.best_valid is None or valid > result.best_valid:
                result.best_valid, result.best_epoch, best = valid, epoch, True
                best_state = {k: v.detach().clone() for k, v in model.state_dict().items()}
                since_best = 0
            else:
                since_best += 1
        report = EpochReport(
            epoch=epoch,
            loss=total / max(seen, 1),
            valid=valid,
            seconds=time.perf_counter() - start,
            epochs=config.epochs,
            best=best,
        )
        result.history.append(report)
        result.epochs_run = epoch
        if callback is not None:
            callback(report)
        patient = epoch < config.first_stop or since_best < config.patience
        if out_of_time or (config.patience and not patient):
            result.stopped_early = not last or out_of_time
            if epoch < config.epochs:
                result.stop = "budget" if out_of_time else "patience"
            break

    if best_state is not None:
        model.load_state_dict(best_state)
    else:
        result.best_epoch = result.epochs_run
    model.eval()
    result.seconds = time.perf_counter() - start
    return result


@torch.no_grad()
def _validate(model: Recommender, split: Split, metric: str = VALID_METRIC) -> float | None:
    """Validation ``metric`` (e.g. ``ndcg@10``) of ``model`` (None without validation users)."""
    if len(split.eval_users("valid")) == 0:
        return None
    was_training = model.training
    model.eval()
    value = evaluate(model, split, "valid", ks=(parse_metric(metric)[1],)).means[metric]
    model.train(was_training)
    return value


def _batches(n: int, batch_size: int, generator: torch.Generator) -> Iterator[np.ndarray]:
    """Shuffled positions 0..n-1 in chunks of at most ``batch_size``."""
    order = torch.randperm(n, generator=generator).numpy()
    for lo in range(0, n, batch_size):
        yield order[lo : lo + batch_size]


class _RowSource:
    """Dense history rows [batch, n_items] of the fitting users, on ``device``.

    Small matrices are made dense on the device once; larger ones are densified per batch.
    """

    def __init__(self, train: sp.csr_matrix, users: np.ndarray, device: torch.device) -> None:
        self.train, self.users, self.device = train, users, device
        self.dense: Tensor | None = None
        if len(users) * train.shape[1] <= DENSE_LIMIT:
            self.dense = dense_rows(train, users, device)

    def get(self, positions: np.ndarray) -> Tensor:
        if self.dense is not None:
            return self.dense[torch.from_numpy(positions).to(self.device)]
        return dense_rows(self.train, self.users[positions], self.device)


def _reset_parameters(model: Recommender) -> None:
    """Redraw the model's weights: its own ``reset_parameters`` or its submodules'."""
    reset = getattr(model, "reset_parameters", None)
    if callable(reset):
        reset()
        return
    for module in model.modules():
        if module is not model and callable(getattr(module, "reset_parameters", None)):
            module.reset_parameters()


_DETERMINISTIC_LOCK = threading.Lock()
_deterministic_users = 0
_deterministic_before: tuple[bool, bool] = (False, False)


@contextlib.contextmanager
def deterministic(device: torch.device) -> Iterator[None]:
    """Torch's deterministic algorithms for the block on the CPU (no change on other devices).

    The setting is process-wide, so overlapping blocks (trainings in several threads) count
    their users and the setting found by the first is restored when the last one leaves.
    ``warn_only``: an operation without a deterministic version warns instead of failing.
    """
    global _deterministic_users, _deterministic_before
    if device.type != "cpu":
        yield
        return
    with _DETERMINISTIC_LOCK:
        if _deterministic_users == 0:
            _deterministic_before = (
                torch.are_deterministic_algorithms_enabled(),
                torch.is_deterministic_algorithms_warn_only_enabled(),
            )
            torch.use_deterministic_algorithms(True, warn_only=True)
        _deterministic_users += 1
    try:
        yield
    finally:
        with _DETERMINISTIC_LOCK:
            _deterministic_users -= 1
            if _deterministic_users == 0:
                enabled, warn_only = _deterministic_before
                torch.use_deterministic_algorithms(enabled, warn_only=warn_only)


@contextlib.contextmanager
def _seeded(seed: int, device: torch.device) -> Iterator[None]:
    """Seed torch's global generators for the block, restoring their previous state after."""
    devices = [device.index or 0] if device.type == "cuda" else []
    with torch.random.fork_rng(devices=devices):
        torch.manual_seed(seed)
        yield
