"""The model registry: names to classes, default hyper-parameters and training settings.

Every model class is imported here, so a broken model module fails loudly (an ImportError
when this module is imported) instead of quietly leaving the registry. A model's
hyper-parameters are its constructor's keyword arguments (:meth:`Recommender.hyper_parameters`);
its training settings are its class's ``default_train``.
"""

from __future__ import annotations

import difflib
from typing import Any

from data.errors import ReclensError
from engine.contract import Recommender
from engine.models.bpr import BPR
from engine.models.diffrec import DiffRec
from engine.models.ease import EASE
from engine.models.ials import IALS
from engine.models.itemknn import ItemKNN
from engine.models.lightgcn import LightGCN
from engine.models.mf import MF
from engine.models.neumf import NeuMF
from engine.models.pop import Pop
from engine.models.vae import MultDAE, MultVAE
from engine.train import TrainConfig

MODELS: dict[str, type[Recommender]] = {
    "pop": Pop,
    "itemknn": ItemKNN,
    "ease": EASE,
    "mf": MF,
    "multvae": MultVAE,
    "multdae": MultDAE,
    "neumf": NeuMF,
    "diffrec": DiffRec,
    "ials": IALS,
    "bpr": BPR,
    "lightgcn": LightGCN,
}


def model_names() -> list[str]:
    """Every registered model name, in registry order."""
    return list(MODELS)


def available_models() -> list[str]:
    """The registered names usable on this installation: all of them (imports are static)."""
    return model_names()


def model_class(name: str) -> type[Recommender]:
    """The class registered as ``name``; :class:`ReclensError` for unknown names."""
    key = str(name).strip().lower()
    if key not in MODELS:
        close = difflib.get_close_matches(key, list(MODELS), n=1)
        hint = f" (did you mean {close[0]}?)" if close else ""
        raise ReclensError(f"unknown model {name!r}{hint}: use one of {', '.join(MODELS)}")
    return MODELS[key]


def default_hparams(name: str) -> dict[str, Any]:
    """The model's hyper-parameters and their defaults, from its constructor's signature."""
    return model_class(name).hyper_parameters()


def default_train(name: str) -> dict[str, Any]:
    """A copy of the model's default training settings (over :class:`TrainConfig`'s)."""
    return dict(model_class(name).default_train)


def create(name: str, n_items: int, **hparams: Any) -> Recommender:
    """A new ``name`` model for ``n_items`` items: default hyper-parameters, then ``hparams``."""
    cls = model_class(name)
    _check_keys(hparams, cls.hyper_parameters(), f"hyper-parameter of model {cls.name}")
    return cls(n_items=n_items, **hparams)


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
