"""Generic interaction tables (CSV, TSV, Parquet) and the reading primitives every loader shares.

The primitives turn raw columns into checked ones without Python loops over rows: ids
(:func:`to_ids`), ratings (:func:`to_float`) and timestamps (:func:`to_seconds`) are converted
with polars, and the first value that does not convert is reported with its file, line and
column. :func:`assemble` then maps raw ids to contiguous indices (integer ids by numeric value,
otherwise by string) and builds the :class:`~data.dataset.Dataset`.

:func:`load_table` is the generic source: any CSV, TSV or Parquet file of interactions whose
columns are named with options or recognised from common names (``user``, ``user_id``,
``userId`` ...), plus an optional items file.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import polars as pl

from data.dataset import Dataset
from data.errors import DataError

USER_NAMES = ("user", "user_id", "userId", "userID")
ITEM_NAMES = ("item", "item_id", "movieId", "itemId", "itemID")
RATING_NAMES = ("rating", "score")
TIME_NAMES = ("timestamp", "time", "ts")
TITLE_NAMES = ("title", "name", "movie_title")
GENRE_NAMES = ("genres", "genre", "categories", "class")
YEAR_NAMES = ("year", "release_year")

CSV_EXTENSIONS = {".csv": ",", ".tsv": "\t", ".tab": "\t"}
PARQUET_EXTENSIONS = (".parquet", ".pq")
NO_GENRE = "(no genres listed)"
YEAR_IN_TITLE = r"\((\d{4})\)\s*$"
_NUMBER = re.compile(r"^\s*[-+]?\d+(\.\d*)?([eE][-+]?\d+)?\s*$")
_INFER_ROWS = 10_000


# -- positions in files ---------------------------------------------------------------------
@dataclass(frozen=True)
class TableRef:
    """A table's origin, for error messages.

    ``label`` is the file as shown to the user (a path, or ``archive.zip:member``);
    ``first_line`` the line number of the first data row, or ``None`` for Parquet (rows are
    then reported by their 1-based row number).
    """

    label: str
    first_line: int | None = 2

    def at(self, row: int, column: str) -> str:
        """``"<file>: line N, column 'c'"`` for 0-based data row ``row``."""
        pos = f"line {row + self.first_line}" if self.first_line is not None else f"row {row + 1}"
        return f"{self.label}: {pos}, column '{column}'"


def polars_message(err: BaseException) -> str:
    """The first meaningful line of a polars (or OS) error, for one-line messages."""
    for line in str(err).splitlines():
        line = line.strip()
        if line:
            return line
    return type(err).__name__


# -- reading ----------------------------------------------------------------------------------
def read_text_table(
    source: Path | bytes,
    ref: TableRef,
    *,
    separator: str,
    has_header: bool = True,
    new_columns: Sequence[str] | None = None,
    quote_char: str | None = '"',
    all_strings: bool = False,
) -> pl.DataFrame:
    """Read a delimited table with polars' native reader; errors become :class:`DataError`.

    Types are inferred; when inference fails further down the file (a stray word in a number
    column), the table is read again as strings so the caller's checks can name the bad line.
    """
    if isinstance(source, bytes) and not source.strip():
        raise DataError(f"{ref.label}: the file is empty")
    options: dict[str, Any] = {
        "separator": separator,
        "has_header": has_header,
        "new_columns": list(new_columns) if new_columns else None,
        "quote_char": quote_char,
    }
    attempts = (
        [{"infer_schema": False}]
        if all_strings
        else [
            {"infer_schema_length": _INFER_ROWS},
            {"infer_schema": False},
        ]
    )
    for n, attempt in enumerate(attempts):
        try:
            return pl.read_csv(source, **options, **attempt)
        except pl.exceptions.NoDataError:
            raise DataError(f"{ref.label}: the file is empty") from None
        except (pl.exceptions.PolarsError, OSError, UnicodeDecodeError) as err:
            if n == len(attempts) - 1:
                raise DataError(f"{ref.label}: cannot read it ({polars_message(err)})") from None
    raise AssertionError("unreachable")  # pragma: no cover


def read_parquet_table(path: Path, ref: TableRef) -> pl.DataFrame:
    """Read a Parquet file; errors become :class:`DataError` naming it."""
    try:
        return pl.read_parquet(path)
    except (pl.exceptions.PolarsError, OSError) as err:
        raise DataError(f"{ref.label}: cannot read it as Parquet ({polars_message(err)})") from None


def read_any_table(path: Path) -> tuple[pl.DataFrame, TableRef]:
    """Read a CSV, TSV or Parquet file (format from the extension) with a header row.

    A delimited file whose first line is all numbers is taken as headerless, with columns
    ``user``, ``item``, ``rating``, ``timestamp`` in that order (extra columns ``column_5``...).
    The separator follows the extension, unless the first line only has tabs (or only commas).
    """
    path = Path(path)
    check_file(path)
    suffix = path.suffix.lower()
    if suffix in PARQUET_EXTENSIONS:
        ref = TableRef(str(path), None)
        return read_parquet_table(path, ref), ref
    first = _first_line(path)
    if not first.strip():
        raise DataError(f"{path}: the file is empty")
    separator = _sniff_separator(first, CSV_EXTENSIONS.get(suffix, ","))
    fields = first.split(separator)
    headerless = all(_NUMBER.match(f) for f in fields)
    names = None
    if headerless:
        base = ["user", "item", "rating", "timestamp"]
        names = [base[k] if k < len(base) else f"column_{k + 1}" for k in range(len(fields))]
    ref = TableRef(str(path), 1 if headerless else 2)
    frame = read_text_table(
        path, ref, separator=separator, has_header=not headerless, new_columns=names
    )
    return frame, ref


def check_file(path: Path) -> None:
    """Raise :class:`DataError` unless ``path`` is an existing, non-empty file."""
    if not path.exists():
        raise DataError(f"{path}: no such file")
    if not path.is_file():
        raise DataError(f"{path}: not a file")
    if path.stat().st_size == 0:
        raise DataError(f"{path}: the file is empty")


def _first_line(path: Path) -> str:
    with path.open("rb") as handle:
        head = handle.read(65536)
    return head.split(b"\n", 1)[0].rstrip(b"\r").decode("utf-8", errors="replace")


def _sniff_separator(line: str, default: str) -> str:
    if default in line:
        return default
    for candidate in ("\t", ",", ";", "|"):
        if candidate in line:
            return candidate
    return default


# -- columns ----------------------------------------------------------------------------------
def resolve_column(
    columns: Sequence[str],
    explicit: str | None,
    candidates: Sequence[str],
    role: str,
    ref: TableRef,
    *,
    required: bool,
    option: str | None = None,
) -> str | None:
    """The column playing ``role``: ``explicit`` if given (it must exist), else a known name.

    Known names match exactly first, then ignoring case. A missing required column raises
    :class:`DataError` listing the columns found and the option that names it.
    """
    shown = ", ".join(columns) if columns else "(none)"
    flag = f" (name it with --{option.replace('_', '-')})" if option else ""
    if explicit is not None:
        if explicit in columns:
            return explicit
        raise DataError(f"{ref.label}: no column '{explicit}' for the {role}; columns are: {shown}")
    for name in candidates:
        if name in columns:
            return name
    lowered = {c.lower(): c for c in columns}
    for name in candidates:
        if name.lower() in lowered:
            return lowered[name.lower()]
    if required:
        raise DataError(
            f"{ref.label}: no {role} column (looked for {', '.join(candidates)}); "
            f"columns are: {shown}{flag}"
        )
    return None


# -- conversions --------------------------------------------------------------------------------
def first_bad_row(original: pl.Series, converted: pl.Series) -> int | None:
    """Index of the first value present in ``original`` but null after conversion."""
    bad = (original.is_not_null() & converted.is_null()).arg_true()
    return int(bad[0]) if bad.len() else None


def to_ids(series: pl.Series, ref: TableRef, column: str, role: str) -> pl.Series:
    """Raw ids, kept as integers when they are integers and as strings otherwise.

    Missing ids raise :class:`DataError` at their line. Floats that are all whole numbers (as
    some Parquet writers store ids) become integers.
    """
    if series.null_count():
        row = int(series.is_null().arg_true()[0])
        raise DataError(f"{ref.at(row, column)}: missing {role} id")
    dtype = series.dtype
    if dtype.is_integer():
        as_int = series.cast(pl.Int64, strict=False)
        return as_int if not as_int.null_count() else series.cast(pl.String)  # past 64 bits
    if dtype.is_float():
        whole = series.is_finite().all() and (series.round(0) == series).all()
        return series.cast(pl.Int64) if whole else series.cast(pl.String)
    if dtype == pl.String:
        return series.str.strip_chars()
    if dtype == pl.Categorical or dtype == pl.Enum:
        return series.cast(pl.String)
    try:
        return series.cast(pl.String)
    except pl.exceptions.PolarsError:
        raise DataError(f"{ref.label}: column '{column}' holds {dtype}, not ids") from None


def to_int_ids(series: pl.Series, ref: TableRef, column: str, role: str) -> pl.Series:
    """Ids that must be integers (pre-split benchmark formats); the first non-integer fails."""
    ids = to_ids(series, ref, column, role)
    if ids.dtype == pl.Int64:
        return ids
    as_int = ids.cast(pl.String).cast(pl.Int64, strict=False)
    row = first_bad_row(ids, as_int)
    if row is not None:
        raise DataError(f"{ref.at(row, column)}: {role} id {ids[row]!r} is not an integer")
    return as_int


def to_float(series: pl.Series, ref: TableRef, column: str) -> pl.Series:
    """Float64 ratings; the first value that is not a finite number raises :class:`DataError`."""
    dtype = series.dtype
    if dtype.is_numeric() or dtype == pl.Boolean:
        out = series.cast(pl.Float64)
    elif dtype == pl.String:
        out = series.str.strip_chars().cast(pl.Float64, strict=False)
    else:
        raise DataError(f"{ref.label}: column '{column}' holds {dtype}, not numbers")
    row = first_bad_row(series, out)
    if row is not None:
        raise DataError(f"{ref.at(row, column)}: {series[row]!r} is not a number")
    bad = (~out.is_finite()).fill_null(False).arg_true()
    if bad.len():
        row = int(bad[0])
        raise DataError(f"{ref.at(row, column)}: {series[row]!r} is not a finite number")
    return out


def to_seconds(series: pl.Series, ref: TableRef, column: str) -> pl.Series:
    """Int64 Unix seconds from integers, floats, datetimes, dates or date/number strings."""
    dtype = series.dtype
    if dtype.is_integer():
        as_int = series.cast(pl.Int64, strict=False)
        return as_int if not as_int.null_count() else series.cast(pl.String)  # past 64 bits
    if dtype.is_float():
        return to_float(series, ref, column).round(0).cast(pl.Int64)
    if isinstance(dtype, pl.Datetime):
        return series.dt.epoch("s")
    if dtype == pl.Date:
        return series.cast(pl.Datetime("us")).dt.epoch("s")
    if dtype != pl.String:
        raise DataError(f"{ref.label}: column '{column}' holds {dtype}, not timestamps")
    text = series.str.strip_chars()
    as_float = text.cast(pl.Float64, strict=False)
    as_float = as_float.set(as_float.is_nan().fill_null(False), None)
    numeric = text.cast(pl.Int64, strict=False).fill_null(as_float.round(0).cast(pl.Int64))
    if first_bad_row(text, numeric) is None:
        return numeric
    dates = pl.select(pl.when(numeric.is_null()).then(pl.lit(text))).to_series()
    try:
        epoch = dates.str.to_datetime(strict=False, time_unit="us").dt.epoch("s")
    except pl.exceptions.PolarsError:
        epoch = pl.Series(column, [None] * text.len(), dtype=pl.Int64)
    stamps = numeric.fill_null(epoch)
    row = first_bad_row(text, stamps)
    if row is not None:
        raise DataError(
            f"{ref.at(row, column)}: {series[row]!r} is not a timestamp (seconds or a date)"
        )
    return stamps


def genres_list(series: pl.Series) -> pl.Series:
    """Genres as lists of strings: ``"A|B"`` strings are split, lists kept, empties dropped."""
    if isinstance(series.dtype, pl.List):
        lists = series.cast(pl.List(pl.String))
    else:
        lists = series.cast(pl.String).str.split("|")
    keep = (pl.element() != "") & (pl.element() != NO_GENRE)
    frame = pl.DataFrame({"g": lists})
    cleaned = frame.select(
        pl.col("g").list.eval(pl.element().str.strip_chars()).list.eval(pl.element().filter(keep))
    )["g"]
    return cleaned.fill_null(pl.lit([], dtype=pl.List(pl.String))).alias(series.name)


def year_from_title(titles: pl.Series) -> pl.Series:
    """The year in a trailing ``(YYYY)`` of each title (Int32, null where there is none)."""
    return titles.str.extract(YEAR_IN_TITLE, 1).cast(pl.Int32, strict=False).alias("year")


# -- indices and assembly -----------------------------------------------------------------------
def _unify(series: Sequence[pl.Series]) -> list[pl.Series]:
    if all(s.dtype.is_integer() for s in series):
        return [s.cast(pl.Int64) for s in series]
    return [s.cast(pl.String) for s in series]


def build_index(keys: Sequence[pl.Series]) -> pl.DataFrame:
    """Contiguous indices for every distinct raw id in ``keys`` (which share one dtype).

    Integer ids (or strings that all read as integers) are ordered by numeric value, so raw id
    ``"1"`` gets index 0 when it is the smallest; other ids are ordered as strings. Returns the
    columns ``key`` (the raw id in its own dtype), ``index`` (UInt32) and ``raw_id`` (String).
    """
    uniq = pl.concat([k.alias("key") for k in keys]).drop_nulls().unique()
    frame = pl.DataFrame({"key": uniq})
    if uniq.dtype == pl.String:
        numeric = uniq.str.to_integer(strict=False)
        if uniq.len() and numeric.null_count() == 0:
            frame = frame.with_columns(numeric.alias("_n")).sort(["_n", "key"]).drop("_n")
        else:
            frame = frame.sort("key")
    else:
        frame = frame.sort("key")
    return frame.with_columns(
        pl.int_range(pl.len(), dtype=pl.UInt32).alias("index"),
        pl.col("key").cast(pl.String).alias("raw_id"),
    )


def apply_index(frame: pl.DataFrame, column: str, index: pl.DataFrame) -> pl.DataFrame:
    """Replace raw ids in ``frame[column]`` by their UInt32 index (row order is kept)."""
    key_type = index["key"].dtype
    mapping = index.select(pl.col("key").alias(column), pl.col("index").alias("__index"))
    joined = frame.with_columns(pl.col(column).cast(key_type)).join(
        mapping, on=column, how="left", maintain_order="left"
    )
    return joined.drop(column).rename({"__index": column})


def _attributes(
    index: pl.DataFrame, table: pl.DataFrame | None, column: str, key_type: pl.DataType
) -> pl.DataFrame:
    """The items/users table: index and raw id, joined with attribute rows by raw id."""
    base = index.select(pl.col("index").alias(column), "raw_id", "key")
    if table is None or table.width <= 1:
        return base.drop("key")
    attrs = (
        table.drop([c for c in ("raw_id", "index") if c in table.columns])
        .with_columns(pl.col(column).cast(key_type))
        .unique(subset=column, keep="first", maintain_order=True)
        .rename({column: "key"})
    )
    return base.join(attrs, on="key", how="left", maintain_order="left").drop("key")


def assemble(
    name: str,
    interactions: pl.DataFrame | None,
    *,
    items: pl.DataFrame | None = None,
    users: pl.DataFrame | None = None,
    parts: dict[str, pl.DataFrame] | None = None,
    source: str = "",
    meta: dict[str, Any] | None = None,
) -> Dataset:
    """Index raw tables and build the :class:`Dataset`.

    ``interactions`` has raw ``user`` and ``item`` ids plus optional ``rating`` (Float64) and
    ``timestamp`` (Int64). ``items`` (keyed by raw ``item``) and ``users`` (keyed by raw
    ``user``) carry attributes; their ids are indexed too, so a catalogue item nobody rated is
    kept. With ``parts`` (``train``/``valid``/``test`` raw tables), ``interactions`` is their
    union and each part is indexed the same way.
    """
    if parts is not None:
        frames = [p for p in parts.values() if p.height]
        if not frames:
            raise DataError(f"{source or name}: every part is empty")
        interactions = pl.concat(frames, how="diagonal_relaxed")
    if interactions is None:
        raise DataError(f"{source or name}: no interactions")
    part_frames = dict(parts or {})
    user_keys = _unify(
        [interactions["user"]]
        + [p["user"] for p in part_frames.values()]
        + ([users["user"]] if users is not None else [])
    )
    item_keys = _unify(
        [interactions["item"]]
        + [p["item"] for p in part_frames.values()]
        + ([items["item"]] if items is not None else [])
    )
    user_index = build_index(user_keys)
    item_index = build_index(item_keys)

    def index_both(frame: pl.DataFrame) -> pl.DataFrame:
        frame = apply_index(frame, "user", user_index)
        return apply_index(frame, "item", item_index)

    items_table = _attributes(item_index, items, "item", item_index["key"].dtype)
    if "title" in items_table.columns:
        items_table = items_table.with_columns(pl.col("title").fill_null(pl.col("raw_id")))
    if "genres" in items_table.columns:
        items_table = items_table.with_columns(
            pl.col("genres").fill_null(pl.lit([], dtype=pl.List(pl.String)))
        )
    users_table = _attributes(user_index, users, "user", user_index["key"].dtype)
    indexed_parts = {k: index_both(v) for k, v in part_frames.items()} if parts else None
    return Dataset.build(
        name,
        index_both(interactions),
        items_table,
        users_table,
        parts=indexed_parts,
        source=source,
        meta=dict(meta or {}),
    )


# -- the generic source -------------------------------------------------------------------------
def read_interactions(
    path: Path,
    *,
    user_col: str | None = None,
    item_col: str | None = None,
    rating_col: str | None = None,
    time_col: str | None = None,
    int_ids: bool = False,
) -> pl.DataFrame:
    """Raw interactions (``user``, ``item``, ``rating``?, ``timestamp``?) from one table file.

    ``int_ids`` requires user and item ids to be integers (pre-split benchmark parts).
    """
    frame, ref = read_any_table(Path(path))
    return interactions_from_frame(
        frame,
        ref,
        user_col=user_col,
        item_col=item_col,
        rating_col=rating_col,
        time_col=time_col,
        int_ids=int_ids,
    )


def interactions_from_frame(
    frame: pl.DataFrame,
    ref: TableRef,
    *,
    user_col: str | None = None,
    item_col: str | None = None,
    rating_col: str | None = None,
    time_col: str | None = None,
    int_ids: bool = False,
) -> pl.DataFrame:
    """Pick, check and convert the interaction columns of an already-read table."""
    cols = frame.columns
    ucol = resolve_column(
        cols, user_col, USER_NAMES, "user id", ref, required=True, option="user_col"
    )
    icol = resolve_column(
        cols, item_col, ITEM_NAMES, "item id", ref, required=True, option="item_col"
    )
    rcol = resolve_column(cols, rating_col, RATING_NAMES, "rating", ref, required=False)
    tcol = resolve_column(cols, time_col, TIME_NAMES, "timestamp", ref, required=False)
    if frame.height == 0:
        raise DataError(f"{ref.label}: no interactions (the table has a header but no rows)")
    convert = to_int_ids if int_ids else to_ids
    out = [
        convert(frame[ucol], ref, ucol, "user").alias("user"),
        convert(frame[icol], ref, icol, "item").alias("item"),
    ]
    if rcol is not None:
        out.append(to_float(frame[rcol], ref, rcol).alias("rating"))
    if tcol is not None:
        out.append(to_seconds(frame[tcol], ref, tcol).alias("timestamp"))
    return pl.DataFrame(out)


def read_items(path: Path, *, item_col: str | None = None) -> pl.DataFrame:
    """An items file: raw ``item`` id plus ``title``, ``genres``, ``year`` and extra columns.

    The id column is ``item_col`` or a common name (``item``, ``item_id``, ``movieId``, ``id``
    ...); title, genres (``A|B`` strings or lists) and year are recognised by name, the year
    falling back to a trailing ``(YYYY)`` in the title. Other columns are kept as they are.
    """
    frame, ref = read_any_table(Path(path))
    if frame.height == 0:
        raise DataError(f"{ref.label}: no items (the table has a header but no rows)")
    cols = frame.columns
    icol = resolve_column(
        cols,
        item_col if item_col in cols else None,
        (*ITEM_NAMES, "id"),
        "item id",
        ref,
        required=True,
        option="item_col",
    )
    tcol = resolve_column(cols, None, TITLE_NAMES, "title", ref, required=False)
    gcol = resolve_column(cols, None, GENRE_NAMES, "genres", ref, required=False)
    ycol = resolve_column(cols, None, YEAR_NAMES, "year", ref, required=False)
    out = [to_ids(frame[icol], ref, icol, "item").alias("item")]
    if tcol is not None:
        out.append(frame[tcol].cast(pl.String).alias("title"))
    if gcol is not None:
        out.append(genres_list(frame[gcol]).alias("genres"))
    if ycol is not None:
        out.append(frame[ycol].cast(pl.Int32, strict=False).alias("year"))
    elif tcol is not None:
        out.append(year_from_title(frame[tcol].cast(pl.String)))
    reserved = {"item", "raw_id", "title", "genres", "year", "user"}
    used = {icol, tcol, gcol, ycol}
    extras = [frame[c] for c in cols if c not in used and c not in reserved]
    return pl.DataFrame(out + extras)


def load_table(
    path: str | Path,
    *,
    user_col: str | None = None,
    item_col: str | None = None,
    rating_col: str | None = None,
    time_col: str | None = None,
    items_path: str | Path | None = None,
    name: str | None = None,
) -> Dataset:
    """Load a CSV, TSV or Parquet file of interactions (and optionally an items file)."""
    path = Path(path).expanduser()
    inter = read_interactions(
        path, user_col=user_col, item_col=item_col, rating_col=rating_col, time_col=time_col
    )
    items = None
    if items_path is not None:
        items = read_items(Path(items_path).expanduser(), item_col=item_col)
    return assemble(name or path.stem, inter, items=items, source=str(path))
