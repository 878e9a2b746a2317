"""2-D maps of a run's item and user vectors: UMAP (cosine) or PCA, stored with the run.

:func:`run_projection` returns the [n, 2] coordinates of a run's items or users, rows in
the order of the saved embeddings (``run.item_embeddings().index``). The first call computes
them and stores a table (``index``, ``x``, ``y``) and its description (method, seed,
parameters, seconds) with the run through :func:`engine.runs.write_derived` (file names:
:func:`engine.runs.projection_files`), so the manifest covers them; later calls read them back,
as long as the embeddings file they came from is unchanged.

UMAP uses umap-learn with ``metric="cosine"``, ``n_neighbors=15`` and ``random_state`` = the
run's seed. A fixed ``random_state`` makes umap-learn run single-threaded anyway, so
``n_jobs=1`` is passed explicitly, which is what keeps it from warning about the override.
A module-level lock makes sure UMAP never runs in several threads at once (numba's thread
pool and umap's global state are not meant for it).

umap-learn compiles its numba kernels on first use, 20-40 s on two CPU cores. Before the first
UMAP of a process, numba's on-disk cache is switched on for umap's kernels (as ``cache=True``
would), so only the first process on a machine pays that; :func:`warm_up` runs a tiny UMAP to
do it ahead of time (e.g. in a background thread when the dashboard starts).

PCA is the fast alternative: the rows are L2-normalised (cosine geometry, like the UMAP
metric), centred, and projected on their top two principal axes (deterministic, signs fixed).
"""

from __future__ import annotations

import contextlib
import json
import threading
import time
import warnings
from pathlib import Path
from typing import Any, Literal

import numpy as np
import polars as pl

from data.errors import ReclensError
from engine.runs import (
    ITEM_EMBEDDINGS,
    USER_EMBEDDINGS,
    Run,
    RunError,
    projection_files,
    read_derived_json,
    read_derived_table,
    write_derived,
)

Method = Literal["umap", "pca"]
Kind = Literal["items", "users"]
METHODS: tuple[str, ...] = ("umap", "pca")
KINDS: tuple[str, ...] = ("items", "users")
N_NEIGHBORS = 15
METRIC = "cosine"
SPECTRAL_MIN_POINTS = 64
"""Below this many points UMAP starts from a random layout (spectral init needs more)."""

_UMAP_LOCK = threading.Lock()
_PATHS_LOCK = threading.Lock()
_PATH_LOCKS: dict[str, threading.Lock] = {}
_CACHE_ENABLED = False


# -- projections of arrays ---------------------------------------------------------------------
def umap_2d(vectors: np.ndarray, seed: int = 0, n_neighbors: int = N_NEIGHBORS) -> np.ndarray:
    """UMAP of ``vectors`` [n, d] with the cosine metric: float32 [n, 2].

    Deterministic for a ``seed``. Fewer than 4 points fall back to :func:`pca_2d`.
    """
    x = _as_matrix(vectors)
    n = x.shape[0]
    if n < 4:
        return pca_2d(x)
    with _UMAP_LOCK:
        umap = _import_umap()
        reducer = umap.UMAP(
            n_neighbors=max(2, min(n_neighbors, n - 1)),
            n_components=2,
            metric=METRIC,
            random_state=int(seed),
            n_jobs=1,  # what random_state implies; saying so avoids umap's override warning
            init="spectral" if n >= SPECTRAL_MIN_POINTS else "random",
        )
        out = reducer.fit_transform(x)
    return np.ascontiguousarray(out, dtype=np.float32)


def pca_2d(vectors: np.ndarray) -> np.ndarray:
    """Top-2 principal components of the L2-normalised, centred rows: float32 [n, 2]."""
    x = _as_matrix(vectors).astype(np.float64)
    out = np.zeros((x.shape[0], 2), dtype=np.float32)
    if x.shape[0] < 2:
        return out
    norms = np.linalg.norm(x, axis=1, keepdims=True)
    x = x / np.where(norms > 0, norms, 1.0)
    x -= x.mean(axis=0, keepdims=True)
    n, d = x.shape
    if d <= n:
        _, vecs = np.linalg.eigh(x.T @ x)  # ascending eigenvalues, [d, d]
        axes = vecs[:, ::-1][:, :2]
        coords = x @ axes
    else:
        vals, vecs = np.linalg.eigh(x @ x.T)  # [n, n]: x = U S V^T, coords = U S
        coords = vecs[:, ::-1][:, :2] * np.sqrt(np.clip(vals[::-1][:2], 0.0, None))
    coords = coords[:, :2]
    signs = np.sign(coords[np.abs(coords).argmax(axis=0), np.arange(coords.shape[1])])
    coords = coords * np.where(signs == 0, 1.0, signs)
    out[:, : coords.shape[1]] = coords
    return out


def project(vectors: np.ndarray, method: str = "umap", seed: int = 0) -> np.ndarray:
    """``vectors`` [n, d] in 2-D with ``method`` (``umap`` or ``pca``): float32 [n, 2]."""
    if method == "umap":
        return umap_2d(vectors, seed)
    if method == "pca":
        return pca_2d(vectors)
    raise ReclensError(f"unknown projection method {method!r}: use {' or '.join(METHODS)}")


