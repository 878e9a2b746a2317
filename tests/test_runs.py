"""The pipeline and run artifacts: save, reload identically, refuse damaged files, list runs."""

from __future__ import annotations

import json
import shutil
import struct
from pathlib import Path

import numpy as np
import polars as pl
import pytest
import torch

from data.dataset import Dataset
from data.errors import ReclensError
from engine import pipeline, registry, runs
from engine.evaluate import dense_rows, top_k
from engine.pipeline import RunResult, load_context, train_run
from engine.runs import RunError, list_runs, load_run


def make_dataset(n_users: int = 60, n_items: int = 40, seed: int = 0) -> Dataset:
    """A small random dataset with two taste groups (so models have something to learn)."""
    rng = np.random.default_rng(seed)
    users, items = [], []
    for u in range(n_users):
        group = u % 2
        pool = np.arange(n_items // 2) + group * (n_items // 2)
        picks = rng.choice(pool, size=int(rng.integers(6, 14)), replace=False)
        extra = rng.choice(n_items, size=2, replace=False)
        chosen = np.unique(np.concatenate([picks, extra]))
        users += [u] * len(chosen)
        items += chosen.tolist()
    inter = pl.DataFrame({"user": users, "item": items, "timestamp": np.arange(len(users))})
    return Dataset.build(
        "tiny",
        inter,
        pl.DataFrame({"item": np.arange(n_items), "raw_id": [f"i{i}" for i in range(n_items)]}),
        pl.DataFrame({"user": np.arange(n_users), "raw_id": [f"u{u}" for u in range(n_users)]}),
    )


@pytest.fixture(scope="module")
def tiny() -> Dataset:
    return make_dataset()


@pytest.fixture(scope="module")
def saved(tiny: Dataset, tmp_path_factory: pytest.TempPathFactory) -> dict[str, RunResult]:
    """ease and fism trained once and saved (module scope: training is the slow part)."""
    root = tmp_path_factory.mktemp("runs")
    return {
        name: train_run(tiny, name, epochs=2, device="cpu", out=root, seed=0)
        for name in ("ease", "fism")
    }


def all_scores(model: torch.nn.Module, matrix) -> torch.Tensor:
    with torch.no_grad():
        return model(dense_rows(matrix, np.arange(matrix.shape[0]), torch.device("cpu")))


# -- the pipeline ---------------------------------------------------------------------------------
def test_run_result_and_folder_layout(saved: dict[str, RunResult], tiny: Dataset) -> None:
    result = saved["ease"]
    assert result.model == "ease" and result.dataset == "tiny" and result.seed == 0
    for key in ("recall@10", "ndcg@10", "mrr@10", "hit@10", "precision@10", "map@10", "ndcg@20"):
        assert 0.0 <= result.metrics[key] <= 1.0
    assert result.metrics["ndcg@10"] > 0.0
    assert set(result.valid) == set(result.metrics)
    assert result.seconds["total"] >= result.seconds["fit"] > 0.0
    assert result.per_user.height > 0 and "ndcg@10" in result.per_user.columns
    folder = result.run_dir
    assert folder is not None and folder.parent.name == "tiny"
    assert folder.name.startswith("ease-") and folder.name.endswith("Z")
    for name in runs.ARTIFACTS + (runs.COMPLETE,):
        assert (folder / name).is_file(), name
    manifest = runs.read_manifest(folder)
    assert set(manifest) == {*runs.ARTIFACTS, runs.BEYOND_METRICS, runs.BEYOND_PER_USER}
    config = json.loads((folder / runs.CONFIG).read_text())
    assert config["model"] == "ease" and config["hparams"] == {"lam": 250.0}
    assert config["split"] == {"protocol": "random", "ratios": [0.8, 0.1, 0.1], "fold_in": 0.8,
                               "seed": 0}  # fmt: skip
    assert config["fingerprint"]["n_items"] == tiny.n_items
    assert set(config["versions"]) == {"torch", "numpy", "polars", "reclens"}
    metrics = json.loads((folder / runs.METRICS).read_text())
    assert metrics["test"] == pytest.approx(result.metrics)
    # safetensors: an 8-byte little-endian header length, then a JSON header (no pickle).
    raw = (folder / runs.MODEL).read_bytes()
    (length,) = struct.unpack("<Q", raw[:8])
    assert json.loads(raw[8 : 8 + length])["weights"]["shape"] == [tiny.n_items, tiny.n_items]


def test_same_seed_same_metrics_and_different_seed_differs(tiny: Dataset) -> None:
    first = train_run(tiny, "fism", epochs=2, seed=3, device="cpu", save=False)
    again = train_run(tiny, "fism", epochs=2, seed=3, device="cpu", save=False)
    other = train_run(tiny, "fism", epochs=2, seed=4, device="cpu", save=False)
    assert first.metrics == again.metrics
    assert first.per_user.equals(again.per_user)
    assert first.metrics != other.metrics


def test_named_source_is_loaded_once_and_its_time_counted_for_every_model(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    pipeline.clear_cache()
    calls = []
    real = pipeline.load_source

    def counting(source, **options):
        calls.append(source)
        return real(source, **options)

    monkeypatch.setattr(pipeline, "load_source", counting)
    options = {"n_users": 80, "n_items": 50, "n_interactions": 1200}
    a = train_run("synthetic", "pop", load_options=options, save=False, device="cpu")
    b = train_run("synthetic", "ease", load_options=options, save=False, device="cpu")
    assert calls == ["synthetic"]
    assert a.seconds["load"] == b.seconds["load"] > 0.0
    for r in (a, b):
        parts = r.seconds["load"] + r.seconds["prepare"] + r.seconds["split"] + r.seconds["fit"]
        assert r.seconds["total"] >= parts
    pipeline.clear_cache()


def test_unknown_model_and_bad_options_are_reclens_errors(tiny: Dataset) -> None:
    with pytest.raises(ReclensError, match="unknown model"):
        train_run(tiny, "nope", save=False)
    with pytest.raises(ReclensError, match="preparation option"):
        train_run(tiny, "pop", prepare_options={"treshold": 4}, save=False)


def test_cancel_before_training_raises(tiny: Dataset) -> None:
    import threading

    event = threading.Event()
    event.set()
    with pytest.raises(pipeline.TrainingCancelled):
        train_run(tiny, "fism", epochs=2, cancel=event, save=False)


# -- reloading ------------------------------------------------------------------------------------
@pytest.mark.parametrize("name", ["ease", "fism"])
def test_reloaded_run_scores_identically(saved: dict[str, RunResult], name: str) -> None:
    result = saved[name]
    run = load_run(result.run_dir)
    assert run.name == name and run.dataset == "tiny" and run.seed == 0
    dataset, split = load_context(run, dataset=make_dataset())
    before = all_scores(result.recommender, split.train)
    after = all_scores(run.model, split.train)
    assert (before - after).abs().max().item() == 0.0
    users = split.eval_users("test")
    k = min(100, split.n_items)
    items, scores = top_k(run.model, split.train, users, k, split.mask("test"))
    keep = np.isfinite(scores)  # masked slots (-inf) are not stored
    recs = run.recommendations().sort(["user", "rank"])
    assert recs["user"].to_numpy().tolist() == np.repeat(users, k)[keep.ravel()].tolist()
    assert recs["item"].to_numpy().tolist() == items[keep].tolist()
    assert recs["score"].to_numpy().tolist() == scores[keep].tolist()
    assert recs.filter(pl.col("user") == users[0])["rank"].to_list() == list(
        range(1, int(keep[0].sum()) + 1)
    )
    assert recs["item_raw_id"][0] == dataset.item_raw_ids[recs["item"][0]]
    assert run.per_user_metrics().columns[:2] == ["user", "raw_id"]


def test_embeddings_saved_for_learned_and_item_item_models(saved: dict[str, RunResult]) -> None:
    ease = load_run(saved["ease"].run_dir)
    items = ease.item_embeddings()
    assert items.kind == "item-item" and items.vectors.shape == (40, 40)
    weights = ease.model.weights.numpy()
    np.testing.assert_array_equal(items.vectors, weights.T)  # item j = column j of W
    users = ease.user_embeddings()
    assert users.vectors.shape[1] == 40 and users.raw_id[0] == f"u{users.index[0]}"
    fism = load_run(saved["fism"].run_dir)
    learned = fism.item_embeddings()
    assert learned.kind == "learned"
    np.testing.assert_array_equal(learned.vectors, fism.model.item_embeddings().detach().numpy())


def test_pop_is_represented_by_training_matrix_columns(tiny: Dataset, tmp_path: Path) -> None:
    result = train_run(tiny, "pop", out=tmp_path, device="cpu")
    run = load_run(result.run_dir)
    _, split = load_context(run, dataset=tiny)
    items = run.item_embeddings()
    assert items.kind == "interactions"
    np.testing.assert_array_equal(items.vectors, split.fit_matrix().T.toarray())


def test_list_runs_reads_the_saved_runs(saved: dict[str, RunResult]) -> None:
    root = saved["ease"].run_dir.parent.parent
    found = {s.model: s for s in list_runs(root)}
    assert set(found) == {"ease", "fism"}
    assert found["fism"].metrics["ndcg@10"] == pytest.approx(saved["fism"].metrics["ndcg@10"])
    assert found["ease"].dataset == "tiny" and found["ease"].seconds["total"] > 0
    assert list_runs(root / "nowhere") == []


def test_load_context_notices_changed_data(saved: dict[str, RunResult]) -> None:
    run = load_run(saved["ease"].run_dir)
    with pytest.raises(ReclensError, match="changed"):
        load_context(run, dataset=make_dataset(seed=1))
    with pytest.raises(ReclensError, match="in-memory"):
        load_context(run)


# -- damaged runs ---------------------------------------------------------------------------------
def copy_run(result: RunResult, tmp_path: Path) -> Path:
    import shutil

    target = tmp_path / "copy"
    shutil.copytree(result.run_dir, target)
    return target


def refresh_manifest(folder: Path) -> None:
    """Recompute the manifest, as someone who edits files on purpose would."""
    files = {name: runs._file_entry(folder / name) for name in runs.ARTIFACTS}
    (folder / runs.COMPLETE).write_text(json.dumps({"format": 1, "files": files}))


def test_a_run_saved_under_a_retired_name_loads_as_the_renamed_model(
    tmp_path: Path, saved: dict[str, RunResult], tiny: Dataset
) -> None:
    folder = copy_run(saved["fism"], tmp_path)
    config = json.loads((folder / runs.CONFIG).read_text())
    (folder / runs.CONFIG).write_text(json.dumps({**config, "model": "mf"}))  # as saved before
    refresh_manifest(folder)
    old = load_run(folder)
    assert old.name == "fism" and old.model.name == "fism"
    assert [s.model for s in list_runs(folder)] == ["fism"]
    original = load_run(saved["fism"].run_dir)
    matrix = tiny.matrix()
    torch.testing.assert_close(all_scores(old.model, matrix), all_scores(original.model, matrix))


def test_missing_or_incomplete_folder(tmp_path: Path, saved: dict[str, RunResult]) -> None:
    with pytest.raises(RunError, match="no such run folder"):
        load_run(tmp_path / "absent")
    folder = copy_run(saved["ease"], tmp_path)
    (folder / runs.COMPLETE).unlink()
    with pytest.raises(RunError, match="not a complete run"):
        load_run(folder)


@pytest.mark.parametrize(
    ("damage", "message"),
    [
        ("truncate-model", "truncated"),
        ("flip-model-byte", "checksum"),
        ("bad-json", "truncated"),
        ("delete-config", "missing"),
        ("bad-json-refreshed", "invalid JSON"),
        ("bad-header-refreshed", "safetensors"),
        ("truncated-model-refreshed", "safetensors"),
        ("wrong-shape-refreshed", "shape"),
        ("unknown-hparam-refreshed", "hyper-parameter"),
        ("bad-manifest", "invalid JSON"),
    ],
)
def test_damaged_files_give_reclens_errors(
    tmp_path: Path, saved: dict[str, RunResult], damage: str, message: str
) -> None:
    folder = copy_run(saved["ease"], tmp_path)
    model, config = folder / runs.MODEL, folder / runs.CONFIG
    if damage.startswith("truncate"):
        model.write_bytes(model.read_bytes()[:-100])
    elif damage == "flip-model-byte":
        raw = bytearray(model.read_bytes())
        raw[-1] ^= 0xFF
        model.write_bytes(bytes(raw))
    elif damage.startswith("bad-json"):
        config.write_text(config.read_text()[:-20])
    elif damage == "delete-config":
        config.unlink()
    elif damage == "bad-header-refreshed":
        model.write_bytes(struct.pack("<Q", 10**9) + b"{" + model.read_bytes()[9:])
    elif damage == "truncated-model-refreshed":
        model.write_bytes(model.read_bytes()[:-100])
    elif damage == "wrong-shape-refreshed":
        value = json.loads(config.read_text())
        value["n_items"] += 1
        config.write_text(json.dumps(value))
    elif damage == "unknown-hparam-refreshed":
        value = json.loads(config.read_text())
        value["hparams"]["__class__"] = "os.system"
        config.write_text(json.dumps(value))
    elif damage == "bad-manifest":
        (folder / runs.COMPLETE).write_text("{not json")
    if damage.endswith("refreshed"):
        refresh_manifest(folder)
    with pytest.raises(RunError, match=message) as info:
        load_run(folder)
    assert "\n" not in str(info.value)


def test_tampering_with_any_listed_file_is_detected(
    tmp_path: Path, saved: dict[str, RunResult]
) -> None:
    source = saved["ease"].run_dir
    assert source is not None
    names = sorted(runs.read_manifest(source))
    assert runs.BEYOND_METRICS in names  # derived files are listed too
    for name in names:
        folder = tmp_path / name.replace("/", "_")
        shutil.copytree(source, folder)
        raw = bytearray((folder / name).read_bytes())
        raw[len(raw) // 2] ^= 0x01
        (folder / name).write_bytes(bytes(raw))
        with pytest.raises(RunError, match="checksum mismatch") as info:
            load_run(folder)
        assert name in str(info.value)


def test_a_listed_file_replaced_by_a_link_is_refused(
    tmp_path: Path, saved: dict[str, RunResult]
) -> None:
    folder = copy_run(saved["ease"], tmp_path)
    target = folder / runs.BEYOND_METRICS
    outside = tmp_path / "outside.json"
    outside.write_bytes(target.read_bytes())
    target.unlink()
    target.symlink_to(outside)
    with pytest.raises(RunError, match="symbolic link"):
        load_run(folder)


def test_derived_files_are_written_atomically_into_the_manifest(
    tmp_path: Path, saved: dict[str, RunResult]
) -> None:
    folder = copy_run(saved["ease"], tmp_path)
    runs.write_derived_json(folder, "notes.json", {"a": 1})
    assert runs.read_derived_json(folder, "notes.json") == {"a": 1}
    load_run(folder)  # the new file is verified with the rest
    assert not [p for p in folder.iterdir() if ".partial-" in p.name]
    with pytest.raises(RunError, match="written only when the run is saved"):
        runs.write_derived_json(folder, runs.CONFIG, {})
    assert runs.read_derived_json(folder, "absent.json") is None


def test_damaged_parquet_gives_reclens_error(tmp_path: Path, saved: dict[str, RunResult]) -> None:
    folder = copy_run(saved["fism"], tmp_path)
    run = load_run(folder)
    path = folder / runs.RECOMMENDATIONS
    path.write_bytes(path.read_bytes()[:50])
    with pytest.raises(RunError, match="recommendations.parquet"):
        run.recommendations()
    refresh_manifest(folder)
    with pytest.raises(RunError, match="unreadable parquet"):
        load_run(folder).recommendations()


def test_interrupted_save_leaves_nothing_that_looks_finished(
    tiny: Dataset, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(runs, "recommendations", broken)
    with pytest.raises(KeyboardInterrupt):
        train_run(tiny, "pop", out=tmp_path, device="cpu")
    leftovers = [p for p in tmp_path.rglob("*") if p.is_file()]
    assert leftovers == []
    assert list_runs(tmp_path) == []


def test_two_runs_in_the_same_second_get_two_folders(tiny: Dataset, tmp_path: Path) -> None:
    first = train_run(tiny, "pop", out=tmp_path, device="cpu")
    second = train_run(tiny, "pop", out=tmp_path, device="cpu")
    assert first.run_dir != second.run_dir
    assert "raw_id" not in first.per_user.columns  # saving does not change the result
    assert len(list_runs(tmp_path)) == 2


@pytest.mark.parametrize("name", registry.available_models())
def test_every_registered_model_round_trips(name: str, tiny: Dataset, tmp_path: Path) -> None:
    result = train_run(tiny, name, epochs=1, out=tmp_path, device="cpu")
    run = load_run(result.run_dir)
    _, split = load_context(run, dataset=tiny)
    before = all_scores(result.recommender, split.train)
    after = all_scores(run.model, split.train)
    assert (before - after).abs().max().item() == 0.0
    assert run.item_embeddings().vectors.shape[0] == tiny.n_items
