"""Seeded, deterministic train/valid/test splits of a prepared dataset.

Protocols:

- ``random`` (the default, RecBole's "RS"): each user's interactions are shuffled and cut by
  ``ratios`` (default 8:1:1) with RecBole's rounding (``_calcu_split_ids``: the valid and test
  counts are ``floor(ratio * n)``, and a part whose share is between 0 and 1 interaction gets one
  taken from train while train keeps more than one).
- ``temporal``: the same counts, but each user's latest interactions are held out.
- ``strong``: strong generalization (Mult-VAE): ``ratios[1]`` and ``ratios[2]`` of the users are
  held out for validation and test; their histories are cut into a fold-in part (``fold_in``,
  default 80%, the model's input) and a target part. Models are fitted on the other users only.
- ``given``: the parts of a pre-split source, as they are.

Every split is checked: no (user, item) pair in two parts, and every evaluated user keeps at
least one training item.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np
import polars as pl
import scipy.sparse as sp

from data.dataset import Dataset, to_csr
from data.errors import DataError

Protocol = Literal["random", "temporal", "strong", "given"]
PROTOCOLS: tuple[str, ...] = ("random", "temporal", "strong", "given")


@dataclass(frozen=True)
class Split:
    """Disjoint parts of one prepared dataset.

    ``train``, ``valid``, ``test``: binary CSR [n_users, n_items] float32. A user's ``train`` row
    is the history the models see as input when scoring that user (for ``strong``, held-out
    users' rows hold their fold-in part). ``fit_users``: int64 [n_fit], the users whose train
    rows models are fitted on. ``notes``: what the user should know about the split (users a
    given split leaves out of evaluation, and why).
    """

    train: sp.csr_matrix
    valid: sp.csr_matrix
    test: sp.csr_matrix
    protocol: str
    seed: int
    ratios: tuple[float, ...]
    fit_users: np.ndarray
    notes: tuple[str, ...] = ()

    @property
    def n_users(self) -> int:
        return self.train.shape[0]

    @property
    def n_items(self) -> int:
        return self.train.shape[1]

    def fit_matrix(self) -> sp.csr_matrix:
        """Train rows of the fitting users only, zero rows elsewhere: [n_users, n_items]."""
        if self.fit_users.shape[0] == self.n_users:
            return self.train
        keep = np.zeros(self.n_users, dtype=np.float32)
        keep[self.fit_users] = 1.0
        return sp.csr_matrix(sp.diags(keep) @ self.train)

    def target(self, part: Literal["valid", "test"]) -> sp.csr_matrix:
        """The held-out matrix of ``part`` [n_users, n_items]."""
        if part not in ("valid", "test"):
            raise DataError(f"unknown split part {part!r}: use valid or test")
        return self.valid if part == "valid" else self.test

    def mask(self, part: Literal["valid", "test"]) -> sp.csr_matrix:
        """Items excluded from ranking when evaluating ``part``: train, plus valid for test."""
        return self.train if part == "valid" else sp.csr_matrix(self.train + self.valid)

    def eval_users(self, part: Literal["valid", "test"]) -> np.ndarray:
        """Users with at least one ``part`` item and one train item: int64 [n_eval]."""
        has_target = np.diff(self.target(part).indptr) > 0
        has_train = np.diff(self.train.indptr) > 0
        return np.flatnonzero(has_target & has_train).astype(np.int64)


def split(
    ds: Dataset,
    protocol: Protocol = "random",
    ratios: tuple[float, float, float] = (0.8, 0.1, 0.1),
    seed: int = 0,
    fold_in: float = 0.8,
) -> Split:
    """Split ``ds`` by ``protocol`` (see the module docstring); deterministic for a seed."""
    if isinstance(seed, bool) or not isinstance(seed, int | np.integer) or not 0 <= seed < 2**32:
        raise DataError(f"split seed must be an integer in 0..{2**32 - 1}, got {seed!r}")
    if protocol not in PROTOCOLS:
        raise DataError(f"unknown split protocol {protocol!r}: use one of {', '.join(PROTOCOLS)}")
    if len(ratios) != 3 or min(ratios) < 0 or abs(sum(ratios) - 1.0) > 1e-6 or ratios[0] <= 0:
        raise DataError(
            f"split ratios must be three non-negative shares summing to 1, got {ratios}"
        )
    if ds.parts is not None and protocol != "given":
        protocol = "given"  # a pre-split source is always used with its given split
    if protocol == "given":
        result = _given(ds, seed)
    elif protocol == "strong":
        result = _strong(ds, ratios, seed, fold_in)
    else:
        result = _per_user(ds, protocol, ratios, seed)
    _check(result, ds.name)
    return result


def _per_user(ds: Dataset, protocol: str, ratios: tuple[float, ...], seed: int) -> Split:
    inter = ds.interactions.select("user", "item", "timestamp").with_row_index("_row")
    if protocol == "temporal":
        if inter["timestamp"].null_count():
            raise DataError(f"{ds.name}: the temporal split needs a timestamp on every interaction")
        inter = inter.sort(["user", "timestamp", "_row"])
    else:
        rng = np.random.default_rng(seed)
        inter = inter.with_columns(pl.Series("_key", rng.random(inter.height))).sort(
            ["user", "_key"]
        )
    users = inter["user"].to_numpy().astype(np.int64)
    counts = np.bincount(users, minlength=ds.n_users)
    n_train, n_valid, _ = recbole_counts(counts, ratios)
    starts = np.concatenate([[0], np.cumsum(counts)[:-1]])
    rank = np.arange(users.shape[0]) - starts[users]
    part = np.where(rank < n_train[users], 0, np.where(rank < (n_train + n_valid)[users], 1, 2))
    frames = [inter.filter(pl.Series(part == k)) for k in range(3)]
    mats = [to_csr(f, ds.n_users, ds.n_items) for f in frames]
    fit_users = np.flatnonzero(np.diff(mats[0].indptr) > 0).astype(np.int64)
    return Split(*mats, protocol=protocol, seed=seed, ratios=tuple(ratios), fit_users=fit_users)


def recbole_counts(
    totals: np.ndarray, ratios: tuple[float, ...]
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per-user train/valid/test counts [n_users] each, as RecBole's ``_calcu_split_ids``."""
    totals = totals.astype(np.int64)
    cnt = [np.floor(r * totals.astype(np.float64)).astype(np.int64) for r in ratios]
    cnt[0] = totals - cnt[1] - cnt[2]
    for i in (2, 1):  # RecBole walks the parts from the last one backwards
        frac = ratios[i] * totals
        bump = (cnt[0] > 1) & (frac > 0) & (frac < 1)  # RecBole stops once train is at 1
        cnt[i] = cnt[i] + bump
        cnt[0] = cnt[0] - bump
    return cnt[0], cnt[1], cnt[2]


def _strong(ds: Dataset, ratios: tuple[float, ...], seed: int, fold_in: float) -> Split:
    rng = np.random.default_rng(seed)
    order = rng.permutation(ds.n_users)
    n_valid = int(round(ratios[1] * ds.n_users))
    n_test = int(round(ratios[2] * ds.n_users))
    role = np.zeros(ds.n_users, dtype=np.int8)  # 0 fit, 1 valid, 2 test
    role[order[:n_valid]] = 1
    role[order[n_valid : n_valid + n_test]] = 2

    inter = ds.interactions.select("user", "item").with_columns(
        pl.Series("_key", rng.random(ds.n_interactions))
    )
    inter = inter.sort(["user", "_key"])
    users = inter["user"].to_numpy().astype(np.int64)
    counts = np.bincount(users, minlength=ds.n_users)
    n_target = np.where(counts >= 2, np.maximum(1, np.round((1 - fold_in) * counts)), 0)
    starts = np.concatenate([[0], np.cumsum(counts)[:-1]])
    rank = np.arange(users.shape[0]) - starts[users]
    is_target = (rank >= counts[users] - n_target[users]) & (role[users] > 0)
    part = np.where(is_target, role[users], 0)
    mats = [to_csr(inter.filter(pl.Series(part == k)), ds.n_users, ds.n_items) for k in range(3)]
    fit_users = np.flatnonzero((role == 0) & (counts > 0)).astype(np.int64)
    return Split(*mats, protocol="strong", seed=seed, ratios=tuple(ratios), fit_users=fit_users)


def _given(ds: Dataset, seed: int) -> Split:
    if ds.parts is None or "train" not in ds.parts or "test" not in ds.parts:
        raise DataError(f"{ds.name}: the given split needs a pre-split source with train and test")
    empty = ds.interactions.clear()
    mats = [
        to_csr(ds.parts.get(k, empty), ds.n_users, ds.n_items) for k in ("train", "valid", "test")
    ]
    listed = np.diff(mats[2].indptr) > 0
    # An item a user has in train is not also a target for that user.
    mats[1] = _minus(mats[1], mats[0])
    mats[2] = _minus(mats[2], mats[0] + mats[1])
    has_train = np.diff(mats[0].indptr) > 0
    no_train = int((listed & ~has_train).sum())
    no_target = int((listed & has_train & (np.diff(mats[2].indptr) == 0)).sum())
    reasons = [
        f"{n} {why}"
        for n, why in (
            (no_train, "have no training items"),
            (no_target, "have only test items that are also training or validation items"),
        )
        if n
    ]
    notes = (
        (
            f"{no_train + no_target} of {int(listed.sum())} test users are not evaluated: "
            f"{'; '.join(reasons)}",
        )
        if reasons
        else ()
    )
    fit_users = np.flatnonzero(has_train).astype(np.int64)
    return Split(*mats, protocol="given", seed=seed, ratios=(), fit_users=fit_users, notes=notes)


def _minus(a: sp.csr_matrix, b: sp.csr_matrix) -> sp.csr_matrix:
    out = sp.csr_matrix(a - a.multiply(b > 0))
    out.eliminate_zeros()
    return out


def _check(s: Split, name: str) -> None:
    for a, b, label in (
        (s.train, s.valid, "train/valid"),
        (s.train, s.test, "train/test"),
        (s.valid, s.test, "valid/test"),
    ):
        if a.multiply(b).nnz:
            raise DataError(f"{name}: split {s.protocol} puts a (user, item) pair in {label}")
    if s.protocol == "given":
        return  # a given split is used as is; eval_users leaves out users without train items
    no_train = np.diff(s.train.indptr) == 0
    for part in ("valid", "test"):
        if (no_train & (np.diff(s.target(part).indptr) > 0)).any():
            raise DataError(f"{name}: split {s.protocol} left a {part} user without training items")
