"""The ``reclens`` command line.

Each command group lives in its own module exposing ``register(subparsers)``, which adds its
parsers and sets ``func`` on them. User mistakes raise :class:`data.errors.ReclensError`; they are
printed as one line without a traceback and the command exits with status 2.
"""

from __future__ import annotations

import argparse
import sys

from app import (
    cli_compare,
    cli_data,
    cli_fidelity,
    cli_metrics,
    cli_serve,
    cli_train,
    cli_trajectory,
)
from data.errors import ReclensError

COMMAND_MODULES = (
    cli_data,
    cli_train,
    cli_metrics,
    cli_compare,
    cli_fidelity,
    cli_serve,
    cli_trajectory,
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="reclens", description="Look inside recommender systems.")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for module in COMMAND_MODULES:
        module.register(sub)
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
