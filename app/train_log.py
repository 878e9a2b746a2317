"""Training progress as plain lines of text: for logs, pipes and terminals without bars.

:class:`EpochLog` is an epoch callback (:class:`engine.train.EpochReport`) that writes one line
at most every ``interval`` seconds (and always for the first and the last epoch), so a job
whose output is not a terminal still says what it is doing; :func:`finished_line` says how a
run ended, :func:`budget_notice` when a time budget ended training and what that may cost;
:func:`leaderboard` is the table of the trained runs (dataset, model, the main test metrics,
epochs and seconds).
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TextIO

from app.text_table import aligned

if TYPE_CHECKING:  # the CLI imports this module before torch is needed
    from engine.pipeline import RunResult
    from engine.train import EpochReport

LOG_INTERVAL_S = 5.0
"""Seconds between two progress lines of one model (the first and last epoch always print)."""

LEADERBOARD_METRICS: tuple[str, ...] = ("recall@10", "ndcg@10", "recall@20", "ndcg@20")


class EpochLog:
    """Writes ``name: epoch i/N, loss L, valid METRIC V (best B at epoch k), S s`` lines
    (``V``: the latest evaluated epoch's value; models validate every few epochs).

    ``epochs``: the planned epochs (the report's own count when it has one); ``metric``: the
    validation metric's name; ``stream``: where lines go (stderr by default); ``clock``: the
    time source (tests pass a fake one).
    """

    def __init__(
        self,
        name: str,
        metric: str,
        stream: TextIO | None = None,
        interval: float = LOG_INTERVAL_S,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.name, self.metric, self.interval, self.clock = name, metric, float(interval), clock
        self.stream = stream if stream is not None else sys.stderr
        self.last_line: float | None = None
        self.best: tuple[float, int] | None = None
        self.latest: float | None = None

    def __call__(self, report: EpochReport) -> None:
        if report.valid is not None:
            self.latest = report.valid
            if self.best is None or report.best:
                self.best = (report.valid, report.epoch)
        now = self.clock()
        final = report.epochs > 0 and report.epoch >= report.epochs
        due = self.last_line is None or now - self.last_line >= self.interval
        if due or final or report.epoch == 0:
            self.last_line = now
            print(self.line(report), file=self.stream, flush=True)

    def line(self, report: EpochReport) -> str:
        """The progress line for ``report``."""
        if report.epoch == 0:  # a closed-form fit
            valid = f", valid {self.metric} {report.valid:.4f}" if report.valid is not None else ""
            return f"{self.name}: fitted in closed form{valid}, {report.seconds:.1f} s"
        parts = [f"{self.name}: epoch {report.epoch}/{report.epochs}"]
        if report.loss is not None:
            parts.append(f"loss {report.loss:.4f}")
        if self.latest is not None and self.best is not None:
            best, at = self.best
            parts.append(f"valid {self.metric} {self.latest:.4f} (best {best:.4f} at epoch {at})")
        parts.append(f"{report.seconds:.1f} s")
        return ", ".join(parts)


def is_terminal(stream: object) -> bool:
    """Whether ``stream`` is a terminal (tqdm draws its bars only there)."""
    isatty = getattr(stream, "isatty", None)
    return bool(isatty and isatty())


def budget_notice(result: RunResult, source: str) -> str | None:
    """One line when a time budget stopped ``result``'s training before its planned epochs,
    else None.

    ``source``: the dataset source, for the command that trains the model without a budget.
    What stopping may cost is read from the validation curve: how much the selection metric
    rose over the second half of the epochs run when it was still at its best at the end, or
    that it was best earlier (the kept weights are that epoch's) and may have levelled off.
    """
    if result.stop != "budget":
        return None
    name, metric, ran = result.model, result.valid_metric, result.epochs_run
    head = (
        f"{name}: time budget {result.budget_s:g} s reached at epoch {ran} of "
        f"{result.planned_epochs}; training stopped there"
    )
    curve = [(r.epoch, r.valid) for r in result.history if r.valid is not None]
    if not curve or result.best_valid is None:
        return f"{head} (no validation users to tell what more epochs would give)"
    command = f"`reclens train --dataset {source} --model {name}`"
    best, at = result.best_valid, result.best_epoch
    if at < ran:
        last_epoch, last = curve[-1]
        return (
            f"{head}; validation {metric} was best at epoch {at} ({best:.4f}, the weights "
            f"kept) and {last:.4f} at epoch {last_epoch}: it may have levelled off, so more "
            f"epochs may not help ({command} trains without a budget)"
        )
    since, before = next(((e, v) for e, v in curve if e >= ran / 2), curve[0])
    rise = f", up {best - before:.4f} since epoch {since}" if since < at else ""
    return (
        f"{head}; validation {metric} {best:.4f} at epoch {at}, still its best{rise}: more "
        f"epochs may improve it; run {command} to train without a budget"
    )


def finished_line(result: RunResult) -> str:
    """What one training run ended with: how it stopped, the kept epoch, the test NDCG@10 and
    the seconds it took (data, training, evaluation and saving)."""
    seconds = result.seconds.get("total", 0.0) + result.seconds.get("save", 0.0)
    test = f"test ndcg@10 {result.metrics.get('ndcg@10', 0.0):.4f}, {seconds:.1f} s"
    ran, planned = result.epochs_run, result.planned_epochs
    how = {
        "closed-form": "fitted in closed form",
        "patience": f"stopped by patience at epoch {ran} of {planned}",
        "budget": f"stopped by the time budget at epoch {ran} of {planned}",
    }.get(result.stop, f"{ran} epochs")
    kept = "" if result.stop == "closed-form" else f", kept epoch {result.best_epoch}"
    return f"{result.model}: {how}{kept}; {test}"


def leaderboard(summaries: list[dict[str, Any]]) -> str:
    """A text table of run summaries, best NDCG@10 first: dataset, model, the test metrics at
    10 and 20, epochs run (of planned, and why training stopped early) and seconds."""
    if not summaries:
        return "(no runs)"
    ordered = sorted(summaries, key=lambda r: r["metrics"].get("ndcg@10", 0.0), reverse=True)
    headers = ["dataset", "model", *LEADERBOARD_METRICS, "epochs", "fit s", "total s"]
    rows = [
        [
            str(r["dataset"]),
            str(r["model"]),
            *(f"{r['metrics'].get(m, float('nan')):.4f}" for m in LEADERBOARD_METRICS),
            _epochs(r),
            f"{r['seconds'].get('fit', 0.0):.1f}",
            f"{r['seconds'].get('total', 0.0):.1f}",
        ]
        for r in ordered
    ]
    return "\n".join(aligned(headers, rows, left=2))


def _epochs(summary: dict[str, Any]) -> str:
    stop = summary.get("stop", "epochs")
    if stop == "closed-form":
        return "closed form"
    if "epochs_run" not in summary:  # a saved run listed without its training record
        return ""
    ran, planned = summary["epochs_run"], summary.get("planned_epochs") or summary["epochs_run"]
    why = {"budget": " (budget)", "patience": " (patience)"}.get(stop, "")
    return f"{ran}/{planned}{why}"
