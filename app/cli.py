"""The ``reclens`` command line.

Each command group lives in its own module exposing ``register(subparsers)``, which adds its
parsers and sets ``func`` on them. Every failure ends in one line on stderr:

- user mistakes (bad arguments, bad data, a tampered run, a full disk, an input too large for
  the memory) exit with status 2: argparse errors through :class:`OneLineParser`,
  :class:`data.errors.ReclensError`, :class:`OSError`, :class:`MemoryError` and
  :class:`RecursionError` in :func:`main`;
- Ctrl-C exits with status 130;
- anything else is a bug: status 1 and a hint to rerun with ``--debug``, which shows the
  traceback instead.
"""

from __future__ import annotations

import argparse
import sys
from types import ModuleType
from typing import NoReturn


def command_modules() -> tuple[ModuleType, ...]:
    """The command modules, imported here rather than at the top (they pull in polars and
    PyTorch, seconds of start-up) so that Ctrl-C while they load is reported like any other
    interruption."""
    from app import (
        cli_compare,
        cli_data,
        cli_fidelity,
        cli_metrics,
        cli_project,
        cli_serve,
        cli_train,
        cli_trajectory,
    )

    return (
        cli_data,
        cli_train,
        cli_metrics,
        cli_compare,
        cli_fidelity,
        cli_project,
        cli_serve,
        cli_trajectory,
    )


class OneLineParser(argparse.ArgumentParser):
    """An argument parser whose errors are one line (no usage block), exit status 2."""

    def error(self, message: str) -> NoReturn:
        print(f"{self.prog}: error: {message} (see {self.prog} --help)", file=sys.stderr)
        sys.exit(2)


def build_parser() -> argparse.ArgumentParser:
    parser = OneLineParser(prog="reclens", description="Look inside recommender systems.")
    parser.add_argument(
        "--debug", action="store_true", help="show the traceback of an internal error"
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for module in command_modules():
        module.register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run one command; returns the exit status (``--debug`` may come anywhere in ``argv``)."""
    try:
        return _run(list(sys.argv[1:] if argv is None else argv))
    except KeyboardInterrupt:  # also while the command modules load
        return _interrupted()


def _run(argv: list[str]) -> int:
    from data.errors import ReclensError

    debug = "--debug" in argv
    args = build_parser().parse_args([a for a in argv if a != "--debug"])
    try:
        return int(args.func(args) or 0)
    except ReclensError as err:
        return _fail(str(err), 2)
    except OSError as err:  # the environment: a full disk, a folder that cannot be written
        if debug:
            raise
        where = f"{err.filename}: " if err.filename else ""
        return _fail(f"{where}{err.strerror or err}", 2)
    except MemoryError as err:  # the input asks for more memory than the machine has
        if debug:
            raise
        return _fail(f"out of memory: the input is too large for this machine ({err})", 2)
    except RecursionError as err:  # deeply nested input reached the interpreter's limit
        if debug:
            raise
        return _fail(f"input nested too deeply to process ({err})", 2)
    except Exception as err:  # noqa: BLE001 - a bug: one line, the traceback with --debug
        if debug:
            raise
        text = str(err).splitlines()[0] if str(err) else ""
        return _fail(
            f"internal error {type(err).__name__}: {text} "
            f"(a bug in reclens; rerun with --debug for the traceback)",
            1,
        )


def _fail(message: str, code: int) -> int:
    print(f"reclens: error: {' '.join(message.split())}", file=sys.stderr)
    return code


def _interrupted() -> int:
    print("reclens: interrupted", file=sys.stderr)
    return 130


if __name__ == "__main__":  # pragma: no cover
    try:
        sys.exit(main())
    except KeyboardInterrupt:
        sys.exit(_interrupted())
