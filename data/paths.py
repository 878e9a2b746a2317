"""Where datasets are looked for: ``$RECLENS_DATA`` first, then the cache under ``$RECLENS_HOME``.

A named dataset such as ``ml-100k`` is found as ``<root>/ml-100k/`` (a folder in its original
layout) or ``<root>/ml-100k.zip`` (the official archive, read without extracting), where
``<root>`` is each folder of ``$RECLENS_DATA`` (several may be joined with ``os.pathsep``) and then
``$RECLENS_HOME/datasets`` (``$RECLENS_HOME`` defaults to ``~/.cache/reclens``).
"""

from __future__ import annotations

import os
from pathlib import Path

DATA_ENV = "RECLENS_DATA"
HOME_ENV = "RECLENS_HOME"
DEFAULT_HOME = Path("~/.cache/reclens")


def reclens_home() -> Path:
    """The RecLens cache folder: ``$RECLENS_HOME`` or ``~/.cache/reclens`` (not created here)."""
    value = os.environ.get(HOME_ENV, "").strip()
    return Path(value).expanduser() if value else DEFAULT_HOME.expanduser()


def cache_dir() -> Path:
    """Folder downloaded datasets go to: ``<reclens_home>/datasets`` (not created here)."""
    return reclens_home() / "datasets"


def data_dirs() -> list[Path]:
    """The folders named by ``$RECLENS_DATA``, in order (empty when it is unset)."""
    value = os.environ.get(DATA_ENV, "")
    return [Path(part).expanduser() for part in value.split(os.pathsep) if part.strip()]


def search_roots() -> list[Path]:
    """Every folder a named dataset is looked for in: ``$RECLENS_DATA`` folders, then the cache."""
    return [*data_dirs(), cache_dir()]


def find_named(name: str) -> Path | None:
    """The folder or zip holding dataset ``name``, or ``None`` when it is nowhere to be found.

    In each root the folder ``<root>/<name>/`` wins over ``<root>/<name>.zip``.
    """
    for root in search_roots():
        folder = root / name
        if folder.is_dir():
            return folder
        archive = root / f"{name}.zip"
        if archive.is_file():
            return archive
    return None


def placement_hint(name: str) -> str:
    """Where to put ``<name>.zip`` (or the unzipped ``<name>/`` folder) so that it is found."""
    dirs = data_dirs()
    if dirs:
        return f"place {name}.zip (or the unzipped {name}/ folder) in {dirs[0]} ($RECLENS_DATA)"
    return (
        f"place {name}.zip (or the unzipped {name}/ folder) in {cache_dir()}, "
        f"or in a folder named by $RECLENS_DATA"
    )
