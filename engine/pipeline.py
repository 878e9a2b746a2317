"""The whole training pipeline of one model: load, prepare, split, train, evaluate, save.

:func:`train_run` is what the CLI (``reclens train``), the dashboard and the benches call;
:func:`load_context` re-creates the dataset and split a saved run was trained on.

Loaded, prepared and split datasets are cached in-process (keyed by source, options, protocol
and seed), so training several models on one dataset loads it once. Each run's
``seconds["total"]`` still counts the loading, preparation and splitting, as RecBole's
figure does (its time covers building the dataset for every model it runs): those stages are
measured once, when they actually run, and their seconds are added to every run that reuses
them. ``seconds["total"]`` is thus load + prepare + split + create + fit + evaluate, timed
inside the process with :func:`time.perf_counter` (imports excluded); writing the artifacts
comes after and is reported separately as ``seconds["save"]``.
"""

from __future__ import annotations

import inspect
import json
import tempfile
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Hashable, Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import polars as pl
import torch

from data.dataset import Dataset
from data.errors import ReclensError
from data.loaders import SYNTHETIC
from data.loaders import load as load_source
from data.movielens import MOVIELENS_NAMES
from data.prepare import prepare
from data.splits import Split, split
from engine import beyond, presets, registry
from engine.contract import Recommender
from engine.device import ThreadGovernor, resolve_device
from engine.evaluate import evaluate
from engine.run_config import DatasetSpec, RunConfig, SplitSpec
from engine.runs import (
    CONFIG,
    Run,
    fingerprint,
    library_versions,
    runs_root,
    save_run,
    with_model,
)
from engine.train import EpochReport, TrainResult, fit

KS: tuple[int, ...] = (10, 20)
RATIOS: tuple[float, float, float] = (0.8, 0.1, 0.1)
FOLD_IN = 0.8
_PREPARE_DEFAULTS: dict[str, Any] = {
    name: p.default
    for name, p in inspect.signature(prepare).parameters.items()
    if p.default is not inspect.Parameter.empty
}


class TrainingCancelled(ReclensError):
    """Training was stopped by the ``cancel`` event; nothing was saved."""


@dataclass
class RunResult:
    """What one :func:`train_run` gives back.

    ``metrics``: test means (``recall@10``, ``ndcg@10``, ``mrr@10``, ``hit@10``,
    ``precision@10``, ``map@10`` and the same at 20); ``per_user``: the test per-user table
    [n_test_users rows: ``user`` + one column per metric]; ``valid``: validation means (same
    keys; empty when the split has no validation users); ``seconds``: ``load``, ``prepare``,
    ``split``, ``fit``, ``evaluate``, ``total`` (see the module docstring) and ``save``;
    ``run_dir``: the saved run folder (None with ``save=False``); ``history``: one
    :class:`~engine.train.EpochReport` per epoch; ``recommender``: the trained model (eval
    mode); ``config``: what ``config.json`` holds; ``notes``: what the user should know about
    the evaluation (lists capped at a small catalogue's size); ``stop``: why training ended
    (:attr:`engine.train.TrainResult.stop`: ``epochs``, ``patience``, ``budget``,
    ``closed-form``); ``planned_epochs``, ``budget_s``: the planned epochs and the
    ``max_seconds`` budget (None: none); ``valid_metric``, ``best_valid``: the selection metric
    and its value at the kept epoch. A saved run also holds its
    beyond-accuracy metrics at K=10 (:func:`engine.beyond.store`), whoever trained it.
    """

    model: str
    dataset: str
    seed: int
    metrics: dict[str, float]
    per_user: pl.DataFrame
    valid: dict[str, float]
    seconds: dict[str, float]
    run_dir: Path | None
    history: list[EpochReport]
    best_epoch: int = 0
    epochs_run: int = 0
    device: str = "cpu"
    recommender: Recommender | None = field(default=None, repr=False)
    config: RunConfig | None = field(default=None, repr=False)
    notes: list[str] = field(default_factory=list)
    stop: str = "epochs"
    planned_epochs: int = 0
    budget_s: float | None = None
    valid_metric: str = ""
    best_valid: float | None = None

    def summary(self) -> dict[str, Any]:
        """A JSON-ready dict: model, dataset, seed, metrics, valid, seconds, run_dir, epochs,
        why training stopped, notes and the number of test users."""
        return {
            "model": self.model,
            "dataset": self.dataset,
            "seed": self.seed,
            "metrics": self.metrics,
            "valid": self.valid,
            "seconds": self.seconds,
            "run_dir": str(self.run_dir) if self.run_dir is not None else None,
            "best_epoch": self.best_epoch,
            "epochs_run": self.epochs_run,
            "stop": self.stop,
            "planned_epochs": self.planned_epochs,
            "budget_s": self.budget_s,
            "valid_metric": self.valid_metric,
            "best_valid": self.best_valid,
            "device": self.device,
            "notes": self.notes,
            "n_test_users": self.per_user.height,
        }


