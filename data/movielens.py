"""MovieLens datasets in their original GroupLens layouts, from a folder or straight from the zip.

Three layouts are recognised by their files:

- ``ml-100k``: ``u.data`` (tab-separated user, item, rating, timestamp), ``u.item`` (Latin-1,
  ``|``-separated, 19 genre flag columns named by ``u.genre``) and ``u.user``;
- ``ml-1m``: ``ratings.dat``, ``movies.dat``, ``users.dat`` (``::``-separated, Latin-1);
- ``ml-latest-small``, ``ml-20m``, ``ml-25m``: ``ratings.csv`` and ``movies.csv`` (UTF-8,
  genres ``A|B``, title ``"Name (Year)"``), plus ``links.csv`` when present.

The year comes from the title's trailing ``(YYYY)``, else (ml-100k) from the release date.
"""

from __future__ import annotations

import zipfile
import zlib
from pathlib import Path, PurePosixPath
from types import TracebackType

import polars as pl

from data.dataset import Dataset
from data.errors import DataError
from data.tabular import (
    TableRef,
    assemble,
    genres_list,
    interactions_from_frame,
    read_text_table,
    to_float,
    to_ids,
    to_int_ids,
    year_from_title,
)

MOVIELENS_NAMES = ("ml-100k", "ml-1m", "ml-latest-small", "ml-20m", "ml-25m")

ML100K_GENRES = (
    "unknown", "Action", "Adventure", "Animation", "Children's", "Comedy", "Crime",
    "Documentary", "Drama", "Fantasy", "Film-Noir", "Horror", "Musical", "Mystery", "Romance",
    "Sci-Fi", "Thriller", "War", "Western",
)  # fmt: skip

# ml-1m users.dat stores occupations as codes; its README names them.
ML1M_OCCUPATIONS = (
    "other", "academic/educator", "artist", "clerical/admin", "college/grad student",
    "customer service", "doctor/health care", "executive/managerial", "farmer", "homemaker",
    "K-12 student", "lawyer", "programmer", "retired", "sales/marketing", "scientist",
    "self-employed", "technician/engineer", "tradesman/craftsman", "unemployed", "writer",
)  # fmt: skip

LAYOUT_FILES = {
    "100k": ("u.data", "u.item"),
    "1m": ("ratings.dat", "movies.dat"),
    "latest": ("ratings.csv", "movies.csv"),
}
_SEP = "\x1f"  # stands in for "::", which polars cannot split on
MAX_MEMBER_BYTES = 1 << 30
"""Largest uncompressed size of one archive member read (ml-25m's ratings.csv is 0.68 GB); a
larger one (a zip bomb: megabytes that unpack to gigabytes) is refused before it is read."""


class MovieLensFiles:
    """The member files of a MovieLens dataset in a folder or a zip (never extracted).

    Files are found by their base name at the top of the folder or archive, or one folder
    down (the official zips hold ``ml-100k/u.data``).
    """

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self._zip: zipfile.ZipFile | None = None
        self._members: dict[str, str] = {}
        if self.path.is_dir():
            for child in sorted(self.path.iterdir()):
                if child.is_file():
                    self._members.setdefault(child.name, child.name)
            for sub in sorted(p for p in self.path.iterdir() if p.is_dir()):
                for child in sorted(sub.iterdir()):
                    if child.is_file():
                        self._members.setdefault(child.name, f"{sub.name}/{child.name}")
        elif self.path.is_file():
            try:
                self._zip = zipfile.ZipFile(self.path)
                infos = self._zip.infolist()
            except (zipfile.BadZipFile, OSError, EOFError) as err:
                raise DataError(
                    f"{self.path}: not a readable zip archive (truncated or corrupt: {err})"
                ) from None
            for info in infos:
                member = PurePosixPath(info.filename)
                if info.is_dir() or "__MACOSX" in member.parts or len(member.parts) > 2:
                    continue
                self._members.setdefault(member.name, info.filename)
        else:
            raise DataError(f"{self.path}: no such file or folder")

    def __enter__(self) -> MovieLensFiles:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        err: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def close(self) -> None:
        """Close the archive, if any."""
        if self._zip is not None:
            self._zip.close()

    def has(self, name: str) -> bool:
        """Whether a file of this base name is present."""
        return name in self._members

    def label(self, name: str) -> str:
        """How to name the file in messages: a path, or ``archive.zip:member``."""
        member = self._members.get(name, name)
        return f"{self.path}:{member}" if self._zip is not None else str(self.path / member)

    def read(self, name: str) -> bytes:
        """The bytes of file ``name``; :class:`DataError` when it is missing or unreadable."""
        if name not in self._members:
            raise DataError(f"{self.path}: {name} is missing")
        member = self._members[name]
        try:
            if self._zip is not None:
                return self._read_member(self._zip, name, member)
            return (self.path / member).read_bytes()
        except (zipfile.BadZipFile, zlib.error, EOFError, OSError) as err:
            raise DataError(
                f"{self.label(name)}: cannot read it (truncated or corrupt: {err})"
            ) from None

    def _read_member(self, archive: zipfile.ZipFile, name: str, member: str) -> bytes:
        """An archive member's bytes, refused past :data:`MAX_MEMBER_BYTES` (as declared in the
        archive or, should the declaration lie, as it unpacks)."""
        declared = archive.getinfo(member).file_size
        limit = MAX_MEMBER_BYTES
        if declared > limit:
            raise DataError(
                f"{self.label(name)}: unpacks to {declared} bytes, more than the {limit} a "
                "member may hold (a damaged or malicious archive?)"
            )
        with archive.open(member) as handle:
            data = handle.read(limit + 1)
        if len(data) > limit:
            raise DataError(
                f"{self.label(name)}: unpacks to more than the {limit} bytes a member may hold"
            )
        return data

    def layout(self) -> str | None:
        """``"100k"``, ``"1m"`` or ``"latest"``, by the files present; ``None`` otherwise."""
        for layout, needed in LAYOUT_FILES.items():
            if all(self.has(n) for n in needed):
                return layout
        return None


