"""2-D projections: UMAP/PCA on arrays, stored with a run and reused, one UMAP at a time."""

from __future__ import annotations

import json
import threading
import time
import warnings
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import polars as pl
import pytest

from data.dataset import Dataset
from data.errors import ReclensError
from engine import projection
from engine.pipeline import train_run
from engine.projection import pca_2d, project, run_projection, umap_2d
from engine.runs import RunError, load_run, projection_files, write_derived_json


def clusters(n_per: int = 40, dims: int = 16, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Three well separated directions with small noise: vectors [3 n_per, dims], labels."""
    rng = np.random.default_rng(seed)
    centres = np.eye(dims)[:3] * 5.0
    labels = np.repeat(np.arange(3), n_per)
    vectors = centres[labels] + rng.normal(scale=0.3, size=(len(labels), dims))
    return vectors.astype(np.float32), labels


def neighbour_agreement(coords: np.ndarray, labels: np.ndarray, k: int = 5) -> float:
    """Share of each point's k nearest 2-D neighbours that carry its label."""
    d = ((coords[:, None, :] - coords[None, :, :]) ** 2).sum(-1)
    np.fill_diagonal(d, np.inf)
    nearest = np.argsort(d, axis=1)[:, :k]
    return float((labels[nearest] == labels[:, None]).mean())


def test_pca_is_deterministic_cosine_and_separates_clusters() -> None:
    vectors, labels = clusters()
    coords = pca_2d(vectors)
    assert coords.shape == (120, 2) and coords.dtype == np.float32
    np.testing.assert_array_equal(coords, pca_2d(vectors))
    scaled = vectors * np.linspace(0.5, 3.0, len(vectors))[:, None]  # cosine ignores length
    np.testing.assert_allclose(pca_2d(scaled), coords, atol=1e-4)
    assert neighbour_agreement(coords, labels) > 0.95
    # More dimensions than points takes the other branch and gives the same map.
    wide = np.concatenate([vectors, np.zeros((120, 200), np.float32)], axis=1)
    np.testing.assert_allclose(np.abs(pca_2d(wide)), np.abs(coords), atol=1e-4)
    assert pca_2d(vectors[:1]).tolist() == [[0.0, 0.0]]


def test_umap_is_seeded_warning_free_and_keeps_neighbourhoods() -> None:
    vectors, labels = clusters()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        first = umap_2d(vectors, seed=1)
        again = umap_2d(vectors, seed=1)
    assert [str(w.message) for w in caught] == []
    assert first.shape == (120, 2) and first.dtype == np.float32
    np.testing.assert_array_equal(first, again)
    assert neighbour_agreement(first, labels) > 0.95
    assert umap_2d(vectors[:3]).shape == (3, 2)  # too few points: PCA


def test_unknown_method_or_kind() -> None:
    with pytest.raises(ReclensError, match="projection method"):
        project(np.zeros((5, 2)), "tsne")
    with pytest.raises(ReclensError, match="projection kind"):
        run_projection("anywhere", "movies")  # type: ignore[arg-type]


def test_umap_never_runs_in_two_threads_at_once(monkeypatch: pytest.MonkeyPatch) -> None:
    active, peak = [0], [0]
    guard = threading.Lock()

    class FakeUMAP:
        def __init__(self, **kwargs: object) -> None:
            assert kwargs["metric"] == "cosine" and kwargs["n_jobs"] == 1
            assert kwargs["random_state"] == 7 and kwargs["n_neighbors"] == 15

        def fit_transform(self, x: np.ndarray) -> np.ndarray:
            with guard:
                active[0] += 1
                peak[0] = max(peak[0], active[0])
            time.sleep(0.05)
            with guard:
                active[0] -= 1
            return x[:, :2]

    monkeypatch.setattr(projection, "_import_umap", lambda: SimpleNamespace(UMAP=FakeUMAP))
    vectors = np.random.default_rng(0).normal(size=(100, 4)).astype(np.float32)
    threads = [threading.Thread(target=umap_2d, args=(vectors, 7)) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert peak[0] == 1


def small_dataset() -> Dataset:
    rng = np.random.default_rng(0)
    n_users, n_items = 80, 40
    users, items = [], []
    for u in range(n_users):
        pool = np.arange(20) + (u % 2) * 20
        chosen = rng.choice(pool, size=8, replace=False)
        users += [u] * 8
        items += chosen.tolist()
    return Dataset.build(
        "proj",
        pl.DataFrame({"user": users, "item": items}),
        pl.DataFrame({"item": np.arange(n_items), "raw_id": [str(i) for i in range(n_items)]}),
        pl.DataFrame({"user": np.arange(n_users), "raw_id": [str(u) for u in range(n_users)]}),
    )


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("runs")
    result = train_run(small_dataset(), "ease", seed=2, out=root, device="cpu")
    assert result.run_dir is not None
    return result.run_dir


@pytest.mark.parametrize("method", ["pca", "umap"])
@pytest.mark.parametrize("kind", ["items", "users"])
def test_run_projection_is_stored_and_reused(
    run_dir: Path, kind: str, method: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    run = load_run(run_dir)
    coords = run_projection(run, kind, method)  # type: ignore[arg-type]
    assert set(projection_files(kind, method)) <= set(load_run(run_dir).manifest)
    embeddings = run.item_embeddings() if kind == "items" else run.user_embeddings()
    assert coords.shape == (len(embeddings.index), 2)
    stem = f"{kind}_2d" if method == "umap" else f"{kind}_2d_pca"
    table = pl.read_parquet(run_dir / f"{stem}.parquet")
    assert table.columns == ["index", "x", "y"]
    assert table["index"].to_list() == embeddings.index.tolist()
    meta = json.loads((run_dir / f"{stem}.json").read_text())
    assert meta["method"] == method and meta["kind"] == kind
    assert meta["seed"] == (2 if method == "umap" else None)

    def must_not_run(*args: object, **kwargs: object) -> np.ndarray:
        raise AssertionError("the stored projection should have been reused")

    monkeypatch.setattr(projection, "project", must_not_run)
    again = load_run(run_dir)
    np.testing.assert_array_equal(run_projection(again, kind, method), coords)  # type: ignore[arg-type]


def test_stale_projection_is_recomputed(run_dir: Path) -> None:
    run = load_run(run_dir)
    first = run_projection(run, "items", "pca")
    _, meta_name = projection_files("items", "pca")
    stale = json.loads((run_dir / meta_name).read_text())
    stale["source_sha256"] = "0" * 64
    write_derived_json(run_dir, meta_name, stale)
    run = load_run(run_dir)
    np.testing.assert_array_equal(run_projection(run, "items", "pca"), first)
    assert json.loads((run_dir / meta_name).read_text())["source_sha256"] != "0" * 64


def test_damaged_projection_is_detected(tmp_path: Path) -> None:
    result = train_run(small_dataset(), "pop", seed=2, out=tmp_path, device="cpu")
    assert result.run_dir is not None
    run = load_run(result.run_dir)
    run_projection(run, "items", "pca")
    table_name, _ = projection_files("items", "pca")
    (result.run_dir / table_name).write_bytes(b"not parquet")
    with pytest.raises(RunError, match="bytes, expected|checksum mismatch"):
        load_run(result.run_dir)
    with pytest.raises(RunError, match="bytes, expected|checksum mismatch"):
        run_projection(run, "items", "pca")