# -- in-process cache --------------------------------------------------------------------------
T = TypeVar("T")
_CACHE_LOCK = threading.RLock()
_CACHE: OrderedDict[Hashable, tuple[Any, float]] = OrderedDict()
CACHE_SIZE = 8


def clear_cache() -> None:
    """Forget every cached dataset and split."""
    with _CACHE_LOCK:
        _CACHE.clear()


def _cached(key: Hashable | None, make: Callable[[], T]) -> tuple[T, float]:
    """``make()`` and the seconds it took, reused for the same ``key`` (None: never cached)."""
    if key is None:
        start = time.perf_counter()
        value = make()
        return value, time.perf_counter() - start
    with _CACHE_LOCK:
        if key in _CACHE:
            _CACHE.move_to_end(key)
            return _CACHE[key]
        start = time.perf_counter()
        value = make()
        entry = (value, time.perf_counter() - start)
        _CACHE[key] = entry
        while len(_CACHE) > CACHE_SIZE:
            _CACHE.popitem(last=False)
        return entry


def _key(*parts: Any) -> str:
    return json.dumps(parts, sort_keys=True, default=str)


# -- building the data -------------------------------------------------------------------------
def source_spec(source: str | Path | Dataset, load_options: Mapping[str, Any] | None) -> dict:
    """How to load ``source`` again: ``{"kind", "source", "options"}`` (paths made absolute)."""
    options = {k: v for k, v in dict(load_options or {}).items() if v is not None}
    if isinstance(source, Dataset):
        return {"kind": "dataset", "source": source.name, "options": {}}
    text = str(source)
    path = Path(text).expanduser()
    if text not in (*MOVIELENS_NAMES, SYNTHETIC) and path.exists():
        text = str(path.resolve())
    return {"kind": "source", "source": text, "options": options}


def prepare_spec(prepare_options: Mapping[str, Any] | None) -> dict[str, Any]:
    """All :func:`data.prepare.prepare` options, defaults filled in; unknown ones raise."""
    given = dict(prepare_options or {})
    unknown = sorted(set(given) - set(_PREPARE_DEFAULTS))
    if unknown:
        raise ReclensError(
            f"unknown preparation option(s) {', '.join(unknown)}: "
            f"use {', '.join(_PREPARE_DEFAULTS)}"
        )
    return {**_PREPARE_DEFAULTS, **given}


def build_data(
    spec: Mapping[str, Any],
    prepare_options: Mapping[str, Any],
    protocol: str,
    seed: int,
    dataset: Dataset | None = None,
) -> tuple[Dataset, Split, dict[str, float]]:
    """Load, prepare and split (each cached); returns (prepared, split, seconds per stage).

    ``spec`` comes from :func:`source_spec`; for ``kind == "dataset"`` the loaded
    ``dataset`` must be given and nothing is cached.
    """
    if spec["kind"] == "dataset":
        if dataset is None:
            raise ReclensError(
                f"run was trained on an in-memory dataset {spec['source']!r}: pass it as dataset="
            )
        loaded, load_s = dataset, 0.0
        base = None
    else:
        base = ("load", spec["source"], _key(spec["options"]))
        loaded, load_s = _cached(base, lambda: load_source(spec["source"], **spec["options"]))
    prep_key = None if base is None else (*base, "prepare", _key(prepare_options))
    prepared, prep_s = _cached(prep_key, lambda: prepare(loaded, **prepare_options))
    split_key = None if prep_key is None else (*prep_key, "split", protocol, seed)
    parts, split_s = _cached(
        split_key, lambda: split(prepared, protocol, ratios=RATIOS, seed=seed, fold_in=FOLD_IN)
    )
    return prepared, parts, {"load": load_s, "prepare": prep_s, "split": split_s}


