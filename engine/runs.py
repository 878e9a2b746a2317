"""Run artifacts: one folder per trained model, written atomically, read back safely.

A run folder (by default ``$RECLENS_HOME/runs/<dataset>/<model>-<UTC timestamp>``) holds:

- ``config.json``: dataset source and load options, preparation options, split protocol,
  ratios and seed, model name and hyper-parameters, training settings, library versions,
  device and the data fingerprint (see :func:`fingerprint`);
- ``model.safetensors``: the model's state dict (never pickle);
- ``metrics.json``: test and valid means, seconds, training history;
- ``per_user_metrics.parquet``: ``user``, ``raw_id`` and one column per ``metric@K``;
- ``recommendations.parquet``: the top-100 of every evaluated test user with the test-time
  mask: ``user``, ``raw_id``, ``rank`` (1..100), ``item``, ``item_raw_id``, ``score``;
- ``item_embeddings.parquet`` / ``user_embeddings.parquet``: ``index``, ``raw_id`` and
  ``vector`` (a fixed-size list column, ``Array(Float32, d)``), see :func:`representations`;
- ``.complete``: a JSON manifest (size and SHA-256 of every file above), written last.

Files derived later from a saved run are written here too, only through :func:`write_derived`
(each file atomically, then the manifest updated), so the manifest covers them:

- ``beyond_metrics.json`` / ``beyond_per_user.parquet``: beyond-accuracy metrics at K=10
  (:data:`BEYOND_METRICS`, :data:`BEYOND_PER_USER`; written by the pipeline for every run);
- ``items_2d.parquet`` + ``items_2d.json`` (and ``users_``, ``_pca``): 2-D projections
  (:func:`projection_files`);
- ``fidelity/per_user_seed<S>_<N>users.parquet``: per-user fidelity results
  (:func:`fidelity_file`).

No other module knows a file name inside a run folder. :func:`save_run` writes everything into
a hidden temporary sibling folder and renames it into place only when complete, so an
interrupted run never leaves a folder that looks finished; stale temporary folders of earlier
interrupted saves are removed on the next save. :func:`load_run` checks every file of the
manifest (derived ones included) and turns every problem (missing folder, missing, truncated,
linked or tampered file, invalid JSON, safetensors header error, shape mismatch) into a
one-line :class:`~data.errors.ReclensError`; nothing in a run folder is ever executed.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import math
import os
import re
import secrets
import shutil
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
import scipy.sparse as sp
import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from data.dataset import Dataset
from data.errors import ReclensError
from data.paths import reclens_home
from data.splits import Split
from engine.contract import Recommender
from engine.evaluate import dense_rows, score_rows, top_k
from engine.run_config import RunConfig

CONFIG = "config.json"
METRICS = "metrics.json"
MODEL = "model.safetensors"
PER_USER = "per_user_metrics.parquet"
RECOMMENDATIONS = "recommendations.parquet"
ITEM_EMBEDDINGS = "item_embeddings.parquet"
USER_EMBEDDINGS = "user_embeddings.parquet"
COMPLETE = ".complete"
ARTIFACTS: tuple[str, ...] = (
    CONFIG,
    METRICS,
    MODEL,
    PER_USER,
    RECOMMENDATIONS,
    ITEM_EMBEDDINGS,
    USER_EMBEDDINGS,
)
BEYOND_METRICS = "beyond_metrics.json"
BEYOND_PER_USER = "beyond_per_user.parquet"
RECOMMENDATIONS_K = 100
MAX_EMBEDDING_DIMS = 2048
"""Non-learned representations wider than this are compressed (see :func:`representations`)."""
COMPRESSED_DIMS = 256
FORMAT_VERSION = 1
STALE_PARTIAL_SECONDS = 3600.0
"""Hidden ``.partial-*`` folders older than this are left over from interrupted saves."""


class RunError(ReclensError):
    """A run folder is missing, incomplete, corrupted or does not match its data."""


# -- locations ---------------------------------------------------------------------------------
def runs_root() -> Path:
    """Default folder of all runs: ``$RECLENS_HOME/runs`` (not created here)."""
    return reclens_home() / "runs"


def slug(text: str) -> str:
    """``text`` made safe as one path component (letters, digits, ``.``, ``_``, ``-``)."""
    cleaned = re.sub(r"[^A-Za-z0-9._-]+", "_", str(text)).strip("._")
    return cleaned or "run"


def utc_stamp(now: datetime | None = None) -> str:
    """A UTC timestamp usable in a folder name, e.g. ``20250101T120000Z``."""
    return (now or datetime.now(UTC)).strftime("%Y%m%dT%H%M%SZ")


# -- data fingerprint --------------------------------------------------------------------------
def fingerprint(dataset: Dataset, split: Split) -> dict[str, Any]:
    """What identifies the data a run was trained on.

    ``n_users``, ``n_items``, ``nnz`` (interactions of the prepared dataset), ``train_nnz`` and
    ``train_sha256``: SHA-256 of the training matrix's ``indptr`` and sorted ``indices`` (as
    little-endian int64), so any change in who is in train is noticed.
    """
    train = split.train if split.train.has_sorted_indices else split.train.sorted_indices()
    digest = hashlib.sha256()
    digest.update(np.asarray(train.shape, dtype="<i8").tobytes())
    digest.update(train.indptr.astype("<i8").tobytes())
    digest.update(train.indices.astype("<i8").tobytes())
    return {
        "n_users": int(dataset.n_users),
        "n_items": int(dataset.n_items),
        "nnz": int(dataset.n_interactions),
        "train_nnz": int(train.nnz),
        "train_sha256": digest.hexdigest(),
    }


def library_versions() -> dict[str, str]:
    """Versions of torch, numpy, polars and reclens (``unknown`` when not installed)."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        reclens = version("reclens")
    except PackageNotFoundError:
        reclens = "unknown"
    return {
        "torch": torch.__version__,
        "numpy": np.__version__,
        "polars": pl.__version__,
        "reclens": reclens,
    }


