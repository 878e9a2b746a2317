"""Batch evaluation: explain many test users with many explainers, measure fidelity.

For each sampled user (a test user with at least one training item), the model's input is the
user's training row ``x``; the target is the top-1 recommendation outside ``x``. Every
explainer explains that target (timed, one user at a time, so ``ms`` is the latency of one
explanation), then the maps of all explainers, and all ``kappa`` SPINRec candidate maps, go
through :func:`explainers.fidelity.fidelity_curves` in one batched pass.

Two SPINRec rows are reported:

- ``spinrec``: the map chosen by SPINRec's fixed criterion (lowest deletion AUC);
- ``spinrec_best_of_kappa``: for *each metric separately*, the best of the ``kappa`` candidate
  maps. This is an **optimistic upper bound** (it peeks at the metric being reported; the
  reference code reports numbers this way); its ``ms`` is SPINRec's.

Summaries give each metric's mean and the half-width of its 95% confidence interval
(Student's t on the per-user values).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import polars as pl
import scipy.sparse as sp
import scipy.stats
from torch import nn

from data.errors import ReclensError
from data.splits import Split
from explainers.base import as_rows, top1_outside
from explainers.fidelity import METRICS
from explainers.registry import create, parse_names
from explainers.target import BEST_OF_KAPPA, explain_target

REPORTED: tuple[str, ...] = (
    "spinrec",
    BEST_OF_KAPPA,
    "spinrec_ins",
    "spinrec_single",
    "ig_zero",
    "grad_x_input",
    "cosine",
    "jaccard",
    "lime",
    "kernel_shap",
    "leave_one_out",
    "random",
)
"""Every explainer row a report can hold, in report order."""


def sample_users(
    split: Split, n_users: int | None = None, seed: int = 0, part: str = "test"
) -> np.ndarray:
    """Evaluated users of ``part`` (int64, ascending): all, or ``n_users`` drawn with ``seed``."""
    users = split.eval_users(part)  # type: ignore[arg-type]
    if n_users is None or n_users >= users.shape[0]:
        return users
    if n_users < 1:
        raise ReclensError(f"--users must be at least 1, got {n_users}")
    rng = np.random.default_rng(seed)
    return np.sort(rng.choice(users, size=int(n_users), replace=False))


def mean_ci95(values: np.ndarray) -> tuple[float, float]:
    """Mean of ``values`` [n] and the half-width of its 95% confidence interval (t-based)."""
    v = np.asarray(values, dtype=np.float64)
    v = v[np.isfinite(v)]
    if v.shape[0] == 0:
        return float("nan"), float("nan")
    if v.shape[0] == 1:
        return float(v[0]), float("nan")
    half = scipy.stats.t.ppf(0.975, v.shape[0] - 1) * v.std(ddof=1) / np.sqrt(v.shape[0])
    return float(v.mean()), float(half)


@dataclass(frozen=True)
class FidelityReport:
    """Per-user fidelity of every explainer on one model.

    ``per_user``: one row per (explainer, user): ``model``, ``explainer``, ``user``,
    ``target``, ``n_history``, ``target_probability``, ``ms`` and one column per metric of
    :data:`explainers.fidelity.METRICS`.
    """

    model: str
    per_user: pl.DataFrame

    def summary(self) -> list[dict[str, Any]]:
        """One dict per explainer (report order): ``model``, ``explainer``, ``n_users``,
        ``ms_per_explanation`` and ``metrics`` (metric -> ``{"mean", "ci95"}``)."""
        return summarise(self.per_user)


def summarise(per_user: pl.DataFrame) -> list[dict[str, Any]]:
    """Means and 95% CI half-widths per (model, explainer) of a per-user table."""
    out = []
    if per_user.height == 0:
        return out
    models = list(dict.fromkeys(per_user["model"].to_list()))
    present = set(per_user["explainer"].to_list())
    for model in models:
        for name in [n for n in REPORTED if n in present]:
            rows = per_user.filter((pl.col("model") == model) & (pl.col("explainer") == name))
            if rows.height == 0:
                continue
            metrics = {}
            for m in METRICS:
                mean, ci = mean_ci95(rows[m].to_numpy())
                metrics[m] = {"mean": mean, "ci95": ci}
            out.append(
                {
                    "model": model,
                    "explainer": name,
                    "n_users": rows.height,
                    "ms_per_explanation": float(rows["ms"].mean()),
                    "metrics": metrics,
                }
            )
    return out


def evaluate_fidelity(
    model: nn.Module,
    split: Split,
    *,
    explainers: str | Sequence[str] = "all",
    users: np.ndarray | None = None,
    n_users: int | None = None,
    seed: int = 0,
    model_name: str = "",
    params: dict[str, dict[str, Any]] | None = None,
    progress: Callable[[int, int], None] | None = None,
    chunk_size: int = 512,
    edit_rule: str = "round",
) -> FidelityReport:
    """Explain the top-1 item of test users with each explainer and measure fidelity.

    ``users``: the users to explain (default :func:`sample_users` with ``n_users`` and
    ``seed``); ``explainers``: ``all`` or names; ``params``: per-explainer keyword arguments;
    ``progress(done, total)`` is called after each user. SPINRec (when present) adds the
    ``spinrec_best_of_kappa`` rows. Explanations are seeded with ``seed``; each user is one
    :func:`explain_target`; ``edit_rule``: how fractions become counts in the curves
    (:data:`explainers.fidelity.EDIT_RULES`; give SPINRec the same one in ``params``).
    """
    names = parse_names(explainers)
    params = params or {}
    train: sp.csr_matrix = split.train
    built = {name: create(name, train=train, **params.get(name, {})) for name in names}
    todo = sample_users(split, n_users, seed) if users is None else np.asarray(users, np.int64)
    label = model_name or str(getattr(model, "name", type(model).__name__))
    records: list[dict[str, Any]] = []
    for done, user in enumerate(todo, start=1):
        x = as_rows(train[int(user)].toarray()[0], model)[0]
        if not bool((x > 0).any()):
            raise ReclensError(f"user {int(user)} has no training items to explain")
        target = int(top1_outside(model, x[None])[0])
        result = explain_target(
            model, x, target, built, user=int(user), seed=seed, chunk_size=chunk_size,
            edit_rule=edit_rule,
        )  # fmt: skip
        for name in result.rows:
            owner = result.owner(name)
            exp = result.explanations[owner]
            records.append(
                {
                    "explainer": name,
                    "model": label,
                    "user": int(user),
                    "target": target,
                    "n_history": exp.n_history,
                    "target_probability": exp.target_probability,
                    "ms": result.ms[owner],
                    **result.metrics(name),
                }
            )
        if progress is not None:
            progress(done, len(todo))
    columns = ["model", "explainer", "user", "target", "n_history", "target_probability", "ms"]
    schema = {
        "model": pl.String,
        "explainer": pl.String,
        "user": pl.Int64,
        "target": pl.Int64,
        "n_history": pl.Int64,
        "target_probability": pl.Float64,
        "ms": pl.Float64,
        **{m: pl.Float64 for m in METRICS},
    }
    frame = pl.DataFrame(records, schema=schema) if records else pl.DataFrame(schema=schema)
    order = {name: i for i, name in enumerate(REPORTED)}
    frame = frame.with_columns(
        pl.col("explainer").replace_strict(order, return_dtype=pl.Int64).alias("_order")
    )
    frame = frame.sort(["_order", "user"]).drop("_order").select([*columns, *METRICS])
    return FidelityReport(model=label, per_user=frame)
