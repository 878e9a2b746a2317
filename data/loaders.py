"""One entry point for every source: ``load(source, **options) -> Dataset``.

A source is a known name (``ml-100k``, ``ml-1m``, ``ml-latest-small``, ``ml-20m``, ``ml-25m``,
``synthetic``), a folder (a MovieLens dataset recognised by its files, RecBole atomic files, or
a pre-split benchmark folder) or a file whose format follows from its extension (``.csv``,
``.tsv``, ``.parquet``, ``.inter``, or the ``.zip`` of a MovieLens dataset).
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from data import download, paths
from data.dataset import Dataset
from data.errors import DataError
from data.movielens import MOVIELENS_NAMES, MovieLensFiles, load_movielens
from data.presplit import find_parts, load_presplit
from data.recbole import load_recbole
from data.tabular import CSV_EXTENSIONS, PARQUET_EXTENSIONS, load_table

SYNTHETIC = "synthetic"
COLUMN_OPTIONS = ("user_col", "item_col", "rating_col", "time_col")
DESCRIPTIONS = {
    "ml-100k": "MovieLens 100K: 100,000 ratings by 943 users on 1,682 movies, with demographics",
    "ml-1m": "MovieLens 1M: 1,000,209 ratings by 6,040 users on 3,706 movies, with demographics",
    "ml-latest-small": "MovieLens latest (small): about 100,000 ratings by 610 users",
    "ml-20m": "MovieLens 20M: 20,000,263 ratings by 138,493 users on 26,744 movies",
    "ml-25m": "MovieLens 25M: 25,000,095 ratings by 162,541 users on 59,047 movies",
    SYNTHETIC: "Synthetic users in communities with genre tastes, with known ground truth",
}


@dataclass(frozen=True)
class SourceInfo:
    """A named source and where it is found (``None``: not available locally)."""

    name: str
    kind: str
    description: str
    location: Path | None

    @property
    def available(self) -> bool:
        """Whether it can be loaded without a download."""
        return self.kind == SYNTHETIC or self.location is not None

    def status(self) -> str:
        """Where it is, or what to do to get it, in one line."""
        if self.kind == SYNTHETIC:
            return "generated on demand"
        if self.location is not None:
            return str(self.location)
        return f"not found: {paths.placement_hint(self.name)} or run reclens data fetch {self.name}"


def known_sources() -> list[SourceInfo]:
    """Every named source, with the folder or zip it would be loaded from."""
    infos = [
        SourceInfo(name, "movielens", DESCRIPTIONS[name], paths.find_named(name))
        for name in MOVIELENS_NAMES
    ]
    infos.append(SourceInfo(SYNTHETIC, SYNTHETIC, DESCRIPTIONS[SYNTHETIC], None))
    return infos


def load(source: str | Path, **options: Any) -> Dataset:
    """Load ``source`` into a :class:`Dataset`.

    Options (``None`` values are ignored):

    - any source but ``synthetic``: ``name`` (the dataset's name);
    - interaction tables, RecBole and pre-split folders: ``user_col``, ``item_col``,
      ``rating_col``, ``time_col`` (column names, else common names are recognised);
      tables and pre-split folders also ``items_path`` (an items CSV/TSV/Parquet file);
    - MovieLens names: ``download`` (default ``True``: fetch from GroupLens when not found);
    - ``synthetic``: the keyword arguments of :func:`data.synthetic.generate`.

    Every user mistake raises :class:`~data.errors.DataError` (or
    :class:`~data.errors.DownloadError`) with a one-line message naming the file.
    """
    options = {k: v for k, v in options.items() if v is not None}
    text = str(source)
    if text == SYNTHETIC:
        from data.synthetic import generate  # lazy: the generator is only needed here

        try:
            return generate(**options)
        except TypeError as err:
            raise DataError(f"synthetic: bad option ({err})") from None
    if text in MOVIELENS_NAMES:
        _only(text, options, ("name", "download"))
        found = paths.find_named(text)
        if found is None:
            if not options.get("download", True):
                raise DataError(
                    f"{text}: not found; {paths.placement_hint(text)} "
                    f"or run reclens data fetch {text}"
                )
            found = download.fetch(text)
        return load_movielens(found, name=options.get("name", text))
    path = Path(text).expanduser()
    if not path.exists():
        if _looks_like_name(text):
            raise DataError(_unknown_name(text))
        raise DataError(f"{path}: no such file or folder")
    if path.is_dir():
        return _load_folder(path, options)
    return _load_file(path, options)


def _load_folder(path: Path, options: dict[str, Any]) -> Dataset:
    with MovieLensFiles(path) as files:
        layout = files.layout()
    if layout is not None:
        _only(str(path), options, ("name",))
        return load_movielens(path, name=options.get("name"))
    if any(path.glob("*.inter")):
        _only(str(path), options, ("name", *COLUMN_OPTIONS))
        return load_recbole(path, **options)
    if find_parts(path) is not None:
        _only(str(path), options, ("name", "items_path", *COLUMN_OPTIONS))
        return load_presplit(path, **options)
    raise DataError(
        f"{path}: not a dataset folder (expected MovieLens files such as u.data or "
        f"ratings.csv, RecBole <name>.inter, or pre-split train/test files)"
    )


def _load_file(path: Path, options: dict[str, Any]) -> Dataset:
    suffix = path.suffix.lower()
    if suffix == ".zip":
        _only(str(path), options, ("name",))
        return load_movielens(path, name=options.get("name"))
    if suffix == ".inter":
        _only(str(path), options, ("name", *COLUMN_OPTIONS))
        return load_recbole(path, **options)
    if suffix in CSV_EXTENSIONS or suffix in PARQUET_EXTENSIONS:
        _only(str(path), options, ("name", "items_path", *COLUMN_OPTIONS))
        return load_table(path, **options)
    known = ", ".join([*CSV_EXTENSIONS, *PARQUET_EXTENSIONS, ".inter", ".zip"])
    raise DataError(f"{path}: unsupported file type {suffix or '(none)'} (supported: {known})")


def _only(label: str, options: dict[str, Any], allowed: tuple[str, ...]) -> None:
    extra = sorted(set(options) - set(allowed))
    if extra:
        takes = ", ".join(allowed) if allowed else "no options"
        raise DataError(f"{label}: unexpected option(s) {', '.join(extra)} (it takes {takes})")


def _looks_like_name(text: str) -> bool:
    """A bare word such as ``ml-10k`` (no folder separator, no file extension)."""
    return "/" not in text and "\\" not in text and not Path(text).suffix


def _unknown_name(text: str) -> str:
    names = [*MOVIELENS_NAMES, SYNTHETIC]
    close = difflib.get_close_matches(text, names, n=3, cutoff=0.5)
    hint = f"; did you mean {' or '.join(close)}?" if close else ""
    return (
        f"{text}: unknown dataset name and no such file or folder "
        f"(known names: {', '.join(names)}){hint}"
    )