# -- representations ---------------------------------------------------------------------------
@dataclass(frozen=True)
class Embeddings:
    """Vectors of items or users.

    ``index``: int64 [n] (item or user indices); ``raw_id``: str [n]; ``vectors``: float32
    [n, d]; ``kind``: ``learned`` (the model's own factors), ``item-item`` (columns of the
    model's item-item weights) or ``interactions`` (columns of the training matrix); ``note``:
    how they were obtained, in words.
    """

    index: np.ndarray
    raw_id: np.ndarray
    vectors: np.ndarray
    kind: str
    note: str = ""

    def table(self) -> pl.DataFrame:
        """``index`` (Int64), ``raw_id`` (String), ``vector`` (Array(Float32, d))."""
        return pl.DataFrame(
            {
                "index": pl.Series("index", self.index.astype(np.int64)),
                "raw_id": pl.Series("raw_id", self.raw_id.astype(str), dtype=pl.String),
                "vector": pl.Series("vector", np.ascontiguousarray(self.vectors, np.float32)),
            }
        )


@torch.no_grad()
def representations(
    model: Recommender, dataset: Dataset, split: Split, batch_size: int = 1024
) -> tuple[Embeddings, Embeddings]:
    """Item vectors [n_items, d] and user vectors [n_users with a train item, d].

    Models with learned factors give ``model.item_embeddings()`` and
    ``model.user_embeddings(x)`` for each user's train row ``x`` (when a model has item but no
    user factors, a user is the mean of their train items' factors).

    Models without learned item factors (pop, itemknn, ease) are described by what they
    score with, in the same space for items and users:

    - ``item-item``: when scoring single-item histories gives different rows (itemknn, ease:
      scores = x @ W), the item-item weights W [n_items, n_items] are read from the model by
      scoring the one-hot histories, and item j is the column W[:, j] (which items push j
      up); a user is their train row projected through them, x @ W^T;
    - ``interactions``: otherwise (pop, whose scores do not depend on the history), item j is
      the column j of the training matrix X [n_users, n_items] (who interacted with it), and
      a user is x @ X^T (how many items they share with every user).

    When such a representation is wider than :data:`MAX_EMBEDDING_DIMS` columns (large
    catalogues), items and users are projected on the top :data:`COMPRESSED_DIMS` right
    singular vectors of the item matrix (seeded randomized SVD), which keeps the inner
    products approximately and the files small; ``note`` says so.
    """
    device = model.device
    item_raw = dataset.item_raw_ids
    user_raw = dataset.user_raw_ids
    users = np.flatnonzero(np.diff(split.train.indptr) > 0).astype(np.int64)
    items_index = np.arange(split.n_items, dtype=np.int64)
    learned = model.item_embeddings()
    if learned is not None:
        item_vec = learned.detach().float().cpu().numpy()
        parts = []
        for lo in range(0, len(users), batch_size):
            x = dense_rows(split.train, users[lo : lo + batch_size], device)
            u = model.user_embeddings(x)
            if u is None:
                u = (x @ learned.detach().float()) / x.sum(1, keepdim=True).clamp(min=1.0)
            parts.append(u.detach().float().cpu().numpy())
        user_vec = np.concatenate(parts) if parts else np.zeros((0, item_vec.shape[1]), np.float32)
        note = "the model's learned factors"
        return (
            Embeddings(items_index, item_raw, item_vec.astype(np.float32), "learned", note),
            Embeddings(users, user_raw[users], user_vec.astype(np.float32), "learned", note),
        )

    weights = _item_item_weights(model, batch_size)
    if weights is not None:
        basis, kind = weights.T.copy(), "item-item"  # row j = column j of W
        note = "columns of the model's item-item weights; users x @ W^T"
    else:  # kept sparse: dense, X^T alone is n_items x n_users (2.8 GB at MovieLens-10M size)
        basis = sp.csr_matrix(split.fit_matrix().T, dtype=np.float32)
        kind, note = "interactions", "columns of the training matrix; users x @ X^T"
    if basis.shape[1] > MAX_EMBEDDING_DIMS:  # compress first: x @ (W^T P), never x @ W^T
        item_vec = np.asarray(basis @ _top_right_singular_vectors(basis, COMPRESSED_DIMS))
        note += f", compressed to {COMPRESSED_DIMS} SVD dimensions"
    else:
        item_vec = basis.toarray() if sp.issparse(basis) else basis
    user_vec = np.asarray(split.train[users] @ item_vec, dtype=np.float32)
    return (
        Embeddings(items_index, item_raw, item_vec.astype(np.float32), kind, note),
        Embeddings(users, user_raw[users], user_vec.astype(np.float32), kind, note),
    )