# -- the pipeline ------------------------------------------------------------------------------
def train_run(
    source: str | Path | Dataset,
    model: str,
    *,
    seed: int = 0,
    device: str | torch.device = "auto",
    epochs: int | None = None,
    out: str | Path | None = None,
    hparams: Mapping[str, Any] | None = None,
    prepare_options: Mapping[str, Any] | None = None,
    protocol: str = "random",
    progress: Callable[[EpochReport], Any] | None = None,
    cancel: threading.Event | None = None,
    save: bool = True,
    load_options: Mapping[str, Any] | None = None,
    train_options: Mapping[str, Any] | None = None,
    preset: str = "",
) -> RunResult:
    """Train ``model`` on ``source`` and evaluate it on the test split.

    ``source``: anything :func:`data.loaders.load` takes (with ``load_options``), or an
    already loaded :class:`Dataset` (not cached; :func:`load_context` then needs it back).
    ``prepare_options``: keyword arguments of :func:`data.prepare.prepare`; ``protocol`` and
    ``seed``: the split (ratios 8:1:1); ``seed`` also seeds the model's weights and training.
    ``epochs`` and ``train_options`` override the model's training settings; ``hparams`` its
    hyper-parameters. ``preset``: a named configuration of :mod:`engine.presets` for this
    model, applied under ``hparams`` and ``train_options`` and recorded in the run.
    ``progress(report)`` is called after every epoch; a set ``cancel`` event
    stops training and raises :class:`TrainingCancelled`. With ``save``, the run is written under
    ``out`` (a runs root; default ``$RECLENS_HOME/runs``) as ``<dataset>/<model>-<UTC time>``.
    """
    # unknown model names fail before any data is loaded; a retired name trains its new name
    name = registry.model_class(model).name
    chosen = presets.get_preset(preset) if preset else None
    if chosen is not None and chosen.model != name:
        raise ReclensError(f"configuration {chosen.name} is for model {chosen.model}, not {name}")
    if chosen is not None:
        hparams = {**chosen.hparams, **dict(hparams or {})}
        train_options = {**chosen.train, **dict(train_options or {})}
    torch_device = resolve_device(device) if not isinstance(device, torch.device) else device
    spec = source_spec(source, load_options)
    prep = prepare_spec(prepare_options)
    overrides = {**dict(train_options or {}), "seed": int(seed)}
    if epochs is not None:
        overrides["epochs"] = int(epochs)
    config = registry.train_config(name, **overrides)

    if save:
        check_writable(out)
    prepared, parts, seconds = build_data(
        spec, prep, protocol, int(seed), source if isinstance(source, Dataset) else None
    )
    if not len(parts.eval_users("test")):
        raise ReclensError(
            f"{prepared.name}: no test user can be evaluated (each needs a test item and a "
            f"training item){': ' + '; '.join(parts.notes) if parts.notes else ''}"
        )
    _check_cancel(cancel, name)
    start = time.perf_counter()
    with torch.random.fork_rng(devices=_cuda_indices(torch_device)):
        torch.manual_seed(int(seed))
        recommender = registry.create(name, prepared.n_items, **dict(hparams or {}))
    recommender = recommender.to(torch_device)
    trained: TrainResult = fit(recommender, parts, config, callback=progress, cancel=cancel)
    if trained.cancelled:
        raise TrainingCancelled(
            f"training of {name} was cancelled after {trained.epochs_run} epochs; nothing was saved"
        )
    eval_start = time.perf_counter()
    with ThreadGovernor(torch_device):  # threads the other processes leave free, chosen once
        test = evaluate(recommender, parts, "test", ks=KS)
        has_valid = len(parts.eval_users("valid")) > 0
        valid = evaluate(recommender, parts, "valid", ks=KS) if has_valid else None
    end = time.perf_counter()
    seconds.update(
        fit=trained.seconds,
        evaluate=end - eval_start,
        total=seconds["load"] + seconds["prepare"] + seconds["split"] + (end - start),
    )

    run_config = RunConfig(
        model=name,
        hparams=dict(recommender.hparams),
        n_items=int(prepared.n_items),
        dataset=DatasetSpec(name=prepared.name, **spec, description=prepared.source),
        prepare=prep,
        split=SplitSpec(protocol=parts.protocol, ratios=RATIOS, fold_in=FOLD_IN, seed=int(seed)),
        train=config.to_dict(),
        device=str(torch_device),
        versions=library_versions(),
        fingerprint=fingerprint(prepared, parts),
        preset=chosen.name if chosen is not None else "",
    )
    result = RunResult(
        model=name,
        dataset=prepared.name,
        seed=int(seed),
        metrics=test.means,
        per_user=test.per_user,
        valid=valid.means if valid is not None else {},
        seconds=seconds,
        run_dir=None,
        history=list(trained.history),
        best_epoch=trained.best_epoch,
        epochs_run=trained.epochs_run,
        device=str(torch_device),
        recommender=recommender,
        config=run_config,
        notes=[*parts.notes, *capped_notes(int(prepared.n_items))],
        stop=trained.stop,
        planned_epochs=trained.planned,
        budget_s=trained.budget,
        valid_metric=trained.metric,
        best_valid=trained.best_valid,
    )
    if save:
        _check_cancel(cancel, name, "before it was saved")
        save_start = time.perf_counter()
        result.run_dir = save_run(
            recommender,
            prepared,
            parts,
            config=run_config,
            metrics=_metrics_record(result, trained),
            per_user=test.per_user,
            root=out,
        )
        beyond.store(with_model(result.run_dir, recommender), prepared, parts)
        seconds["save"] = time.perf_counter() - save_start
    return result


