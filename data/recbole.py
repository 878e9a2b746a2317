"""RecBole atomic files: ``<name>.inter`` plus optional ``<name>.item`` and ``<name>.user``.

Each file is tab-separated with a header of ``name:type`` fields, for example
``user_id:token	item_id:token	rating:float	timestamp:float``. Types are ``token`` (a
string), ``token_seq`` (space-separated strings), ``float`` and ``float_seq``. Interaction
columns are found by name (``user_id``, ``item_id``, ``rating``, ``timestamp`` and the other
common names) unless given as options; item titles come from ``title``/``movie_title``,
genres from ``genre``/``class`` and years from ``year``/``release_year``.
"""

from __future__ import annotations

from pathlib import Path

import polars as pl

from data.dataset import Dataset
from data.errors import DataError
from data.tabular import (
    GENRE_NAMES,
    TITLE_NAMES,
    YEAR_NAMES,
    TableRef,
    assemble,
    check_file,
    interactions_from_frame,
    read_text_table,
    resolve_column,
    to_float,
    to_ids,
    year_from_title,
)

FIELD_TYPES = ("token", "token_seq", "float", "float_seq")


def find_inter(path: Path, name: str | None = None) -> Path:
    """The ``.inter`` file of a RecBole folder (or ``path`` itself when it is one).

    In a folder, ``<name>.inter`` wins, then ``<folder name>.inter``, then the only ``.inter``.
    """
    if path.is_file():
        return path
    candidates = sorted(path.glob("*.inter"))
    for stem in (name, path.name):
        if stem and (path / f"{stem}.inter").is_file():
            return path / f"{stem}.inter"
    if len(candidates) == 1:
        return candidates[0]
    if not candidates:
        raise DataError(f"{path}: no .inter file in this folder")
    names = ", ".join(c.name for c in candidates)
    raise DataError(f"{path}: several .inter files ({names}); pass name= to choose one")


def read_atomic(path: Path) -> tuple[pl.DataFrame, dict[str, str], TableRef]:
    """Read one atomic file: the table (typed by its header), ``{column: type}`` and its ref."""
    check_file(path)
    ref = TableRef(str(path), 2)
    raw = read_text_table(path, ref, separator="\t", quote_char=None, all_strings=True)
    types: dict[str, str] = {}
    renames: dict[str, str] = {}
    for n, field in enumerate(raw.columns, start=1):
        base, sep, kind = field.rpartition(":")
        if not sep or not base:
            raise DataError(
                f"{path}: line 1, column {n}: header field {field!r} has no type "
                f"(expected name:type, type one of {', '.join(FIELD_TYPES)})"
            )
        if kind not in FIELD_TYPES:
            raise DataError(
                f"{path}: line 1, column {n}: unknown field type {kind!r} in {field!r} "
                f"(expected one of {', '.join(FIELD_TYPES)})"
            )
        types[base] = kind
        renames[field] = base
    frame = raw.rename(renames)
    return frame, types, ref


def _typed(series: pl.Series, kind: str, ref: TableRef) -> pl.Series:
    """Convert an attribute column by its declared type."""
    name = series.name
    if kind == "float":
        return to_float(series, ref, name)
    if kind == "token_seq":
        return (
            series.str.strip_chars()
            .str.split(" ")
            .list.eval(pl.element().filter(pl.element() != ""))
        )
    if kind == "float_seq":
        parts = (
            series.str.strip_chars()
            .str.split(" ")
            .list.eval(pl.element().filter(pl.element() != ""))
        )
        floats = parts.list.eval(pl.element().cast(pl.Float64, strict=False))
        bad = (parts.list.len() != floats.list.drop_nulls().list.len()).fill_null(False).arg_true()
        if bad.len():
            row = int(bad[0])
            raise DataError(f"{ref.at(row, name)}: {series[row]!r} is not a list of numbers")
        return floats
    return series


def _read_items(path: Path, item_col: str | None) -> pl.DataFrame:
    frame, types, ref = read_atomic(path)
    cols = frame.columns
    icol = resolve_column(
        cols, item_col if item_col in cols else None, ("item_id", "item", "itemId", "movieId"),
        "item id", ref, required=True, option="item_col",
    )  # fmt: skip
    tcol = resolve_column(cols, None, TITLE_NAMES, "title", ref, required=False)
    gcol = resolve_column(cols, None, GENRE_NAMES, "genres", ref, required=False)
    ycol = resolve_column(cols, None, YEAR_NAMES, "year", ref, required=False)
    out = [to_ids(frame[icol], ref, icol, "item").alias("item")]
    if tcol is not None:
        out.append(frame[tcol].str.strip_chars().alias("title"))
    if gcol is not None:
        out.append(_typed(frame[gcol], "token_seq", ref).alias("genres"))
    if ycol is not None:
        out.append(to_float(frame[ycol], ref, ycol).round(0).cast(pl.Int32).alias("year"))
    elif tcol is not None:
        out.append(year_from_title(frame[tcol]))
    used = {icol, tcol, gcol, ycol}
    reserved = {"item", "raw_id", "title", "genres", "year"}
    out += [_typed(frame[c], types[c], ref) for c in cols if c not in used and c not in reserved]
    return pl.DataFrame(out)


def _read_users(path: Path, user_col: str | None) -> pl.DataFrame:
    frame, types, ref = read_atomic(path)
    cols = frame.columns
    ucol = resolve_column(
        cols, user_col if user_col in cols else None, ("user_id", "user", "userId"),
        "user id", ref, required=True, option="user_col",
    )  # fmt: skip
    out = [to_ids(frame[ucol], ref, ucol, "user").alias("user")]
    out += [_typed(frame[c], types[c], ref) for c in cols if c not in (ucol, "user", "raw_id")]
    return pl.DataFrame(out)


def load_recbole(
    path: str | Path,
    *,
    name: str | None = None,
    user_col: str | None = None,
    item_col: str | None = None,
    rating_col: str | None = None,
    time_col: str | None = None,
) -> Dataset:
    """Load RecBole atomic files from a folder (or from a ``.inter`` file and its siblings)."""
    path = Path(path).expanduser()
    if not path.exists():
        raise DataError(f"{path}: no such file or folder")
    inter_path = find_inter(path, name)
    stem = inter_path.stem
    frame, _types, ref = read_atomic(inter_path)
    inter = interactions_from_frame(
        frame, ref, user_col=user_col, item_col=item_col, rating_col=rating_col, time_col=time_col
    )
    item_path = inter_path.with_suffix(".item")
    user_path = inter_path.with_suffix(".user")
    items = _read_items(item_path, item_col) if item_path.exists() else None
    users = _read_users(user_path, user_col) if user_path.exists() else None
    return assemble(
        name or stem,
        inter,
        items=items,
        users=users,
        source=str(inter_path.parent),
        meta={"format": "recbole", "inter": inter_path.name},
    )