def _item_item_weights(model: Recommender, batch_size: int) -> np.ndarray | None:
    """Scores of every one-hot history, W [n_items, n_items], or None when rows are all equal."""
    n = model.n_items
    one_hot = sp.identity(n, dtype=np.float32, format="csr")
    rows = []
    for lo in range(0, n, batch_size):
        scores = score_rows(model, one_hot, np.arange(lo, min(n, lo + batch_size)))
        rows.append(scores.detach().float().cpu().numpy())
    weights = np.concatenate(rows)
    if not np.all(np.isfinite(weights)):
        weights = np.nan_to_num(weights, nan=0.0, posinf=0.0, neginf=0.0)
    if np.allclose(weights, weights[:1], rtol=1e-6, atol=1e-8):
        return None
    return weights


def _top_right_singular_vectors(matrix: np.ndarray | sp.spmatrix, k: int) -> np.ndarray:
    """Top-``k`` right singular vectors [d, k] of ``matrix`` [n, d] (seeded, sign-fixed).

    A sparse matrix goes through :func:`_sparse_right_singular_vectors` (torch's low-rank SVD
    on a sparse tensor took minutes at MovieLens-10M size)."""
    if sp.issparse(matrix):
        v = _sparse_right_singular_vectors(sp.csr_matrix(matrix, dtype=np.float32), k)
    else:
        tensor = torch.from_numpy(np.ascontiguousarray(matrix, dtype=np.float32))
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(0)
            _, _, v = torch.svd_lowrank(tensor, q=min(k + 10, *tensor.shape), niter=4)
        v = v[:, :k].numpy()
    signs = np.sign(v[np.abs(v).argmax(axis=0), np.arange(v.shape[1])])
    return (v * np.where(signs == 0, 1.0, signs)).astype(np.float32)


def _sparse_right_singular_vectors(a: sp.csr_matrix, k: int, niter: int = 2) -> np.ndarray:
    """Halko et al.'s randomized SVD (as ``torch.svd_lowrank``: ``k + 10`` columns, ``niter``
    power iterations, 2 by default as there) with scipy's sparse products and numpy's QR:
    [d, k], seed 0."""
    at = sp.csr_matrix(a.T)
    q = min(k + 10, *a.shape)
    rng = np.random.default_rng(0)
    basis, _ = np.linalg.qr(at @ rng.standard_normal((a.shape[0], q), dtype=np.float32))
    for _ in range(niter):
        basis, _ = np.linalg.qr(a @ basis)  # [n, q]
        basis, _ = np.linalg.qr(at @ basis)  # [d, q]: spans the top right singular vectors
    _, _, vt = np.linalg.svd(np.asarray(a @ basis), full_matrices=False)  # A Q = U S W^T
    return (basis @ vt.T)[:, :k]  # A ~ U S (Q W)^T


@torch.no_grad()
def recommendations(
    model: Recommender, dataset: Dataset, split: Split, k: int = RECOMMENDATIONS_K
) -> pl.DataFrame:
    """Top-``k`` of every evaluated test user, train and valid items masked.

    Columns: ``user`` (Int64), ``raw_id`` (String), ``rank`` (Int32, 1..k), ``item`` (Int64),
    ``item_raw_id`` (String), ``score`` (Float32); masked (``-inf``) slots are dropped, so a
    user with fewer than ``k`` candidates has fewer rows.
    """
    users = split.eval_users("test")
    k = min(k, split.n_items)
    items, scores = top_k(model, split.train, users, k, split.mask("test"))
    keep = np.isfinite(scores).ravel()
    user_col = np.repeat(users, k)[keep]
    item_col = items.ravel()[keep].astype(np.int64)
    return pl.DataFrame(
        {
            "user": pl.Series(user_col, dtype=pl.Int64),
            "raw_id": pl.Series(dataset.user_raw_ids[user_col].astype(str), dtype=pl.String),
            "rank": pl.Series(np.tile(np.arange(1, k + 1), len(users))[keep], dtype=pl.Int32),
            "item": pl.Series(item_col, dtype=pl.Int64),
            "item_raw_id": pl.Series(dataset.item_raw_ids[item_col].astype(str), dtype=pl.String),
            "score": pl.Series(scores.ravel()[keep].astype(np.float32), dtype=pl.Float32),
        }
    )


