"""The training matrix's rows, as SPINRec reads its baselines from them.

SPINRec draws its baselines among training users with at least one item (:attr:`pool`), checks
a draw against the user's own history on the positive items (:attr:`support`), densifies the
drawn rows for the path inputs (:meth:`TrainingRows.dense`) and, for a model with a linear
first layer ``W``, needs their first-layer outputs ``b W`` (:meth:`TrainingRows.first_sums`)
and moments (:attr:`moments`).
"""

from __future__ import annotations

import functools

import numpy as np
import scipy.sparse as sp
import torch
import torch.nn.functional as F
from torch import Tensor

from data.errors import ReclensError


class TrainingRows:
    """A training matrix ``train`` [n_users, n_items] (sparse).

    ``matrix``: it as canonical float32 CSR (a copy when it is not one: the rows are gathered
    by index); ``pool``: the users with at least one stored item, int64 ascending.
    """

    def __init__(self, train: sp.spmatrix) -> None:
        if train is None or not sp.issparse(train):
            raise ReclensError("SPINRec needs the training matrix (CSR) to draw baselines from")
        self.matrix = sp.csr_matrix(train, dtype=np.float32)
        if not self.matrix.has_canonical_format:
            self.matrix = self.matrix.copy()
            self.matrix.sum_duplicates()
        self.pool = np.flatnonzero(np.diff(self.matrix.indptr) > 0).astype(np.int64)
        if self.pool.shape[0] == 0:
            raise ReclensError("SPINRec: the training matrix has no user with an interaction")

    @property
    def n_items(self) -> int:
        """The matrix's number of columns."""
        return int(self.matrix.shape[1])

    @functools.cached_property
    def moments(self) -> np.ndarray:
        """Each row's (sum, sum of squares): float32 [n_users, 2] (formed on first use)."""
        squared = self.matrix.multiply(self.matrix)
        sums = [self.matrix.sum(axis=1), squared.sum(axis=1)]
        return np.stack([np.asarray(v).ravel() for v in sums], axis=1).astype(np.float32)

    @functools.cached_property
    def support(self) -> sp.csr_matrix:
        """Each row's positive items, as a canonical CSR matrix (the matrix itself when every
        stored value is positive)."""
        if (self.matrix.data > 0).all():
            return self.matrix
        support = sp.csr_matrix(self.matrix > 0)
        support.sort_indices()
        return support

    def bags(self, users: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """The rows of ``users`` (int64 [R]) as bags: their stored items int64 [S] and values
        float32 [S], user after user, and each user's first position int64 [R]."""
        indptr, indices, data = self.matrix.indptr, self.matrix.indices, self.matrix.data
        starts = indptr[users].astype(np.int64)
        lengths = indptr[users + 1].astype(np.int64) - starts
        offsets = np.cumsum(lengths) - lengths
        pos = np.arange(int(lengths.sum())) + np.repeat(starts - offsets, lengths)
        return indices[pos].astype(np.int64), data[pos], offsets

    def dense(self, users: np.ndarray) -> np.ndarray:
        """The rows of ``users`` (int64 [R]) as float32 [R, n_items]."""
        items, values, offsets = self.bags(users)
        out = np.zeros((users.shape[0], self.n_items), dtype=np.float32)
        owner = np.repeat(np.arange(users.shape[0]), np.diff(offsets, append=items.shape[0]))
        out[owner, items] = values
        return out

    def first_sums(self, weight: Tensor, users: np.ndarray, dense: Tensor) -> Tensor:
        """The first-layer outputs ``b W`` [R, d] of the rows of ``users`` (int64 [R]) for a
        first layer ``W`` [n_items, d]: each row's items' rows of ``W`` summed (one bag per
        user) when ``W`` is stored row by row, else ``dense`` (those rows as the caller already
        has them densified, [R, n_items]) times ``W`` (a transposed layer, as Mult-VAE's:
        copying it to row order would cost as much as the product)."""
        device = weight.device
        if not weight.is_contiguous():
            return dense.to(weight.dtype) @ weight
        items, values, offsets = self.bags(users)
        return F.embedding_bag(
            torch.from_numpy(items).to(device),
            weight,
            torch.from_numpy(offsets).to(device),
            mode="sum",
            per_sample_weights=torch.from_numpy(values).to(device, weight.dtype),
        )