def load_movielens(path: str | Path, name: str | None = None) -> Dataset:
    """Load the MovieLens dataset in folder or zip ``path`` (layout detected from its files)."""
    path = Path(path).expanduser()
    name = name or (path.stem if path.suffix.lower() == ".zip" else path.name)
    with MovieLensFiles(path) as files:
        layout = files.layout()
        if layout == "100k":
            inter, items, users = _read_100k(files)
        elif layout == "1m":
            inter, items, users = _read_1m(files)
        elif layout == "latest":
            inter, items, users = _read_latest(files)
        else:
            wanted = "; ".join(" + ".join(f) for f in LAYOUT_FILES.values())
            raise DataError(f"{path}: not a MovieLens dataset (expected one of: {wanted})")
    meta = {"format": "movielens", "layout": layout}
    return assemble(name, inter, items=items, users=users, source=str(path), meta=meta)


# -- helpers ------------------------------------------------------------------------------------
def _latin1(data: bytes) -> bytes:
    """Latin-1 bytes re-encoded as UTF-8 for polars (which reads UTF-8 only)."""
    return data.decode("latin-1").encode("utf-8")


def _headerless(
    data: bytes, label: str, separator: str, names: tuple[str, ...], *, minimum: int | None = None
) -> tuple[pl.DataFrame, TableRef]:
    """Read a header-less table as strings and name its first columns ``names``."""
    ref = TableRef(label, 1)
    frame = read_text_table(
        data, ref, separator=separator, has_header=False, quote_char=None, all_strings=True
    )
    need = len(names) if minimum is None else minimum
    if frame.width < need:
        raise DataError(
            f"{label}: expected {need} columns separated by {separator!r}, found {frame.width}"
        )
    renamed = dict(zip(frame.columns, names, strict=False))
    return frame.rename(renamed), ref


def _ratings(data: bytes, label: str, separator: str) -> pl.DataFrame:
    frame, ref = _headerless(data, label, separator, ("user", "item", "rating", "timestamp"))
    return interactions_from_frame(
        frame, ref, user_col="user", item_col="item", rating_col="rating", time_col="timestamp"
    )


def _int_column(frame: pl.DataFrame, ref: TableRef, column: str) -> pl.Series:
    values = to_float(frame[column], ref, column)
    return values.round(0).cast(pl.Int32).alias(column)


# -- ml-100k ------------------------------------------------------------------------------------
def _read_100k(files: MovieLensFiles) -> tuple[pl.DataFrame, pl.DataFrame, pl.DataFrame | None]:
    inter = _ratings(files.read("u.data"), files.label("u.data"), "\t")
    genres = _genre_names_100k(files)
    item_cols = ("item", "title", "release_date", "video_release_date", "imdb_url")
    label = files.label("u.item")
    raw, ref = _headerless(_latin1(files.read("u.item")), label, "|", item_cols)
    flag_cols = raw.columns[len(item_cols) :]
    if len(flag_cols) != len(genres):
        raise DataError(
            f"{label}: expected {len(genres)} genre flag columns (from u.genre), "
            f"found {len(flag_cols)}"
        )
    flags = [
        pl.when(pl.col(col).str.strip_chars() == "1").then(pl.lit(genre))
        for col, genre in zip(flag_cols, genres, strict=True)
    ]
    items = raw.select(
        pl.col("title").str.strip_chars(),
        pl.concat_list(flags).list.drop_nulls().alias("genres"),
        pl.col("release_date").str.strip_chars().str.to_date("%d-%b-%Y", strict=False),
        pl.col("imdb_url"),
    )
    release_year = raw["release_date"].str.extract(r"(\d{4})\s*$", 1).cast(pl.Int32, strict=False)
    year = year_from_title(items["title"]).fill_null(release_year)
    items = items.with_columns(to_ids(raw["item"], ref, "item", "item").alias("item"), year)
    users = None
    if files.has("u.user"):
        ulabel = files.label("u.user")
        user_cols = ("user", "age", "gender", "occupation", "zip")
        uraw, uref = _headerless(_latin1(files.read("u.user")), ulabel, "|", user_cols)
        users = pl.DataFrame(
            [
                to_ids(uraw["user"], uref, "user", "user").alias("user"),
                _int_column(uraw, uref, "age"),
                uraw["gender"],
                uraw["occupation"],
                uraw["zip"],
            ]
        )
    return inter, items, users