# -- saving ------------------------------------------------------------------------------------
def state_tensors(model: Recommender) -> dict[str, torch.Tensor]:
    """The model's state dict as dense, contiguous, unshared CPU tensors (safetensors-ready)."""
    out: dict[str, torch.Tensor] = {}
    for name, tensor in model.state_dict().items():
        t = tensor.detach()
        if t.is_sparse or t.layout != torch.strided:
            t = t.to_dense()
        out[name] = t.to("cpu").contiguous().clone()
    return out


def to_json(value: Any) -> Any:
    """``value`` with numpy scalars/arrays, tuples, paths and non-finite floats made JSON-safe."""
    if isinstance(value, Mapping):
        return {str(k): to_json(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [to_json(v) for v in value]
    if isinstance(value, np.ndarray):
        return to_json(value.tolist())
    if isinstance(value, np.generic):
        return to_json(value.item())
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, torch.device):
        return str(value)
    return value


def save_run(
    model: Recommender,
    dataset: Dataset,
    split: Split,
    *,
    config: RunConfig,
    metrics: Mapping[str, Any],
    per_user: pl.DataFrame,
    root: str | Path | None = None,
    run_dir: str | Path | None = None,
) -> Path:
    """Write a complete run folder and return its path.

    ``config``: what the run was made from (``created``, ``format``, ``n_items`` and
    ``embeddings`` are filled in here); ``metrics``: test/valid means, seconds, history;
    ``per_user``: the test per-user table (``user`` + metric columns; ``raw_id`` is added). The
    folder is ``run_dir`` when given (it must not exist yet), else
    ``<root>/<dataset>/<model>-<UTC timestamp>`` under ``root`` (default :func:`runs_root`),
    with ``-2``, ``-3``... added when that name is taken. Everything is written to a hidden
    temporary sibling first and renamed at the end.
    """
    if run_dir is not None:
        final = Path(run_dir).expanduser()
        if final.exists():
            raise RunError(f"{final}: run folder already exists")
    else:
        base = Path(root).expanduser() if root is not None else runs_root()
        final = base / slug(config.dataset.name) / f"{slug(config.model)}-{utc_stamp()}"
    try:
        final.parent.mkdir(parents=True, exist_ok=True)
        remove_stale_partials(final.parent)
        tmp = final.parent / f".{final.name}.partial-{os.getpid()}-{secrets.token_hex(4)}"
        tmp.mkdir()
    except OSError as err:
        raise RunError(f"{final.parent}: cannot write a run folder there ({_short(err)})") from err
    try:
        items, users = representations(model, dataset, split)
        full_config = replace(
            config,
            format=FORMAT_VERSION,
            created=datetime.now(UTC).isoformat(timespec="seconds"),
            n_items=int(model.n_items),
            embeddings={"kind": items.kind, "note": items.note, "dims": items.vectors.shape[1]},
        )
        _write_json(tmp / CONFIG, full_config.to_json())
        _write_json(tmp / METRICS, metrics)
        save_file(state_tensors(model), str(tmp / MODEL), metadata={"model": config.model})
        raw = pl.Series("raw_id", dataset.user_raw_ids[per_user["user"].to_numpy()].astype(str))
        per_user.clone().insert_column(1, raw).write_parquet(tmp / PER_USER)
        recommendations(model, dataset, split).write_parquet(tmp / RECOMMENDATIONS)
        items.table().write_parquet(tmp / ITEM_EMBEDDINGS)
        users.table().write_parquet(tmp / USER_EMBEDDINGS)
        manifest = {name: _file_entry(tmp / name) for name in ARTIFACTS}
        _write_json(tmp / COMPLETE, {"format": FORMAT_VERSION, "files": manifest})
        return _rename_into_place(tmp, final, explicit=run_dir is not None)
    except OSError as err:
        shutil.rmtree(tmp, ignore_errors=True)
        raise RunError(f"{final}: saving the run failed ({_short(err)})") from err
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def remove_stale_partials(folder: Path, older_than: float = STALE_PARTIAL_SECONDS) -> list[Path]:
    """Remove hidden ``.<name>.partial-*`` folders and files older than ``older_than`` seconds.

    They are what interrupted saves leave behind (a running save's own is younger). Returns
    the removed paths.
    """
    removed = []
    now = time.time()
    with contextlib.suppress(OSError):
        for child in folder.iterdir():
            if not (child.name.startswith(".") and ".partial-" in child.name):
                continue
            with contextlib.suppress(OSError):
                if now - child.lstat().st_mtime < older_than:
                    continue
                if child.is_dir() and not child.is_symlink():
                    shutil.rmtree(child)
                else:
                    child.unlink()
                removed.append(child)
    return removed


# -- derived files -----------------------------------------------------------------------------
def projection_files(kind: str, method: str) -> tuple[str, str]:
    """Names of a stored projection's table and its JSON description inside a run folder."""
    stem = f"{kind}_2d" if method == "umap" else f"{kind}_2d_{method}"
    return f"{stem}.parquet", f"{stem}.json"


FIDELITY_FOLDER = "fidelity/"


def fidelity_file(seed: int, label: str) -> str:
    """Name (inside a run folder) of per-user fidelity results for ``seed`` and a user count."""
    return f"{FIDELITY_FOLDER}per_user_seed{int(seed)}_{slug(label)}users.parquet"


Writer = Callable[[Path], None]
_FOLDER_LOCKS: dict[str, threading.Lock] = {}
_FOLDER_LOCKS_GUARD = threading.Lock()


@contextlib.contextmanager
def _folder_lock(folder: Path) -> Iterator[None]:
    """Exclusive access to a run folder's manifest: a thread lock plus ``flock`` on the folder."""
    key = str(folder.resolve())
    with _FOLDER_LOCKS_GUARD:
        lock = _FOLDER_LOCKS.setdefault(key, threading.Lock())
    with lock:
        fd = os.open(folder, os.O_RDONLY)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)


