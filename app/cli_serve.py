"""``reclens serve`` and ``reclens demo``: start the dashboard.

Examples::

    reclens serve --runs ~/.cache/reclens/runs --port 5006
    reclens demo                      # trains ease, fism, multvae, diffrec on synthetic data if
                                      # there are no runs yet, then serves the dashboard
    reclens demo --dataset ml-100k    # the same on MovieLens 100K when it is available

The server binds 127.0.0.1 unless ``--address`` says otherwise, and answers only requests
addressed to the address it serves (see :mod:`app.dashboard.security`). Bound to any other
address it warns and requires an access token (``--token``, or one generated and printed with
the address to open); on loopback no token is needed.
"""

from __future__ import annotations

import argparse
import errno
import ipaddress
import secrets
import socket
import sys
import threading
from typing import Any

from app.cli_backend import add_backend_options, backend_options
from app.train_log import EpochLog, budget_notice, finished_line, is_terminal, leaderboard
from data.errors import ReclensError

DEMO_BUDGET_S = 15.0
"""Default wall-clock budget per model in ``reclens demo`` (training stops at the epoch end)."""


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add ``reclens serve`` and ``reclens demo``."""
    serve = subparsers.add_parser(
        "serve",
        help="start the dashboard on saved runs",
        description="Serve the RecLens dashboard over the runs in --runs.",
    )
    _server_options(serve)
    serve.set_defaults(func=cmd_serve)

    demo = subparsers.add_parser(
        "demo",
        help="train the default models if needed, then start the dashboard",
        description=(
            "On the embedded synthetic dataset (or --dataset ml-100k when it is available), "
            "train ease, fism, multvae and diffrec when the runs folder has no run of that "
            "dataset, then serve the dashboard."
        ),
    )
    _server_options(demo)
    demo.add_argument(
        "--budget",
        type=float,
        default=DEMO_BUDGET_S,
        metavar="SECONDS",
        help=f"training time budget per model ({DEMO_BUDGET_S:g} s)",
    )
    demo.add_argument("--quiet", action="store_true", help="no progress bars")
    demo.set_defaults(func=cmd_demo)


def _server_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--dataset",
        default="synthetic",
        metavar="SOURCE",
        help="dataset of new runs started from the page (synthetic)",
    )
    parser.add_argument(
        "--runs", default=None, metavar="DIR", help="runs folder ($RECLENS_HOME/runs)"
    )
    parser.add_argument("--port", type=port_number, default=5006, help="port (5006)")
    parser.add_argument(
        "--address",
        type=ip_address,
        default="127.0.0.1",
        help="IP address to bind (127.0.0.1: this machine only; any other needs a token)",
    )
    parser.add_argument(
        "--token",
        default=None,
        help="access token visitors must give (?token=...) when --address is not loopback "
        "(default: a random one, printed at start)",
    )
    parser.add_argument(
        "--projection",
        choices=("umap", "pca"),
        default="umap",
        help="how embedding maps are drawn: umap (default) or pca (fast, no compilation)",
    )
    parser.add_argument(
        "--show",
        action=argparse.BooleanOptionalAction,
        default=False,
        help="open a browser tab (--no-show by default)",
    )
    add_backend_options(parser)  # where fidelity evaluations started from the page run


def port_number(text: str) -> int:
    """``--port``: an integer from 1 to 65535."""
    try:
        port = int(text)
    except ValueError:
        port = -1
    if not 1 <= port <= 65535:
        raise argparse.ArgumentTypeError(f"{text!r} is not a port number (1 to 65535)")
    return port


def ip_address(text: str) -> str:
    """``--address``: an IPv4 address, or ``localhost``."""
    if text == "localhost":
        return "127.0.0.1"
    try:
        return str(ipaddress.IPv4Address(text))
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"{text!r} is not an IPv4 address (e.g. 127.0.0.1, or 0.0.0.0 for every interface)"
        ) from None


def check_bindable(address: str, port: int) -> None:
    """Raise a one-line :class:`ReclensError` when ``address:port`` cannot be listened on (in
    use, or not an address of this machine), before any run is loaded."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as the server binds
        try:
            sock.bind((address, port))
        except OSError as err:
            in_use = err.errno == errno.EADDRINUSE
            reason = "is already in use" if in_use else f"cannot be used ({err.strerror})"
            raise ReclensError(
                f"reclens serve: {address}:{port} {reason}; pick another with --port"
                + ("" if in_use else " or --address")
            ) from None


def access_token(args: argparse.Namespace) -> str | None:
    """The token visitors must give: None on loopback, else ``--token`` or a random one."""
    from app.dashboard.security import is_loopback

    if is_loopback(args.address):
        return args.token or None
    print(
        f"reclens: warning: serving on {args.address}, reachable from other machines; "
        "visitors need the access token in the address below",
        file=sys.stderr,
    )
    return args.token or secrets.token_urlsafe(18)


def _serve(service: Any, args: argparse.Namespace) -> None:
    from app.dashboard.server import serve

    token = access_token(args)
    _announce(service, args, token)
    warm_projections(service)
    serve(service, port=args.port, address=args.address, show=args.show, token=token)