def _as_matrix(vectors: np.ndarray) -> np.ndarray:
    x = np.asarray(vectors, dtype=np.float32)
    if x.ndim != 2:
        raise ReclensError(f"projection needs a [n, d] matrix, got shape {x.shape}")
    if not np.all(np.isfinite(x)):
        x = np.nan_to_num(x, nan=0.0, posinf=0.0, neginf=0.0)
    return x


# -- umap import and numba cache ------------------------------------------------------------------
def _import_umap() -> Any:
    """Import umap-learn and switch on numba's disk cache for its kernels (once)."""
    global _CACHE_ENABLED
    with warnings.catch_warnings():
        # umap-learn announces at import that its optional TensorFlow part is missing.
        warnings.filterwarnings("ignore", message="Tensorflow not installed")
        import umap  # slow import (numba, pynndescent): only when a UMAP is asked for

    if not _CACHE_ENABLED:
        _enable_numba_cache()
        _CACHE_ENABLED = True
    return umap


def _enable_numba_cache() -> None:
    """Turn on on-disk caching for umap's numba functions, as ``cache=True`` would.

    Only functions not compiled yet are touched; any failure leaves them uncached (slower,
    never wrong).
    """
    from numba.core.dispatcher import Dispatcher
    from umap import distances, layouts, sparse, spectral, umap_, utils

    for module in (umap_, layouts, distances, sparse, spectral, utils):
        for obj in list(vars(module).values()):
            if isinstance(obj, Dispatcher) and not obj.signatures:
                with contextlib.suppress(Exception):
                    obj.enable_caching()


def warm_up() -> float:
    """Run a tiny UMAP so numba's kernels are compiled (or loaded from cache): seconds taken."""
    start = time.perf_counter()
    rng = np.random.default_rng(0)
    umap_2d(rng.normal(size=(SPECTRAL_MIN_POINTS * 2, 8)).astype(np.float32), seed=0)
    return time.perf_counter() - start


# -- projections stored with a run -----------------------------------------------------------------
def run_projection(
    run: Run, kind: Kind = "items", method: Method = "umap", recompute: bool = False
) -> np.ndarray:
    """2-D coordinates float32 [n, 2] of a run's ``kind`` vectors, stored with the run.

    Rows follow the saved embeddings' ``index`` column. Reuses the stored projection
    (:func:`engine.runs.projection_files`) when its description says it was made by ``method``
    with the run's seed from the current embeddings file; ``recompute`` forces a new one. A new
    projection is stored through :func:`engine.runs.write_derived` (a read-only run folder is
    left as it is).
    """
    if kind not in KINDS:
        raise ReclensError(f"unknown projection kind {kind!r}: use items or users")
    if method not in METHODS:
        raise ReclensError(f"unknown projection method {method!r}: use {' or '.join(METHODS)}")
    source = ITEM_EMBEDDINGS if kind == "items" else USER_EMBEDDINGS
    wanted = {
        "kind": kind,
        "method": method,
        "seed": run.seed if method == "umap" else None,
        "n_neighbors": N_NEIGHBORS if method == "umap" else None,
        "metric": METRIC,
        "source": source,
        "source_sha256": (run.manifest.get(source) or {}).get("sha256"),
    }
    with _lock_for(run.path):
        if not recompute:
            stored = _read_stored(run, kind, method, wanted)
            if stored is not None:
                return stored
        embeddings = run.item_embeddings() if kind == "items" else run.user_embeddings()
        start = time.perf_counter()
        coords = project(embeddings.vectors, method, seed=run.seed)
        seconds = time.perf_counter() - start
        _store(run, kind, method, embeddings.index, coords, {**wanted, "seconds": seconds})
    return coords


def _lock_for(folder: Path) -> threading.Lock:
    key = str(folder.resolve())
    with _PATHS_LOCK:
        return _PATH_LOCKS.setdefault(key, threading.Lock())


def _read_stored(run: Run, kind: str, method: str, wanted: dict[str, Any]) -> np.ndarray | None:
    """The stored coordinates when listed in the manifest and made as ``wanted``; else None.

    A stored file changed after it was written raises :class:`~engine.runs.RunError`.
    """
    table_name, meta_name = projection_files(kind, method)
    meta = read_derived_json(run.path, meta_name, run.manifest)
    if meta is None or any(meta.get(k) != v for k, v in wanted.items()):
        return None
    frame = read_derived_table(run.path, table_name, run.manifest)
    if frame is None or frame.height != meta.get("n") or not {"x", "y"} <= set(frame.columns):
        return None
    return np.stack([frame["x"].to_numpy(), frame["y"].to_numpy()], axis=1).astype(np.float32)


def _store(
    run: Run,
    kind: str,
    method: str,
    index: np.ndarray,
    coords: np.ndarray,
    meta: dict[str, Any],
) -> None:
    """Store the table and its description with the run (a read-only run is left alone)."""
    table_name, meta_name = projection_files(kind, method)
    frame = pl.DataFrame(
        {
            "index": pl.Series(index.astype(np.int64)),
            "x": pl.Series(coords[:, 0], dtype=pl.Float32),
            "y": pl.Series(coords[:, 1], dtype=pl.Float32),
        }
    )
    description = json.dumps({**meta, "n": frame.height}, indent=2) + "\n"
    try:
        write_derived(
            run.path,
            {table_name: frame.write_parquet, meta_name: lambda path: path.write_text(description)},
        )
    except RunError:
        return
    run.refresh_manifest()