def write_derived(folder: str | Path, writers: Mapping[str, Writer]) -> None:
    """Write derived files into a complete run folder and record them in its manifest.

    ``writers`` maps a file name (see the module docstring) to a function that writes the
    file's content to the path it is given. Each file is written to a hidden temporary name
    and renamed into place, then the manifest is replaced by one that lists it (so
    :func:`load_run` verifies it). Raises :class:`RunError` when the folder is not a complete
    run or cannot be written (a read-only run, a full disk).
    """
    folder = Path(folder).expanduser()
    read_manifest(folder)
    token = f".partial-{os.getpid()}-{secrets.token_hex(4)}"
    try:
        with _folder_lock(folder):
            marker = read_json(folder / COMPLETE)
            files = dict(marker.get("files") or {})
            for name, write in writers.items():
                if name in ARTIFACTS or name == COMPLETE:
                    raise RunError(f"{folder}: {name} is written only when the run is saved")
                final = folder / name
                final.parent.mkdir(parents=True, exist_ok=True)
                remove_stale_partials(final.parent)  # left by interrupted writes
                tmp = final.with_name(f".{final.name}{token}")
                try:
                    write(tmp)
                    files[name] = _file_entry(tmp)
                    os.replace(tmp, final)
                finally:
                    with contextlib.suppress(OSError):
                        tmp.unlink()
            tmp_marker = folder / f"{COMPLETE}{token}"
            _write_json(tmp_marker, {**marker, "files": files})
            os.replace(tmp_marker, folder / COMPLETE)
    except OSError as err:
        raise RunError(f"{folder}: cannot store {', '.join(writers)} ({_short(err)})") from err


def write_derived_json(folder: str | Path, name: str, value: Any) -> None:
    """Store a JSON derived file (see :func:`write_derived`)."""
    write_derived(folder, {name: lambda path: _write_json(path, value)})


def read_derived_json(
    folder: str | Path, name: str, manifest: Mapping[str, Any] | None = None
) -> dict[str, Any] | None:
    """A derived JSON file of a run folder, or None when the manifest does not list it.

    A listed file that was changed after it was stored raises :class:`RunError`.
    """
    folder = Path(folder).expanduser()
    manifest = read_manifest(folder) if manifest is None else manifest
    if name not in manifest:
        return None
    _verify(folder / name, manifest[name])
    return read_json(folder / name)


def read_derived_table(
    folder: str | Path, name: str, manifest: Mapping[str, Any] | None = None
) -> pl.DataFrame | None:
    """A derived Parquet file of a run folder, or None when the manifest does not list it."""
    folder = Path(folder).expanduser()
    manifest = read_manifest(folder) if manifest is None else manifest
    if name not in manifest:
        return None
    return read_table(folder, name, manifest)


