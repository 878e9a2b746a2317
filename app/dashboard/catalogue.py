"""The dashboard's run catalogue: which runs the runs folder holds, and their ids.

A run id is the run folder's path relative to the runs folder (e.g.
``synthetic/ease-20250101T120000Z``). It is only ever *looked up* in the listing, never joined
into a path, so nothing a browser sends can reach another folder: this lookup is the wall
between a URL and the file system. Only verified runs are listed (every file the manifest
lists has its size and checksum); broken folders are listed apart with the reason
(:meth:`RunCatalogue.broken`), so one broken folder never takes the server down.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from data.errors import ReclensError
from engine.run_comparison import paired_values
from engine.runs import METRICS, RunSummary, read_json, scan_runs, verify_run
from engine.stats import Comparison, compare_many, significant

LEADERBOARD_BEYOND: tuple[str, ...] = (
    "novelty",
    "arp",
    "long_tail_share",
    "ild_cooccurrence",
    "ild_genre",
    "calibration_kl",
    "coverage",
    "gini",
    "gini_corrected",
    "personalization",
)
"""Beyond-accuracy means shown beside accuracy on the leaderboard (stored with every run)."""
VERSUS_METRIC = "ndcg@10"
"""The metric the leaderboard compares every run with the selected one on."""
LISTING_SECONDS = 2.0
"""How long a listing of the runs folder is reused before it is read again."""


class DashboardError(ReclensError):
    """Something the page cannot show; the message says what to do."""


@dataclass(frozen=True)
class ValidationCurve:
    """How a run's weights were chosen, from its ``metrics.json``.

    ``metric``: the validation selection metric; ``epochs`` and ``values``: each evaluated
    epoch (1-based) and its validation ``metric``, in order; ``kept_epoch``: the epoch whose
    weights were saved (0 for a closed-form fit); ``epochs_run``: epochs trained;
    ``planned``: epochs asked for; ``stopped_early``: stopped by patience or a time budget.
    """

    metric: str
    epochs: tuple[int, ...]
    values: tuple[float, ...]
    kept_epoch: int
    epochs_run: int
    planned: int
    stopped_early: bool

    @property
    def kept(self) -> str:
        """The leaderboard's words: ``"20 of 30"``, or ``"closed form"``."""
        if self.epochs_run == 0:
            return "closed form"
        return f"{self.kept_epoch} of {self.epochs_run}"

    @classmethod
    def from_record(cls, record: dict[str, Any]) -> ValidationCurve:
        """Read from a ``metrics.json`` object (fields missing in older runs count as none)."""
        history = record.get("history")
        reports = [r for r in history if isinstance(r, dict)] if isinstance(history, list) else []
        evaluated = [
            (int(r["epoch"]), value)
            for r in reports
            if _is_number(r.get("epoch")) and (value := number(r.get("valid"))) is not None
        ]
        planned = max((int(r["epochs"]) for r in reports if _is_number(r.get("epochs"))), default=0)
        return cls(
            metric=str(record.get("valid_metric") or "ndcg@10"),
            epochs=tuple(e for e, _ in evaluated),
            values=tuple(v for _, v in evaluated),
            kept_epoch=int(number(record.get("best_epoch")) or 0),
            epochs_run=int(number(record.get("epochs_run")) or 0),
            planned=planned,
            stopped_early=bool(record.get("stopped_early", False)),
        )