def cmd_serve(args: argparse.Namespace) -> int:
    """Serve the dashboard until interrupted."""
    from app.dashboard.server import make_service

    check_bindable(args.address, args.port)
    service = make_service(
        args.runs, args.dataset, projection=args.projection, backend=backend_options(args)
    )
    _serve(service, args)
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    """Train the default models when there are no runs of the dataset, then serve."""
    from app.dashboard.server import make_service

    check_bindable(args.address, args.port)
    service = make_service(
        args.runs, args.dataset, projection=args.projection, backend=backend_options(args)
    )
    from engine.pipeline import source_spec

    source = source_spec(args.dataset, None)["source"]
    runs = service.summaries(refresh=True)
    existing = [s for s in runs if s.config.dataset.source == source]
    if existing:
        print(
            f"reclens demo: {len(existing)} run(s) of {existing[0].dataset} found in "
            f"{service.runs_root}; serving them",
            file=sys.stderr,
        )
        print(leaderboard([saved_row(s) for s in existing]), flush=True)
    else:
        results = train_defaults(service, args.dataset, args.budget, args.quiet)
        print(leaderboard(results), flush=True)
    _serve(service, args)
    return 0


def train_defaults(
    service: Any, source: str, budget: float, quiet: bool = False
) -> list[dict[str, Any]]:
    """Train the default model set on ``source`` into the service's runs folder; returns the
    saved runs' summaries (:meth:`engine.pipeline.RunResult.summary`).

    Models not registered on this installation are skipped with a message. Each model trains
    for at most ``budget`` seconds (checked at epoch ends); beyond-accuracy metrics are stored
    with each run. Progress goes to stderr: a bar on a terminal, else a line every few seconds
    (:class:`app.train_log.EpochLog`); ``quiet`` leaves progress out. When the budget ends a
    model's training before its planned epochs a line says so and what it may cost.
    """
    from app.cli_train import epoch_bar
    from app.dashboard.engine_service import DEFAULT_MODELS
    from data.loaders import MOVIELENS_NAMES
    from engine import registry
    from engine.pipeline import train_run

    available = set(registry.available_models())
    options = {"max_seconds": float(budget)}
    bars = not quiet and is_terminal(sys.stderr)
    names = [name for name in DEFAULT_MODELS if name in available]
    for name in DEFAULT_MODELS:
        if name not in available:
            print(f"reclens demo: model {name} is not available here; skipping it", file=sys.stderr)
    print(
        f"reclens demo: no runs of {source} in {service.runs_root} yet: training "
        f"{', '.join(names)} (at most {budget:g} s of training each), then serving",
        file=sys.stderr,
        flush=True,
    )
    results: list[dict[str, Any]] = []
    for name in names:
        metric = registry.train_config(name, **options).valid_metric
        log = None if quiet or bars else EpochLog(name, metric)
        with epoch_bar(name, None, not bars) as (_bar, update):
            result = train_run(
                source,
                name,
                device="cpu",
                out=service.runs_root,
                progress=update if log is None else log,
                train_options=options,
                load_options={"download": False} if source in MOVIELENS_NAMES else None,
            )
        if log is not None:
            print(finished_line(result), file=sys.stderr, flush=True)
        notice = budget_notice(result, source)
        if notice is not None:
            print(notice, file=sys.stderr, flush=True)
        if result.run_dir is not None:
            results.append(result.summary())
    if not results:
        raise ReclensError("reclens demo: no model could be trained; check `reclens train --help`")
    service.summaries(refresh=True)
    return results


def saved_row(summary: Any) -> dict[str, Any]:
    """A leaderboard row (:func:`app.train_log.leaderboard`) of a saved run's summary
    (:class:`engine.runs.RunSummary`)."""
    return {
        "dataset": summary.dataset,
        "model": summary.model,
        "metrics": summary.metrics,
        "seconds": summary.seconds,
    }


def warm_projections(service: Any) -> threading.Thread:
    """Compute missing UMAP projections of every run in a background thread (one at a time)."""

    def work() -> None:
        try:
            for run_id in service.run_ids():
                for kind in ("items", "users"):
                    try:
                        service.projection(run_id, kind)
                    except ReclensError as err:
                        print(f"reclens: no {kind} map for {run_id}: {err}", file=sys.stderr)
        except Exception as err:  # noqa: BLE001 - warming is best effort
            print(f"reclens: projection warm-up stopped: {err}", file=sys.stderr)

    thread = threading.Thread(target=work, name="reclens-umap-warmup", daemon=True)
    thread.start()
    return thread


def _announce(service: Any, args: argparse.Namespace, token: str | None) -> None:
    runs = len(service.summaries(refresh=True))
    broken = len(service.catalogue.broken())
    query = f"?token={token}" if token else ""
    print(
        f"reclens: serving {runs} run(s) from {service.runs_root} at "
        f"http://{args.address}:{args.port}/{query} (Ctrl+C to stop)",
        file=sys.stderr,
    )
    if broken:
        print(
            f"reclens: {broken} broken run folder(s) left out (listed in the page)",
            file=sys.stderr,
        )