def _rename_into_place(tmp: Path, final: Path, explicit: bool) -> Path:
    for attempt in range(1, 1000):
        target = final if attempt == 1 else final.with_name(f"{final.name}-{attempt}")
        if target.exists():
            if explicit:
                raise RunError(f"{target}: run folder already exists")
            continue
        try:
            os.rename(tmp, target)
        except OSError:  # another process took the name between the check and the rename
            if explicit:
                raise
            continue
        return target
    raise RunError(f"{final}: could not find a free run folder name")


def _write_json(path: Path, value: Any) -> None:
    path.write_text(json.dumps(to_json(value), indent=2, allow_nan=False) + "\n")


def _file_entry(path: Path) -> dict[str, Any]:
    return {"bytes": path.stat().st_size, "sha256": _sha256(path)}


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


# -- loading -----------------------------------------------------------------------------------
@dataclass
class Run:
    """A saved run: its folder, config and metrics, and the restored model (eval mode)."""

    path: Path
    config: RunConfig
    metrics: dict[str, Any]
    model: Recommender
    _manifest: dict[str, Any] = field(default_factory=dict, repr=False)

    @property
    def name(self) -> str:
        """The model's registry name."""
        return self.config.model

    @property
    def dataset(self) -> str:
        """The dataset's name."""
        return self.config.dataset.name

    @property
    def seed(self) -> int:
        return self.config.seed

    @property
    def manifest(self) -> dict[str, Any]:
        """The ``{file name: {"bytes", "sha256"}}`` manifest as read when the run was loaded."""
        return dict(self._manifest)

    def refresh_manifest(self) -> None:
        """Read the manifest again (after :func:`write_derived` added files)."""
        self._manifest = read_manifest(self.path)

    def per_user_metrics(self) -> pl.DataFrame:
        """Test metrics per evaluated user: ``user``, ``raw_id``, ``recall@10``, ..."""
        return read_table(self.path, PER_USER, self._manifest)

    def recommendations(self) -> pl.DataFrame:
        """Top-100 per evaluated test user (see :func:`recommendations`)."""
        return read_table(self.path, RECOMMENDATIONS, self._manifest)

    def item_embeddings(self) -> Embeddings:
        """Item vectors [n_items, d] as saved (see :func:`representations`)."""
        return read_embeddings(self.path, "items", self._manifest, self.config)

    def user_embeddings(self) -> Embeddings:
        """User vectors [n_users with a train item, d] as saved."""
        return read_embeddings(self.path, "users", self._manifest, self.config)


def read_manifest(folder: str | Path) -> dict[str, Any]:
    """The ``{file name: {"bytes", "sha256"}}`` manifest of a complete run folder."""
    folder = Path(folder).expanduser()
    if not folder.is_dir():
        raise RunError(f"{folder}: no such run folder")
    marker = folder / COMPLETE
    _refuse_link(marker)
    if not marker.is_file():
        raise RunError(f"{folder}: not a complete run (no {COMPLETE} marker; interrupted?)")
    files = read_json(marker).get("files")
    if not isinstance(files, dict):
        raise RunError(f"{marker}: manifest has no file list")
    return files


def read_table(
    folder: str | Path, name: str, manifest: Mapping[str, Any] | None = None
) -> pl.DataFrame:
    """The parquet artifact ``name`` of a run folder, checked against the manifest."""
    folder = Path(folder).expanduser()
    manifest = read_manifest(folder) if manifest is None else manifest
    path = folder / name
    _verify(path, manifest.get(name))
    try:
        return pl.read_parquet(path)
    except Exception as err:  # polars raises several types for a damaged file
        raise RunError(f"{path}: unreadable parquet file ({_short(err)})") from err


def read_embeddings(
    folder: str | Path,
    kind: str,
    manifest: Mapping[str, Any] | None = None,
    config: RunConfig | None = None,
) -> Embeddings:
    """Saved ``kind`` (``items`` or ``users``) vectors of a run folder, without the model."""
    if kind not in ("items", "users"):
        raise RunError(f"unknown embedding kind {kind!r}: use items or users")
    folder = Path(folder).expanduser()
    name = ITEM_EMBEDDINGS if kind == "items" else USER_EMBEDDINGS
    frame = read_table(folder, name, manifest)
    path = folder / name
    if not {"index", "raw_id", "vector"} <= set(frame.columns):
        raise RunError(f"{path}: expected columns index, raw_id, vector")
    vectors = frame["vector"].to_numpy()
    if vectors.ndim != 2:
        raise RunError(f"{path}: column vector is not a fixed-size vector column")
    info = (config if config is not None else read_config(folder)).embeddings
    return Embeddings(
        frame["index"].to_numpy().astype(np.int64),
        frame["raw_id"].to_numpy().astype(str),
        vectors.astype(np.float32, copy=False),
        str(info.get("kind", "")),
        str(info.get("note", "")),
    )


