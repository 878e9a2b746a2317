"""Command-line options shared by the commands that run on the executor (fidelity, train)."""

from __future__ import annotations

import argparse

from app.cli_data import int_in
from engine.executor import BACKENDS, BackendOptions, default_backend


def add_backend_options(parser: argparse.ArgumentParser) -> None:
    """``--backend``, ``--workers``, ``--ray-address`` and the per-task resources."""
    parser.add_argument(
        "--backend", choices=BACKENDS, default=default_backend(),
        help="local (this machine) or ray (default $RECLENS_BACKEND or local)",
    )  # fmt: skip
    parser.add_argument(
        "--workers", type=int_in(1), default=1, help="local worker processes (1: in-process)"
    )
    parser.add_argument(
        "--ray-address", metavar="ADDR",
        help="an existing Ray cluster (default: Ray starts a local one on the loopback)",
    )  # fmt: skip
    parser.add_argument(
        "--cpus-per-task", type=float, default=1.0, help="CPUs per Ray task (1; fractions allowed)"
    )
    parser.add_argument(
        "--gpus-per-task", type=float, default=0.0, help="GPUs per Ray task (0; e.g. 0.25)"
    )
    parser.add_argument(
        "--max-in-flight", type=int_in(1), metavar="N",
        help="most tasks submitted at once (default twice the workers or CPUs)",
    )  # fmt: skip
    parser.add_argument(
        "--retries", type=int_in(0), default=2, help="tries again for a failed task (2)"
    )


def backend_options(args: argparse.Namespace) -> BackendOptions:
    """The executor settings of the command line."""
    return BackendOptions(
        backend=args.backend,
        workers=args.workers,
        ray_address=args.ray_address,
        cpus_per_task=args.cpus_per_task,
        gpus_per_task=args.gpus_per_task,
        max_in_flight=args.max_in_flight,
        retries=args.retries,
    )
