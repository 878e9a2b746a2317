"""Choosing the torch device every model and tensor of a run lives on, and how many CPU
threads torch uses on a machine shared with other programs (:class:`ThreadGovernor`)."""

from __future__ import annotations

import os
import time
from pathlib import Path

import torch

from data.errors import ReclensError


def resolve_device(spec: str = "auto") -> torch.device:
    """The torch device named by ``spec``.

    ``"auto"``: the first CUDA device when one is available, else the CPU; ``"cpu"``;
    ``"cuda"`` or ``"cuda:N"``: that GPU, a :class:`ReclensError` when CUDA is unavailable or
    there is no device ``N``; ``"mps"`` on Apple silicon when available.
    """
    text = str(spec).strip().lower()
    if text in ("", "auto"):
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(text)
    except RuntimeError as err:
        raise ReclensError(f"unknown device {spec!r}: use auto, cpu, cuda or cuda:N") from err
    if device.type == "cpu":
        return device
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise ReclensError(
                f"device {spec!r} was asked for but CUDA is not available "
                "(this torch build or machine has no GPU); use --device cpu or auto"
            )
        count = torch.cuda.device_count()
        if device.index is not None and device.index >= count:
            raise ReclensError(
                f"device {spec!r} does not exist: this machine has {count} CUDA device(s)"
            )
        return device
    if device.type == "mps":
        if not torch.backends.mps.is_available():
            raise ReclensError(f"device {spec!r} was asked for but MPS is not available")
        return device
    raise ReclensError(f"unsupported device {spec!r}: use auto, cpu, cuda or cuda:N")


# -- intra-op threads on a shared CPU --------------------------------------------------------
PROC_STAT = Path("/proc/stat")
THREADS_ENV = "RECLENS_THREADS"  # auto (the governor) or a fixed number of threads
RECHECK_S = 0.5  # how often the governor re-measures the other processes' CPU use


def usable_cores() -> int:
    """CPU cores this process may run on (its affinity mask where the OS has one)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):
        return max(1, os.cpu_count() or 1)


def _busy_seconds() -> float | None:
    """CPU seconds every process has run since boot (``/proc/stat``), or None off Linux."""
    try:
        with PROC_STAT.open() as f:
            fields = [int(v) for v in f.readline().split()[1:]]
    except (OSError, ValueError):
        return None
    idle = fields[3] + (fields[4] if len(fields) > 4 else 0)  # idle + iowait
    return (sum(fields[:8]) - idle) / os.sysconf("SC_CLK_TCK")


def _own_seconds() -> float:
    """CPU seconds this process (all its threads) has run."""
    times = os.times()
    return times.user + times.system


def fixed_threads() -> int | None:
    """The thread count fixed by ``$RECLENS_THREADS`` (a positive integer), else None."""
    value = os.environ.get(THREADS_ENV, "").strip().lower()
    if value in ("", "auto"):
        return None
    if not value.isdigit() or int(value) < 1:
        raise ReclensError(
            f"{THREADS_ENV} must be auto or a positive number of threads, got {value!r}"
        )
    return int(value)


class ThreadGovernor:
    """Keeps torch's intra-op threads at the cores other processes leave free.

    torch's OpenMP threads wait for each other by spinning: when another program holds a
    core, a thread that loses its core stalls every parallel region and the others spin
    (ML-1M training was 17-44x slower beside one busy process). Every ``recheck_s`` seconds
    (at a :meth:`tick`), the governor measures the CPU time other processes used since the
    last check (all processes' busy time from ``/proc/stat`` less this process's own) and sets
    ``threads = clamp(round(cores - others), 1, start)``: all ``start`` threads (torch's
    count when entered) on a quiet machine, one per core left free on a busy one. Off Linux it
    does nothing. ``$RECLENS_THREADS`` set to a number fixes the thread count instead (the
    governor then stays off). A context manager: the thread count is restored on exit. CPU
    only; ticks must come from the thread that runs the work (OpenMP's count is per thread).
    """

    def __init__(self, device: torch.device, recheck_s: float = RECHECK_S) -> None:
        self.start = torch.get_num_threads()
        self.fixed = fixed_threads()
        self.active = device.type == "cpu" and self.fixed is None and _busy_seconds() is not None
        self.recheck_s = float(recheck_s)
        self.cores = usable_cores()
        self.choices: list[int] = []  # every thread count chosen, for reports and tests
        self._last: tuple[float, float, float] | None = None

    def __enter__(self) -> ThreadGovernor:
        if self.fixed is not None:
            torch.set_num_threads(self.fixed)
        if self.active:
            self._last = (time.monotonic(), _busy_seconds() or 0.0, _own_seconds())
            time.sleep(0.05)  # a first, short window before any work
            self._choose()
        return self

    def __exit__(self, *exc: object) -> None:
        if self.active or self.fixed is not None:
            torch.set_num_threads(self.start)

    def tick(self) -> None:
        """Re-measure and re-choose when ``recheck_s`` has passed since the last check."""
        if self.active and self._last and time.monotonic() - self._last[0] >= self.recheck_s:
            self._choose()

    def _choose(self) -> None:
        assert self._last is not None
        now, busy, own = time.monotonic(), _busy_seconds() or 0.0, _own_seconds()
        wall = max(now - self._last[0], 1e-3)
        others = max(0.0, (busy - self._last[1]) - (own - self._last[2])) / wall
        self._last = (now, busy, own)
        threads = max(1, min(self.start, round(self.cores - others)))
        if threads != torch.get_num_threads():
            torch.set_num_threads(threads)
        self.choices.append(threads)