Factory = Callable[..., Recommender]


def load_run(
    path: str | Path, device: str | torch.device = "cpu", factory: Factory | None = None
) -> Run:
    """Read the run folder ``path`` and restore its model on ``device``.

    Every file the manifest lists (derived files included) is checked first (size, SHA-256,
    a plain file), so any change after saving is noticed. The model is rebuilt as
    ``factory(name, n_items, **hparams)`` (default :func:`engine.registry.create`) and given
    the saved state dict, so it scores exactly as when it was saved. Every problem raises
    :class:`RunError` (a ReclensError) naming the file.
    """
    folder = Path(path).expanduser()
    manifest = verify_run(folder)
    config = read_config(folder)
    metrics = read_json(folder / METRICS)
    model = _restore_model(folder, config, torch.device(device), factory)
    return Run(path=folder, config=config, metrics=metrics, model=model, _manifest=manifest)


def with_model(path: str | Path, model: Recommender) -> Run:
    """The saved run at ``path`` with ``model`` (already in memory) instead of a restored one."""
    folder = Path(path).expanduser()
    manifest = read_manifest(folder)
    _verify(folder / METRICS, manifest.get(METRICS))
    _verify(folder / CONFIG, manifest.get(CONFIG))
    return Run(folder, read_config(folder), read_json(folder / METRICS), model, manifest)


def verify_run(folder: str | Path) -> dict[str, Any]:
    """Check every file the manifest of a run folder lists; returns the manifest."""
    folder = Path(folder).expanduser()
    manifest = read_manifest(folder)
    for name in ARTIFACTS:
        if name not in manifest:
            raise RunError(f"{folder / name}: not listed in the run's {COMPLETE} manifest")
    for name, entry in manifest.items():
        path = folder / name
        _refuse_link(path)
        if not _inside(folder, path):
            raise RunError(f"{folder / COMPLETE}: manifest names a file outside the run: {name}")
        _verify(path, entry)
    return manifest


def read_config(folder: str | Path) -> RunConfig:
    """The typed ``config.json`` of a run folder (not checked against the manifest).

    A run saved under a retired model name (``mf``, ``neumf``: see
    :data:`engine.registry.RETIRED`) reads as the same model's current name.
    """
    from engine.registry import RETIRED

    path = Path(folder).expanduser() / CONFIG
    config = RunConfig.from_json(read_json(path), str(path))
    current = RETIRED.get(config.model.strip().lower())
    return config if current is None else replace(config, model=current)


def _inside(folder: Path, path: Path) -> bool:
    try:
        path.resolve().relative_to(folder.resolve())
    except (ValueError, OSError):
        return False
    return True


def _restore_model(
    folder: Path, config: RunConfig, device: torch.device, factory: Factory | None
) -> Recommender:
    cfg_path = folder / CONFIG
    name, hparams, n_items = config.model, config.hparams, config.n_items
    if n_items < 1:
        raise RunError(f"{cfg_path}: n_items must be a positive integer, got {n_items}")
    trained_on = config.fingerprint.get("n_items")
    if trained_on is not None and trained_on != n_items:
        raise RunError(
            f"{cfg_path}: n_items {n_items} does not match the shape of the training data "
            f"({trained_on} items)"
        )
    if factory is None:
        from engine import registry

        factory = registry.create
    try:
        model = factory(name, n_items, **hparams)
    except ReclensError as err:
        raise RunError(f"{cfg_path}: {err}") from err
    except (TypeError, ValueError, KeyError, RuntimeError, MemoryError) as err:
        raise RunError(f"{cfg_path}: cannot rebuild model {name!r} ({_short(err)})") from err
    model_path = folder / MODEL
    try:
        state = load_file(str(model_path), device="cpu")
    except (SafetensorError, OSError, ValueError, RuntimeError) as err:
        raise RunError(f"{model_path}: unreadable safetensors file ({_short(err)})") from err
    expected = model.state_dict()
    for key, tensor in state.items():
        if key in expected and tuple(expected[key].shape) != tuple(tensor.shape):
            raise RunError(
                f"{model_path}: tensor {key} has shape {tuple(tensor.shape)}, "
                f"model {name} expects {tuple(expected[key].shape)}"
            )
    missing = sorted(set(expected) - set(state))
    extra = sorted(set(state) - set(expected))
    if missing or extra:
        raise RunError(
            f"{model_path}: state does not match model {name} "
            f"(missing {missing[:3]}, unexpected {extra[:3]})"
        )
    try:
        model.load_state_dict(state)
    except RuntimeError as err:
        raise RunError(f"{model_path}: cannot load state ({_short(err)})") from err
    return model.to(device).eval()


