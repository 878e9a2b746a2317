"""What a run was made from: the typed contents of a run folder's ``config.json``.

:class:`RunConfig` is written by :func:`engine.pipeline.train_run` (through
:func:`engine.runs.save_run`) and read back by :func:`engine.runs.load_run` and
:func:`engine.runs.list_runs`; nothing else parses ``config.json``. :meth:`RunConfig.from_json`
checks every field's type, so a hand-edited or foreign file is refused with one line naming the
file and the field instead of failing later with a ``KeyError`` or ``AttributeError``.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from data.errors import ReclensError


class ConfigError(ReclensError):
    """A ``config.json`` lacks a field or holds one of the wrong type."""


@dataclass(frozen=True)
class DatasetSpec:
    """How to load the data again.

    ``name``: the dataset's name; ``kind``: ``source`` (loaded by :func:`data.loaders.load`
    from ``source`` with ``options``) or ``dataset`` (an in-memory dataset, given back by the
    caller); ``description``: the loader's description of the source.
    """

    name: str
    kind: str = "source"
    source: str = ""
    options: dict[str, Any] = field(default_factory=dict)
    description: str = ""


@dataclass(frozen=True)
class SplitSpec:
    """The split protocol, its ratios, the fold-in share of strong splits and the seed."""

    protocol: str
    ratios: tuple[float, ...] = (0.8, 0.1, 0.1)
    fold_in: float = 0.8
    seed: int = 0


@dataclass(frozen=True)
class RunConfig:
    """Everything needed to rebuild a run's model and data.

    ``model``/``hparams``: the registry name and constructor arguments; ``n_items``: the
    catalogue size the model was built for; ``prepare``: :func:`data.prepare.prepare` options;
    ``train``: the :class:`~engine.train.TrainConfig` used; ``fingerprint``: what identifies the
    training data (see :func:`engine.runs.fingerprint`); ``embeddings``: ``kind``, ``note`` and
    ``dims`` of the saved representations; ``created``: ISO time of saving; ``format``: the
    run-folder format version; ``preset``: the named configuration the run was started from
    (:mod:`engine.presets`; empty for the model's defaults).
    """

    model: str
    hparams: dict[str, Any]
    dataset: DatasetSpec
    split: SplitSpec
    n_items: int = 0
    prepare: dict[str, Any] = field(default_factory=dict)
    train: dict[str, Any] = field(default_factory=dict)
    device: str = ""
    versions: dict[str, str] = field(default_factory=dict)
    fingerprint: dict[str, Any] = field(default_factory=dict)
    embeddings: dict[str, Any] = field(default_factory=dict)
    created: str = ""
    format: int = 1
    preset: str = ""

    @property
    def seed(self) -> int:
        """The split (and training) seed."""
        return self.split.seed

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready dict in the layout of ``config.json``."""
        out = asdict(self)
        out["split"]["ratios"] = list(self.split.ratios)
        return out

    @classmethod
    def from_json(cls, value: Any, where: str = "config.json") -> RunConfig:
        """Parse a ``config.json`` object; :class:`ConfigError` naming ``where`` and the field."""
        top = _mapping(value, where, "the file")
        data = _mapping(top.get("dataset"), where, "dataset")
        split = _mapping(top.get("split"), where, "split")
        ratios = split.get("ratios", [0.8, 0.1, 0.1])
        if not isinstance(ratios, list) or not all(_is_number(r) for r in ratios):
            raise ConfigError(f"{where}: split.ratios must be a list of numbers")
        return cls(
            model=_typed(top, "model", str, where),
            hparams=_typed(top, "hparams", dict, where),
            n_items=_typed(top, "n_items", int, where, 0),
            dataset=DatasetSpec(
                name=_typed(data, "name", str, where, prefix="dataset."),
                kind=_typed(data, "kind", str, where, "source", "dataset."),
                source=_typed(data, "source", str, where, "", "dataset."),
                options=_typed(data, "options", dict, where, {}, "dataset."),
                description=_typed(data, "description", str, where, "", "dataset."),
            ),
            split=SplitSpec(
                protocol=_typed(split, "protocol", str, where, "random", "split."),
                ratios=tuple(float(r) for r in ratios),
                fold_in=float(_typed(split, "fold_in", float, where, 0.8, "split.")),
                seed=_typed(split, "seed", int, where, 0, "split."),
            ),
            prepare=_typed(top, "prepare", dict, where, {}),
            train=_typed(top, "train", dict, where, {}),
            device=_typed(top, "device", str, where, ""),
            versions=_typed(top, "versions", dict, where, {}),
            fingerprint=_typed(top, "fingerprint", dict, where, {}),
            embeddings=_typed(top, "embeddings", dict, where, {}),
            created=_typed(top, "created", str, where, ""),
            format=_typed(top, "format", int, where, 1),
            preset=_typed(top, "preset", str, where, ""),
        )


_MISSING = object()
_TYPE_NAMES = {str: "a string", int: "an integer", float: "a number", dict: "an object"}


def _mapping(value: Any, where: str, what: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise ConfigError(f"{where}: {what} must be a JSON object")
    return value


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _typed(
    values: dict[str, Any],
    key: str,
    kind: type,
    where: str,
    default: Any = _MISSING,
    prefix: str = "",
) -> Any:
    """``values[key]`` checked to be of ``kind`` (numbers: int or float; never bool)."""
    if key not in values or values[key] is None:
        if default is _MISSING:
            raise ConfigError(f"{where}: missing field {prefix}{key}")
        return default
    value = values[key]
    ok = _is_number(value) if kind is float else isinstance(value, kind)
    if kind is int and isinstance(value, bool):
        ok = False
    if not ok:
        raise ConfigError(f"{where}: field {prefix}{key} must be {_TYPE_NAMES[kind]}")
    return value