class RunCatalogue:
    """Complete runs under ``runs_root``, newest first, with their ids."""

    def __init__(self, runs_root: str | Path) -> None:
        self.runs_root = Path(runs_root).expanduser()
        self._lock = threading.Lock()
        self._listing: tuple[float, list[RunSummary], list[tuple[str, str]]] = (0.0, [], [])
        self._verified: dict[Path, tuple[tuple, str | None]] = {}
        self._versus: dict[tuple, dict[str, str]] = {}
        self._curves: dict[Path, tuple[tuple, ValidationCurve]] = {}

    def summaries(self, refresh: bool = False) -> list[RunSummary]:
        """Verified runs in the runs folder, newest first (cached :data:`LISTING_SECONDS`)."""
        return list(self._scan(refresh)[1])

    def broken(self, refresh: bool = False) -> list[tuple[str, str]]:
        """``(run id, reason)`` of each run folder that is left out because it is broken (the
        reason names files relative to the run folder)."""
        return list(self._scan(refresh)[2])

    def _scan(self, refresh: bool) -> tuple[float, list[RunSummary], list[tuple[str, str]]]:
        with self._lock:
            stamp = self._listing[0]
            if refresh or time.monotonic() - stamp > LISTING_SECONDS:
                listing: list[RunSummary] = []
                broken: list[tuple[str, str]] = []
                if self.runs_root.is_dir():
                    listing, failed = scan_runs(self.runs_root, check=self._verify)
                    broken = [(self.run_id_of(f), _relative(why, f)) for f, why in failed]
                self._listing = (time.monotonic(), listing, broken)
            return self._listing

    def _verify(self, folder: Path) -> None:
        """:func:`verify_run`, remembered while no file of the folder changes (a checksum of
        every model at every listing would cost seconds)."""
        key = _stamp(folder)
        known = self._verified.get(folder)
        if known is None or known[0] != key:
            try:
                verify_run(folder)
                reason = None
            except ReclensError as err:
                reason = str(err)
            self._verified[folder] = known = (key, reason)
        if known[1] is not None:
            raise DashboardError(known[1])

    def run_id_of(self, path: Path) -> str:
        """The id of a run folder: its path relative to the runs folder, with ``/``."""
        try:
            return path.resolve().relative_to(self.runs_root.resolve()).as_posix() or path.name
        except ValueError:
            return path.name

    def run_ids(self, dataset: str | None = None) -> list[str]:
        """Ids of the listed runs, newest first, optionally only those of one dataset."""
        return [
            self.run_id_of(s.path) for s in self.summaries() if not dataset or s.dataset == dataset
        ]

    def summary(self, run_id: str) -> RunSummary:
        """The listing entry of ``run_id``; :class:`DashboardError` when it is not listed."""
        for refresh in (False, True):
            for s in self.summaries(refresh=refresh):
                if self.run_id_of(s.path) == run_id:
                    return s
        raise DashboardError(
            f"run {run_id!r} is not in the runs folder: pick a run in the sidebar, or train one "
            "with `reclens train --dataset synthetic --model ease` (or `reclens demo`)"
        )

    def datasets(self) -> list[str]:
        """Dataset names that have runs, most recent first."""
        return list(dict.fromkeys(s.dataset for s in self.summaries()))

    def source_of(self, dataset: str, default: str) -> str:
        """The source to train on for a dataset name (from a run's config, else ``default``)."""
        for s in self.summaries():
            if s.dataset == dataset and s.config.dataset.kind == "source":
                return s.config.dataset.source
        return default

    def validation_curve(self, run_id: str) -> ValidationCurve:
        """The validation curve and kept epoch of ``run_id`` (read again when its folder
        changes)."""
        return self._curve(self.summary(run_id).path)

    def _curve(self, folder: Path) -> ValidationCurve:
        key = _stamp(folder)
        known = self._curves.get(folder)
        if known is None or known[0] != key:
            known = (key, ValidationCurve.from_record(read_json(folder / METRICS)))
            self._curves[folder] = known
        return known[1]

    def leaderboard(self) -> pd.DataFrame:
        """One row per run: id, dataset, model, created, kept epoch (``"20 of 30"``), test
        metrics, ``train <stage>`` seconds."""
        rows = []
        for s in self.summaries():
            run_id = self.run_id_of(s.path)
            row: dict[str, Any] = {
                "run": run_id,
                "dataset": s.dataset,
                "model": s.model,
                "created": s.created,
                "kept epoch": self._curve(s.path).kept,
            }
            row.update({k: number(v) for k, v in s.metrics.items() if _is_number(v)})
            row.update({f"train {k}": number(v) for k, v in s.seconds.items() if _is_number(v)})
            rows.append(row)
        return pd.DataFrame(rows)

    def versus(self, run_id: str, metric: str = VERSUS_METRIC) -> dict[str, str]:
        """How every run trained on the same split as ``run_id`` compares with it on ``metric``.

        Paired over the same test users (:func:`engine.run_comparison.paired_values`), mean
        difference with a percentile bootstrap interval and the paired t-test, Holm-corrected
        over all the runs compared; run id -> ``higher``/``lower`` (only where the corrected
        p-value is below 0.05) or ``no significant difference``, with the corrected p-value.
        Runs of other splits are not in the answer (they cannot be paired).
        """
        base = self.summary(run_id)
        split = base.config.fingerprint.get("train_sha256")
        same = {
            self.run_id_of(s.path): s
            for s in self.summaries()
            if s.dataset == base.dataset and s.config.fingerprint.get("train_sha256") == split
        }
        others = [r for r in same if r != run_id]
        key = (run_id, metric, tuple(sorted(same)))
        if not others:
            return {}
        if key not in self._versus:
            values = paired_values(same, metric)
            pairs = [(run_id, other) for other in others]
            results = compare_many(values, pairs, metric=metric, n_boot=1000, ci="percentile")
            self._versus[key] = {r.b: _verdict(r) for r in results}
        return dict(self._versus[key])


def _verdict(result: Comparison) -> str:
    if not significant(result, 0.05, "p_holm") or result.diff == 0:
        return f"no significant difference (p_holm {result.p_holm:.2g})"
    word = "higher" if result.diff > 0 else "lower"
    return f"{word}: {result.diff:+.4f} (p_holm {result.p_holm:.2g})"


def _stamp(folder: Path) -> tuple:
    """Name, size and modification time of every entry of ``folder`` (changes with any edit)."""
    try:
        entries = sorted(folder.iterdir())
        return tuple((p.name, p.lstat().st_size, p.lstat().st_mtime_ns) for p in entries)
    except OSError:
        return ()


def _relative(reason: str, folder: Path) -> str:
    """``reason`` with the run folder's path left out of the file names it mentions."""
    return reason.replace(f"{folder}/", "").replace(str(folder), ".")


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def number(value: Any) -> float | None:
    """``value`` as a finite float, or None."""
    if value is None:
        return None
    try:
        out = float(value)
    except (TypeError, ValueError):
        return None
    return out if np.isfinite(out) else None
