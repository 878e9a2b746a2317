"""The ``reclens`` command line.

Each command group lives in its own module exposing ``register(subparsers)``, which adds its
parsers and sets ``func`` on them. User mistakes raise :class:`data.errors.ReclensError`; they are
printed as one line without a traceback and the command exits with status 2.
"""

from __future__ import annotations

import argparse
import importlib
import sys

from data.errors import ReclensError

COMMAND_MODULES = (
    "app.cli_data",
    "app.cli_train",
    "app.cli_metrics",
    "app.cli_fidelity",
    "app.cli_serve",
    "app.cli_trajectory",
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="reclens", description="Look inside recommender systems.")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name in COMMAND_MODULES:
        importlib.import_module(name).register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except ReclensError as err:
        print(f"reclens: error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("reclens: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
