"""Pre-split benchmark folders, loaded with their given train/valid/test split as is.

Two forms are recognised:

- the NGCF/LightGCN format: ``train.txt``, ``test.txt`` and optionally ``valid.txt``, one
  line per user: the user id, then that user's item ids, separated by spaces (ids must be
  integers);
- the same parts as tables: ``train.csv``/``.tsv``/``.parquet``, ``valid.*``, ``test.*``, with
  user/item (rating, timestamp) columns found like any interaction table.

The dataset's ``parts`` holds ``train``, ``valid`` (possibly empty) and ``test``; its
``interactions`` are their union.
"""

from __future__ import annotations

from pathlib import Path

import polars as pl

from data.dataset import Dataset
from data.errors import DataError
from data.tabular import (
    CSV_EXTENSIONS,
    PARQUET_EXTENSIONS,
    assemble,
    check_file,
    read_interactions,
    read_items,
)

PART_NAMES = {"train": ("train",), "valid": ("valid", "val", "validation"), "test": ("test",)}
PART_EXTENSIONS = (".txt", *CSV_EXTENSIONS, *PARQUET_EXTENSIONS)


def find_parts(folder: Path) -> dict[str, Path] | None:
    """The part files of a pre-split folder (``train`` and ``test`` required), or ``None``.

    All parts must share one format: all ``.txt`` (NGCF) or all tables.
    """
    found: dict[str, Path] = {}
    for part, stems in PART_NAMES.items():
        for stem in stems:
            hits = [folder / f"{stem}{ext}" for ext in PART_EXTENSIONS]
            hits = [h for h in hits if h.is_file()]
            if hits:
                found[part] = hits[0]
                break
    if "train" not in found or "test" not in found:
        return None
    return found


def read_ngcf(path: Path) -> tuple[pl.DataFrame, pl.Series]:
    """One NGCF/LightGCN part: raw (``user``, ``item``) Int64 pairs and every user id listed.

    Each line is ``user item item ...``; a token that is not an integer raises
    :class:`DataError` naming the file, line and field.
    """
    check_file(path)
    try:
        text = path.read_bytes().decode("utf-8")
    except UnicodeDecodeError as err:
        raise DataError(f"{path}: not UTF-8 text ({err.reason} at byte {err.start})") from None
    lines = pl.DataFrame({"text": text.split("\n")}).with_row_index("line", offset=1)
    tokens = (
        lines.select(
            "line",
            pl.col("text")
            .str.replace_all(r"\s+", " ")
            .str.strip_chars()
            .str.split(" ")
            .alias("tok"),
        )
        .explode("tok")
        .filter(pl.col("tok").is_not_null() & (pl.col("tok") != ""))
        .with_columns((pl.int_range(pl.len()).over("line") + 1).alias("field"))
        .with_columns(pl.col("tok").cast(pl.Int64, strict=False).alias("id"))
    )
    if tokens.height == 0:
        raise DataError(f"{path}: the file is empty")
    bad = tokens.filter(pl.col("id").is_null())
    if bad.height:
        line, tok, field = bad.select("line", "tok", "field").row(0)
        role = "user" if field == 1 else "item"
        raise DataError(f"{path}: line {line}, field {field}: {role} id {tok!r} is not an integer")
    users = tokens.filter(pl.col("field") == 1).select("line", pl.col("id").alias("user"))
    pairs = (
        tokens.filter(pl.col("field") > 1)
        .join(users, on="line", how="left", maintain_order="left")
        .select("user", pl.col("id").alias("item"))
    )
    return pairs, users["user"]


def load_presplit(
    folder: str | Path,
    *,
    name: str | None = None,
    user_col: str | None = None,
    item_col: str | None = None,
    rating_col: str | None = None,
    time_col: str | None = None,
    items_path: str | Path | None = None,
) -> Dataset:
    """Load a pre-split folder, keeping its train/valid/test parts as given."""
    folder = Path(folder).expanduser()
    found = find_parts(folder)
    if found is None:
        raise DataError(
            f"{folder}: not a pre-split folder (needs train and test files: "
            f"{', '.join('train' + e for e in PART_EXTENSIONS)})"
        )
    text_parts = {p for p, f in found.items() if f.suffix == ".txt"}
    if text_parts and len(text_parts) != len(found):
        raise DataError(
            f"{folder}: parts mix the NGCF .txt format and tables "
            f"({', '.join(f.name for f in found.values())})"
        )
    empty = pl.DataFrame(schema={"user": pl.Int64, "item": pl.Int64})
    parts: dict[str, pl.DataFrame] = {}
    listed_users: list[pl.Series] = []
    for part in PART_NAMES:
        path = found.get(part)
        if path is None:
            parts[part] = empty
        elif text_parts:
            parts[part], users = read_ngcf(path)
            listed_users.append(users)
        else:
            parts[part] = read_interactions(
                path, user_col=user_col, item_col=item_col, rating_col=rating_col, time_col=time_col
            )
    users_table = None
    if listed_users:
        users_table = pl.DataFrame({"user": pl.concat(listed_users).unique()})
    items = read_items(Path(items_path).expanduser(), item_col=item_col) if items_path else None
    fmt = "ngcf" if text_parts else "tables"
    return assemble(
        name or folder.name,
        None,
        items=items,
        users=users_table,
        parts=parts,
        source=str(folder),
        meta={"format": f"presplit-{fmt}", "files": {p: f.name for p, f in found.items()}},
    )
