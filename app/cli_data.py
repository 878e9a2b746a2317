"""``reclens data``: list known datasets, describe any source, fetch MovieLens archives.

Other command groups reuse :func:`add_source_options` and :func:`load_from_args` so that every
command takes a SOURCE the same way (a name, a folder or a file, plus column overrides).
"""

from __future__ import annotations

import argparse
import json
import math
import tempfile
from collections.abc import Callable
from pathlib import Path

from data.dataset import Dataset
from data.download import check_name, fetch
from data.errors import ReclensError
from data.loaders import known_sources, load
from data.paths import cache_dir, data_dirs
from data.summary import format_summary, summarize

SOURCE_HELP = (
    "a dataset name (ml-100k, ml-1m, ml-latest-small, ml-20m, ml-25m, synthetic), a folder "
    "(MovieLens, RecBole atomic files, pre-split train/test) or a file "
    "(.csv, .tsv, .parquet, .inter, MovieLens .zip)"
)


SEED_MAX = 2**32 - 1
"""Largest seed every generator takes (NumPy, PyTorch and Python's ``random`` alike)."""


def int_in(low: int, high: int | None = None) -> Callable[[str], int]:
    """An argparse type: an integer in ``[low, high]`` (no upper bound when ``high`` is None)."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not an integer") from None
        if value < low or (high is not None and value > high):
            bound = f"at least {low}" if high is None else f"between {low} and {high}"
            raise argparse.ArgumentTypeError(f"{value} is out of range (must be {bound})")
        return value

    parse.__name__ = "integer"
    return parse


def finite_float(text: str) -> float:
    """An argparse type: a finite number (no nan, no infinity)."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"{text!r} is not a finite number")
    return value


seed_type = int_in(0, SEED_MAX)
"""An argparse type for ``--seed``: 0 .. 2**32-1."""


def check_output_file(path: str | Path) -> None:
    """Fail at once (not after the work) when the output file ``path`` cannot be written."""
    target = Path(path).expanduser()
    try:
        if target.is_dir():
            raise IsADirectoryError(21, "Is a directory")
        target.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=target.parent):
            pass
    except OSError as err:
        raise ReclensError(f"{target}: cannot write there ({err.strerror or err})") from err


def add_source_options(parser: argparse.ArgumentParser) -> None:
    """Add the positional SOURCE and the column overrides (``--user-col`` ...) to ``parser``."""
    parser.add_argument("source", metavar="SOURCE", help=SOURCE_HELP)
    add_column_options(
        parser.add_argument_group("columns (for CSV/TSV/Parquet, RecBole and pre-split sources)")
    )


def add_column_options(group: argparse._ActionsContainer) -> None:
    """Add ``--user-col``, ``--item-col``, ``--rating-col``, ``--time-col`` and ``--items``."""
    group.add_argument("--user-col", metavar="NAME", help="column of user ids")
    group.add_argument("--item-col", metavar="NAME", help="column of item ids")
    group.add_argument("--rating-col", metavar="NAME", help="column of ratings")
    group.add_argument("--time-col", metavar="NAME", help="column of timestamps")
    group.add_argument(
        "--items", dest="items_path", metavar="FILE", help="items file (id, title, genres...)"
    )


def load_from_args(args: argparse.Namespace) -> Dataset:
    """Load the dataset named by ``args.source`` with the column overrides that were given."""
    return load(
        args.source,
        user_col=getattr(args, "user_col", None),
        item_col=getattr(args, "item_col", None),
        rating_col=getattr(args, "rating_col", None),
        time_col=getattr(args, "time_col", None),
        items_path=getattr(args, "items_path", None),
    )


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add ``reclens data list|info|fetch``."""
    parser = subparsers.add_parser(
        "data",
        help="list, describe and fetch datasets",
        description="List, describe and fetch datasets.",
    )
    actions = parser.add_subparsers(dest="data_command", required=True, metavar="ACTION")

    p_list = actions.add_parser("list", help="known datasets and where each is found")
    p_list.add_argument("--json", action="store_true", help="print one JSON object")
    p_list.set_defaults(func=cmd_list)

    p_info = actions.add_parser("info", help="sizes, density, ratings and activity of a source")
    add_source_options(p_info)
    p_info.add_argument("--json", action="store_true", help="print one JSON object")
    p_info.set_defaults(func=cmd_info)

    p_fetch = actions.add_parser("fetch", help="download a MovieLens dataset into the cache")
    p_fetch.add_argument(
        "name", metavar="NAME", help="ml-100k, ml-1m, ml-latest-small, ml-20m or ml-25m"
    )
    p_fetch.add_argument("--force", action="store_true", help="download even when a copy exists")
    p_fetch.set_defaults(func=cmd_fetch)


def cmd_list(args: argparse.Namespace) -> int:
    """Print the known sources and where each is found."""
    sources = known_sources()
    if args.json:
        payload = {
            "data_dirs": [str(d) for d in data_dirs()],
            "cache_dir": str(cache_dir()),
            "sources": [
                {
                    "name": s.name,
                    "kind": s.kind,
                    "description": s.description,
                    "location": str(s.location) if s.location else None,
                    "available": s.available,
                    "status": s.status(),
                }
                for s in sources
            ],
        }
        print(json.dumps(payload, indent=2))
        return 0
    width = max(len(s.name) for s in sources)
    for s in sources:
        print(f"{s.name:<{width}}  {s.description}")
        print(f"{'':<{width}}  -> {s.status()}")
    return 0


def cmd_info(args: argparse.Namespace) -> int:
    """Describe a source: sizes, density, rating histogram, popularity and activity."""
    summary = summarize(load_from_args(args))
    if args.json:
        print(json.dumps(summary))
    else:
        print(format_summary(summary))
    return 0


def cmd_fetch(args: argparse.Namespace) -> int:
    """Download (or find) a MovieLens dataset and print where it is."""
    check_name(args.name)
    path = fetch(args.name, force=args.force)
    print(f"{args.name}: {path}")
    return 0