def _genre_names_100k(files: MovieLensFiles) -> tuple[str, ...]:
    """Genre names in flag-column order, from ``u.genre`` (``name|index`` lines)."""
    if not files.has("u.genre"):
        return ML100K_GENRES
    frame, ref = _headerless(
        _latin1(files.read("u.genre")), files.label("u.genre"), "|", ("name", "index")
    )
    frame = frame.filter(pl.col("name").str.strip_chars().fill_null("") != "")  # trailing blanks
    index = to_float(frame["index"], ref, "index").cast(pl.Int64)
    ordered = frame.with_columns(index.alias("index")).sort("index")
    return tuple(ordered["name"].to_list())


# -- ml-1m ----------------------------------------------------------------------------------------
def _read_1m(files: MovieLensFiles) -> tuple[pl.DataFrame, pl.DataFrame, pl.DataFrame | None]:
    inter = _ratings(
        files.read("ratings.dat").replace(b"::", _SEP.encode()), files.label("ratings.dat"), _SEP
    )
    movies = _latin1(files.read("movies.dat")).replace(b"::", _SEP.encode())
    raw, ref = _headerless(movies, files.label("movies.dat"), _SEP, ("item", "title", "genres"))
    titles = raw["title"].str.strip_chars()
    items = pl.DataFrame(
        [
            to_ids(raw["item"], ref, "item", "item").alias("item"),
            titles.alias("title"),
            genres_list(raw["genres"]).alias("genres"),
            year_from_title(titles),
        ]
    )
    users = None
    if files.has("users.dat"):
        data = _latin1(files.read("users.dat")).replace(b"::", _SEP.encode())
        cols = ("user", "gender", "age", "occupation", "zip")
        uraw, uref = _headerless(data, files.label("users.dat"), _SEP, cols)
        codes = _int_column(uraw, uref, "occupation")
        occupation = codes.replace_strict(
            list(range(len(ML1M_OCCUPATIONS))),
            list(ML1M_OCCUPATIONS),
            default=codes.cast(pl.String),
            return_dtype=pl.String,
        )
        users = pl.DataFrame(
            [
                to_ids(uraw["user"], uref, "user", "user").alias("user"),
                _int_column(uraw, uref, "age"),
                uraw["gender"],
                occupation.alias("occupation"),
                uraw["zip"],
            ]
        )
    return inter, items, users


# -- ml-latest-small, ml-20m, ml-25m --------------------------------------------------------------
def _read_latest(files: MovieLensFiles) -> tuple[pl.DataFrame, pl.DataFrame, None]:
    ref = TableRef(files.label("ratings.csv"), 2)
    ratings = read_text_table(files.read("ratings.csv"), ref, separator=",")
    inter = interactions_from_frame(ratings, ref)
    mref = TableRef(files.label("movies.csv"), 2)
    movies = read_text_table(files.read("movies.csv"), mref, separator=",", all_strings=True)
    for col in ("movieId", "title", "genres"):
        if col not in movies.columns:
            raise DataError(
                f"{mref.label}: no column '{col}'; columns are: {', '.join(movies.columns)}"
            )
    titles = movies["title"].str.strip_chars()
    items = pl.DataFrame(
        [
            to_int_ids(movies["movieId"], mref, "movieId", "item").alias("item"),
            titles.alias("title"),
            genres_list(movies["genres"]).alias("genres"),
            year_from_title(titles),
        ]
    )
    if files.has("links.csv"):
        lref = TableRef(files.label("links.csv"), 2)
        links = read_text_table(files.read("links.csv"), lref, separator=",", all_strings=True)
        if "movieId" in links.columns:
            extra = links.select(
                to_int_ids(links["movieId"], lref, "movieId", "item").alias("item"),
                *[pl.col(c) for c in links.columns if c != "movieId"],
            )
            items = items.join(extra, on="item", how="left", maintain_order="left")
    return inter, items, None