def _metrics_record(result: RunResult, trained: TrainResult) -> dict[str, Any]:
    return {
        "test": result.metrics,
        "valid": result.valid,
        "ks": list(KS),
        "n_test_users": result.per_user.height,
        "seconds": result.seconds,
        "best_epoch": trained.best_epoch,
        "best_valid": trained.best_valid,
        "valid_metric": trained.metric,
        "min_epochs": trained.min_epochs,
        "epochs_run": trained.epochs_run,
        "stopped_early": trained.stopped_early,
        "stop": trained.stop,
        "history": [asdict(report) for report in trained.history],
        "notes": result.notes,
    }


def capped_notes(n_items: int, ks: tuple[int, ...] = KS) -> list[str]:
    """A note when the catalogue is smaller than a K evaluated (its lists hold every item)."""
    over = [k for k in ks if k > n_items]
    if not over:
        return []
    return [
        f"the dataset has {n_items} items, fewer than K={', '.join(map(str, over))}: those "
        f"lists are capped at {n_items} items (the missing places count as misses)"
    ]


def check_writable(out: str | Path | None) -> None:
    """Fail before training when the runs root ``out`` (default ``$RECLENS_HOME/runs``) cannot
    hold a run folder: it is a file, or a folder that cannot be created or written."""
    root = Path(out).expanduser() if out is not None else runs_root()
    try:
        root.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=root):
            pass
    except OSError as err:
        reason = err.strerror or type(err).__name__
        raise ReclensError(f"{root}: cannot write run folders there ({reason})") from err


def _check_cancel(cancel: Any, name: str, when: str = "before it started") -> None:
    if cancel is not None and cancel.is_set():
        raise TrainingCancelled(f"training of {name} was cancelled {when}; nothing was saved")


def _cuda_indices(device: torch.device) -> list[int]:
    return [device.index or 0] if device.type == "cuda" else []


# -- re-creating a run's data ------------------------------------------------------------------
def load_context(run: Run | RunConfig, dataset: Dataset | None = None) -> tuple[Dataset, Split]:
    """The prepared dataset and split a run was trained on, re-created from its config.

    ``run``: a :class:`~engine.runs.Run` or its :class:`~engine.run_config.RunConfig`.
    ``dataset``: the loaded dataset, needed only when the run was trained on an in-memory
    :class:`Dataset`. Raises :class:`ReclensError` when the data no longer matches the stored
    fingerprint (users, items, interactions, training matrix).
    """
    config = run.config if isinstance(run, Run) else run
    label = str(run.path / CONFIG) if isinstance(run, Run) else "run config"
    spec = {
        "kind": config.dataset.kind,
        "source": config.dataset.source,
        "options": dict(config.dataset.options),
    }
    if not config.fingerprint:
        raise ReclensError(f"{label}: run config lacks the data fingerprint")
    prep = prepare_spec(config.prepare)
    prepared, parts, _ = build_data(spec, prep, config.split.protocol, config.seed, dataset)
    now = fingerprint(prepared, parts)
    changed = [k for k in config.fingerprint if now.get(k) != config.fingerprint[k]]
    if changed:
        raise ReclensError(
            f"{label}: the data of {spec['source']} changed since the run was trained "
            f"({', '.join(changed)} differ); retrain the model"
        )
    return prepared, parts
