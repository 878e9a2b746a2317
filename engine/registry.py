"""The model registry: names to classes, default hyper-parameters and training settings.

Classes are named by ``"module:Class"`` strings and imported only when asked for, so a model
whose module is missing or broken (an optional one) never stops the others from loading.
Defaults live on the classes themselves as ``default_hparams`` and ``default_train``.
"""

from __future__ import annotations

import difflib
import importlib
from typing import Any

from data.errors import ReclensError
from engine.contract import Recommender
from engine.train import TrainConfig

MODELS: dict[str, str] = {
    "pop": "engine.models.pop:Pop",
    "itemknn": "engine.models.itemknn:ItemKNN",
    "ease": "engine.models.ease:EASE",
    "mf": "engine.models.mf:MF",
    "multvae": "engine.models.vae:MultVAE",
    "multdae": "engine.models.vae:MultDAE",
    "neumf": "engine.models.neumf:NeuMF",
    "diffrec": "engine.models.diffrec:DiffRec",
}


def model_names() -> list[str]:
    """Every registered model name, in registry order."""
    return list(MODELS)


def available_models() -> list[str]:
    """The registered names whose class imports on this installation."""
    names = []
    for name in MODELS:
        try:
            model_class(name)
        except ReclensError:
            continue
        names.append(name)
    return names


def model_class(name: str) -> type[Recommender]:
    """The class registered as ``name``; :class:`ReclensError` for unknown or broken ones."""
    key = str(name).strip().lower()
    if key not in MODELS:
        close = difflib.get_close_matches(key, list(MODELS), n=1)
        hint = f" (did you mean {close[0]}?)" if close else ""
        raise ReclensError(f"unknown model {name!r}{hint}: use one of {', '.join(MODELS)}")
    module_name, _, class_name = MODELS[key].partition(":")
    try:
        cls = getattr(importlib.import_module(module_name), class_name)
    except (ImportError, AttributeError) as err:
        message = f"model {key} is unavailable: {MODELS[key]} failed to load ({err})"
        raise ReclensError(message) from err
    return cls


def default_hparams(name: str) -> dict[str, Any]:
    """A copy of the model's default hyper-parameters."""
    return dict(getattr(model_class(name), "default_hparams", {}))


def default_train(name: str) -> dict[str, Any]:
    """A copy of the model's default training settings (over :class:`TrainConfig`'s)."""
    return dict(getattr(model_class(name), "default_train", {}))


def create(name: str, n_items: int, **hparams: Any) -> Recommender:
    """A new ``name`` model for ``n_items`` items: default hyper-parameters, then ``hparams``."""
    cls = model_class(name)
    defaults = default_hparams(name)
    _check_keys(hparams, defaults, f"hyper-parameter of model {cls.name}")
    return cls(n_items=n_items, **{**defaults, **hparams})


def train_config(name: str, **overrides: Any) -> TrainConfig:
    """The model's default :class:`TrainConfig` with ``overrides`` applied."""
    settings = {**default_train(name), **overrides}
    _check_keys(settings, dict.fromkeys(TrainConfig.names()), "training setting")
    return TrainConfig(**settings)


def _check_keys(given: dict[str, Any], known: dict[str, Any], what: str) -> None:
    for key in given:
        if key not in known:
            close = difflib.get_close_matches(key, list(known), n=1)
            hint = f" (did you mean {close[0]}?)" if close else ""
            choices = ", ".join(known) if known else "none"
            raise ReclensError(f"unknown {what} {key!r}{hint}: known ones are {choices}")