def read_json(path: Path) -> dict[str, Any]:
    """A JSON object from ``path``; :class:`RunError` when missing or invalid."""
    try:
        text = path.read_text()
    except FileNotFoundError as err:
        raise RunError(f"{path}: missing") from err
    except (OSError, UnicodeDecodeError) as err:
        raise RunError(f"{path}: unreadable ({_short(err)})") from err
    try:
        value = json.loads(text)
    except json.JSONDecodeError as err:
        raise RunError(f"{path}: invalid JSON at line {err.lineno} column {err.colno}") from err
    except RecursionError as err:
        raise RunError(f"{path}: JSON nested too deeply") from err
    if not isinstance(value, dict):
        raise RunError(f"{path}: expected a JSON object")
    return value


def _verify(path: Path, entry: Any) -> None:
    """Check ``path`` against its manifest ``entry`` (a plain file, size, then SHA-256)."""
    _refuse_link(path)
    if not path.is_file():
        raise RunError(f"{path}: missing")
    if not isinstance(entry, dict):
        raise RunError(f"{path}: not listed in the run's {COMPLETE} manifest")
    size = path.stat().st_size
    if size != entry.get("bytes"):
        raise RunError(f"{path}: {size} bytes, expected {entry.get('bytes')} (truncated?)")
    if _sha256(path) != entry.get("sha256"):
        raise RunError(f"{path}: checksum mismatch (the file was modified after saving)")


def _refuse_link(path: Path) -> None:
    if path.is_symlink():
        raise RunError(f"{path}: a symbolic link; run folders hold only plain files")


def _short(err: BaseException) -> str:
    return " ".join(str(err).split())[:200] or type(err).__name__


# -- listing -----------------------------------------------------------------------------------
@dataclass(frozen=True)
class RunSummary:
    """What the leaderboard shows of a run, read from its JSON files only."""

    path: Path
    dataset: str
    model: str
    seed: int
    created: str
    device: str
    protocol: str
    metrics: dict[str, float]
    valid: dict[str, float]
    seconds: dict[str, float]
    hparams: dict[str, Any]
    config: RunConfig


def _mapping_of(metrics: dict[str, Any], key: str) -> dict[str, Any]:
    value = metrics.get(key, {})
    return dict(value) if isinstance(value, dict) else {}


def list_runs(root: str | Path | None = None) -> list[RunSummary]:
    """Complete runs under ``root`` (default :func:`runs_root`), newest first.

    Looks at ``<root>/<dataset>/<run>/`` (and at ``root`` itself or ``<root>/<run>/`` when
    they are run folders); folders without a ``.complete`` marker, hidden temporary folders and
    runs whose JSON cannot be read are left out.
    """
    return scan_runs(root)[0]


def scan_runs(
    root: str | Path | None = None, check: Callable[[Path], Any] | None = None
) -> tuple[list[RunSummary], list[tuple[Path, str]]]:
    """The runs :func:`list_runs` lists, and the broken ones: ``(folder, reason)`` for each
    folder with a ``.complete`` marker whose ``check(folder)`` (e.g. :func:`verify_run`) or
    JSON files fail, whatever the failure (a broken folder never stops the listing)."""
    base = Path(root).expanduser() if root is not None else runs_root()
    found: list[RunSummary] = []
    broken: list[tuple[Path, str]] = []
    for folder in _candidate_folders(base):
        try:
            if check is not None:
                check(folder)
            config, metrics = read_config(folder), read_json(folder / METRICS)
            found.append(
                RunSummary(
                    path=folder,
                    dataset=config.dataset.name,
                    model=config.model,
                    seed=config.seed,
                    created=config.created,
                    device=config.device,
                    protocol=config.split.protocol,
                    metrics=_mapping_of(metrics, "test"),
                    valid=_mapping_of(metrics, "valid"),
                    seconds=_mapping_of(metrics, "seconds"),
                    hparams=dict(config.hparams),
                    config=config,
                )
            )
        except ReclensError as err:
            broken.append((folder, _short(err)))
        except Exception as err:  # noqa: BLE001 - e.g. RecursionError, a bogus field's type
            broken.append((folder, f"unreadable run ({type(err).__name__}: {_short(err)})"))
    found.sort(key=lambda s: (s.created, str(s.path)), reverse=True)
    return found, broken


def _candidate_folders(base: Path) -> Iterator[Path]:
    if not base.is_dir():
        return
    if (base / COMPLETE).is_file():
        yield base
        return
    for child in sorted(base.iterdir()):
        if child.name.startswith(".") or not child.is_dir():
            continue
        if (child / COMPLETE).is_file():
            yield child
            continue
        with contextlib.suppress(OSError):
            for grand in sorted(child.iterdir()):
                if not grand.name.startswith(".") and (grand / COMPLETE).is_file():
                    yield grand
