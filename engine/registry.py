"""The model registry: names to classes, default hyper-parameters and training settings.

Every model class is imported here, so a broken model module fails loudly (an ImportError
when this module is imported) instead of quietly leaving the registry. A model's
hyper-parameters are its constructor's keyword arguments (:meth:`Recommender.hyper_parameters`);
its training settings are its class's ``default_train``.

Two names are retired (:data:`RETIRED`): ``mf`` and ``neumf`` named history-encoder
(FISM-style) models, not the free-embedding BPR-MF and NeuMF of the papers, and are now
``fism`` and ``fism-neumf``. The classic BPR-MF is ``bpr``. Saved runs and code that still say
``mf`` or ``neumf`` load the renamed model (:func:`canonical_name`); starting a new training
under a retired name is refused with a message naming the new names (:func:`check_new`).
"""

from __future__ import annotations

import difflib
from typing import Any

from data.errors import ReclensError
from engine.contract import Recommender
from engine.models.bpr import BPR
from engine.models.diffrec import DiffRec
from engine.models.ease import EASE
from engine.models.fism import FISM
from engine.models.fism_neumf import FISMNeuMF
from engine.models.ials import IALS
from engine.models.itemknn import ItemKNN
from engine.models.lightgcn import LightGCN
from engine.models.pop import Pop
from engine.models.vae import MultDAE, MultVAE
from engine.train import TrainConfig

MODELS: dict[str, type[Recommender]] = {
    "pop": Pop,
    "itemknn": ItemKNN,
    "ease": EASE,
    "fism": FISM,
    "multvae": MultVAE,
    "multdae": MultDAE,
    "fism-neumf": FISMNeuMF,
    "diffrec": DiffRec,
    "ials": IALS,
    "bpr": BPR,
    "lightgcn": LightGCN,
}

RETIRED: dict[str, str] = {"mf": "fism", "neumf": "fism-neumf"}
"""Former model names and the registry names of the same models."""


def canonical_name(name: str) -> str:
    """``name`` normalised (stripped, lower case), a retired name replaced by its new name."""
    key = str(name).strip().lower()
    return RETIRED.get(key, key)


def retired_message(name: str) -> str | None:
    """The one-line explanation for a retired model name; ``None`` for any other name."""
    key = str(name).strip().lower()
    if key not in RETIRED:
        return None
    return (
        f"model {key!r} is retired: it was a history-encoder (FISM-style) model, now "
        f"{RETIRED[key]!r}; for the classic BPR matrix factorisation use 'bpr' "
        f"(runs saved as {key!r} still load as {RETIRED[key]!r})"
    )


def check_new(name: str) -> str:
    """The registry name to train for ``name``; :class:`ReclensError` for a retired or an
    unknown name (training under a retired name is refused, loading is not)."""
    message = retired_message(name)
    if message is not None:
        raise ReclensError(message)
    return model_class(name).name


def model_names() -> list[str]:
    """Every registered model name, in registry order."""
    return list(MODELS)


def available_models() -> list[str]:
    """The registered names usable on this installation: all of them (imports are static)."""
    return model_names()


def model_class(name: str) -> type[Recommender]:
    """The class registered as ``name`` (or a retired name of it, see :data:`RETIRED`);
    :class:`ReclensError` for unknown names."""
    key = canonical_name(name)
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
