"""Bad input gives one-line DataError/DownloadError messages naming the file (and line/column),
and nothing half-written is left in the cache; every CLI failure a user can cause is one line
on stderr and exit status 2 (the table at the end)."""

from __future__ import annotations

import errno
import hashlib
import io
import json
import os
import shutil
import signal
import subprocess
import sys
import time
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import polars as pl
import pytest

from data import download, load
from data.errors import DataError, DownloadError


def _message(excinfo: pytest.ExceptionInfo[BaseException]) -> str:
    message = str(excinfo.value)
    assert "\n" not in message, message
    return message


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(DataError) as err:
        load(tmp_path / "nope.csv")
    assert "nope.csv" in _message(err) and "no such file" in _message(err)


def test_unknown_name_suggests_close_names() -> None:
    with pytest.raises(DataError) as err:
        load("ml-100")
    message = _message(err)
    assert "ml-100: unknown dataset name" in message and "did you mean ml-100k" in message


def test_unknown_name_for_fetch() -> None:
    with pytest.raises(DataError) as err:
        download.fetch("ml-10m0")
    assert "did you mean" in _message(err)


def test_named_column_that_does_not_exist(tmp_path: Path) -> None:
    path = tmp_path / "log.csv"
    path.write_text("user,item\n1,2\n")
    with pytest.raises(DataError) as err:
        load(path, user_col="uid")
    message = _message(err)
    assert str(path) in message and "no column 'uid'" in message and "user, item" in message


def test_missing_item_column(tmp_path: Path) -> None:
    path = tmp_path / "log.csv"
    path.write_text("user,product\n1,2\n")
    with pytest.raises(DataError) as err:
        load(path)
    message = _message(err)
    assert str(path) in message and "no item id column" in message and "--item-col" in message


def test_non_numeric_rating_names_line_and_column(tmp_path: Path) -> None:
    path = tmp_path / "log.csv"
    rows = "".join(f"{k},{k % 7},{k % 5 + 1}\n" for k in range(20_000))  # past type inference
    path.write_text("user,item,rating\n" + rows + "5,6,great\n")
    with pytest.raises(DataError) as err:
        load(path)
    assert _message(err) == f"{path}: line 20002, column 'rating': 'great' is not a number"


def test_missing_user_id_names_line(tmp_path: Path) -> None:
    path = tmp_path / "log.csv"
    path.write_text("user,item\n1,2\n,3\n")
    with pytest.raises(DataError) as err:
        load(path)
    assert _message(err) == f"{path}: line 3, column 'user': missing user id"


def test_bad_timestamp(tmp_path: Path) -> None:
    path = tmp_path / "log.tsv"
    path.write_text("user\titem\ttimestamp\n1\t2\t881250949\n1\t3\tlast tuesday\n")
    with pytest.raises(DataError) as err:
        load(path)
    assert f"{path}: line 3, column 'timestamp'" in _message(err)


def test_empty_file_and_header_only(tmp_path: Path) -> None:
    empty = tmp_path / "empty.csv"
    empty.write_text("")
    with pytest.raises(DataError) as err:
        load(empty)
    assert _message(err) == f"{empty}: the file is empty"
    header = tmp_path / "header.csv"
    header.write_text("user,item,rating\n")
    with pytest.raises(DataError) as err:
        load(header)
    assert str(header) in _message(err) and "no interactions" in _message(err)


def test_bad_rating_inside_movielens_zip(tiny_movielens, zip_dataset, tmp_path: Path) -> None:
    folder = tiny_movielens("ml-100k")
    data = folder / "u.data"
    data.write_text(data.read_text() + "3\t1\tfive\t881250960\n")
    archive = zip_dataset(folder, tmp_path / "ml-100k.zip")
    with pytest.raises(DataError) as err:
        load(archive)
    assert (
        _message(err)
        == f"{archive}:ml-100k/u.data: line 7, column 'rating': 'five' is not a number"
    )


def test_truncated_zip(tiny_movielens, zip_dataset, tmp_path: Path) -> None:
    archive = zip_dataset(tiny_movielens("ml-1m"), tmp_path / "ml-1m.zip")
    archive.write_bytes(archive.read_bytes()[: archive.stat().st_size // 2])
    with pytest.raises(DataError) as err:
        load(archive)
    message = _message(err)
    assert str(archive) in message and "truncated or corrupt" in message


def test_zip_that_is_not_movielens(tmp_path: Path) -> None:
    import zipfile

    archive = tmp_path / "other.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        zf.writestr("readme.txt", "hello")
    with pytest.raises(DataError) as err:
        load(archive)
    assert str(archive) in _message(err) and "not a MovieLens dataset" in _message(err)


def test_ngcf_ids_must_be_integers(tmp_path: Path) -> None:
    (tmp_path / "train.txt").write_text("0 1 2\n1 2 x3\n")
    (tmp_path / "test.txt").write_text("0 3\n")
    with pytest.raises(DataError) as err:
        load(tmp_path)
    train = tmp_path / "train.txt"
    assert _message(err) == f"{train}: line 2, field 3: item id 'x3' is not an integer"


def test_recbole_header_without_types(tmp_path: Path) -> None:
    inter = tmp_path / "toy.inter"
    inter.write_text("user_id:token\titem_id\n1\t2\n")
    with pytest.raises(DataError) as err:
        load(tmp_path)
    message = _message(err)
    assert message.startswith(f"{inter}: line 1, column 2") and "no type" in message


def test_recbole_non_numeric_rating(tmp_path: Path) -> None:
    inter = tmp_path / "toy.inter"
    inter.write_text("user_id:token\titem_id:token\trating:float\n1\t2\t4\n1\t3\tN/A\n")
    with pytest.raises(DataError) as err:
        load(inter)
    assert _message(err) == f"{inter}: line 3, column 'rating': 'N/A' is not a number"


def test_unsupported_extension_and_unknown_folder(tmp_path: Path) -> None:
    odd = tmp_path / "log.xlsx"
    odd.write_bytes(b"PK")
    with pytest.raises(DataError) as err:
        load(odd)
    assert str(odd) in _message(err) and "unsupported file type .xlsx" in _message(err)
    with pytest.raises(DataError) as err:
        load(tmp_path)
    assert str(tmp_path) in _message(err) and "not a dataset folder" in _message(err)


def test_option_the_source_does_not_take(tiny_movielens) -> None:
    folder = tiny_movielens("ml-100k")
    with pytest.raises(DataError) as err:
        load(folder, rating_col="stars")
    assert str(folder) in _message(err) and "rating_col" in _message(err)


def test_not_parquet(tmp_path: Path) -> None:
    path = tmp_path / "log.parquet"
    path.write_text("user,item\n1,2\n")
    with pytest.raises(DataError) as err:
        load(path)
    assert str(path) in _message(err) and "Parquet" in _message(err)


# -- downloads: checksum mismatch and truncation leave nothing behind ---------------------------


def _serve(tiny_movielens, zip_dataset, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> bytes:
    served = tmp_path / "served"
    served.mkdir()
    archive = zip_dataset(tiny_movielens("ml-100k"), served / "ml-100k.zip")
    monkeypatch.delenv("RECLENS_DATA", raising=False)
    monkeypatch.setattr(download, "BASE_URL", served.as_uri() + "/")
    return archive.read_bytes()


def test_checksum_mismatch_leaves_nothing(
    tiny_movielens, zip_dataset, tmp_path: Path, tmp_home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _serve(tiny_movielens, zip_dataset, tmp_path, monkeypatch)
    monkeypatch.setitem(download.KNOWN_MD5, "ml-100k", "0" * 32)
    with pytest.raises(DownloadError) as err:
        load("ml-100k")
    message = _message(err)
    assert "ml-100k.zip: checksum mismatch" in message and "expected " + "0" * 32 in message
    assert str(tmp_home / "datasets") in message  # where to place it instead
    assert list((tmp_home / "datasets").iterdir()) == []


def test_truncated_download_leaves_nothing(
    tiny_movielens, zip_dataset, tmp_path: Path, tmp_home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    payload = _serve(tiny_movielens, zip_dataset, tmp_path, monkeypatch)
    monkeypatch.setitem(download.KNOWN_MD5, "ml-100k", hashlib.md5(payload).hexdigest())

    class Cut(io.BytesIO):
        headers = {"Content-Length": str(len(payload))}

    monkeypatch.setattr(download, "urlopen", lambda url: Cut(payload[: len(payload) // 3]))
    with pytest.raises(DownloadError) as err:
        download.fetch("ml-100k", progress=False)
    message = _message(err)
    assert "ml-100k.zip" in message and "truncated" in message
    assert f"({len(payload) // 3} of {len(payload)} bytes received)" in message
    assert list((tmp_home / "datasets").iterdir()) == []


def test_truncated_download_without_length_fails_checks(
    tiny_movielens, zip_dataset, tmp_path: Path, tmp_home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    payload = _serve(tiny_movielens, zip_dataset, tmp_path, monkeypatch)
    monkeypatch.setitem(download.KNOWN_MD5, "ml-100k", hashlib.md5(payload).hexdigest())
    monkeypatch.setattr(download, "urlopen", lambda url: io.BytesIO(payload[:-10]))
    with pytest.raises(DownloadError) as err:
        download.fetch("ml-100k", progress=False)
    assert "checksum mismatch" in _message(err)
    assert list((tmp_home / "datasets").iterdir()) == []


def test_interrupted_download_leaves_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    class Interrupted(io.BytesIO):
        headers = {"Content-Length": "100"}

        def read(self, size: int | None = -1) -> bytes:
            raise KeyboardInterrupt

    monkeypatch.setattr(download, "urlopen", lambda url: Interrupted(b""))
    with pytest.raises(KeyboardInterrupt):
        download.download("file:///x.zip", tmp_path / "x.zip", md5=None, progress=False)
    assert list(tmp_path.iterdir()) == []


# -- the CLI: every failure a user can cause is one line on stderr, exit status 2 ----------------
#
# Each case builds its argv (and any files) in a fresh folder; the tiny trained run shared by the
# metrics, fidelity, trajectory, compare and tampered-run cases is trained once per module.

TINY = ["--data-option", "n_users=60", "--data-option", "n_items=50"]
TINY += ["--data-option", "n_interactions=600"]
TRAIN = ["train", "--dataset", "synthetic", *TINY, "--model", "pop", "--quiet"]
TINY_OPTIONS = {"n_users": 60, "n_items": 50, "n_interactions": 600}
BIG = "1999999999999999999999999999999"  # past int64


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One saved EASE run on tiny synthetic data (never modified: cases copy it)."""
    from engine.pipeline import train_run

    root = tmp_path_factory.mktemp("runs")
    result = train_run("synthetic", "ease", out=root, load_options=TINY_OPTIONS, device="cpu")
    assert result.run_dir is not None
    return result.run_dir


@dataclass(frozen=True)
class Case:
    """A bad input: ``argv(folder, run, monkeypatch)`` builds the command line; the command
    must exit with ``code`` and print exactly one line on stderr holding ``expect``."""

    name: str
    argv: Callable[[Path, Path, pytest.MonkeyPatch], list[str]]
    expect: str
    code: int = 2


def _file(
    name: str, text: str, *extra: str
) -> Callable[[Path, Path, pytest.MonkeyPatch], list[str]]:
    """``reclens data info`` of a file ``name`` holding ``text`` (``extra`` options after)."""

    def argv(folder: Path, run: Path, mp: pytest.MonkeyPatch) -> list[str]:
        (folder / name).write_text(text)
        return ["data", "info", str(folder / name), *extra]

    return argv


def _train_on(name: str, text: str) -> Callable[[Path, Path, pytest.MonkeyPatch], list[str]]:
    """``reclens train`` on a file ``name`` holding ``text``."""

    def argv(folder: Path, run: Path, mp: pytest.MonkeyPatch) -> list[str]:
        (folder / name).write_text(text)
        return ["train", "--dataset", str(folder / name), "--model", "pop", "--quiet", "--no-save"]

    return argv


def _write(folder: Path, files: dict[str, str]) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for name, text in files.items():
        (folder / name).write_text(text)
    return folder


def _copy(run: Path, folder: Path) -> Path:
    copy = folder / run.name
    shutil.copytree(run, copy, symlinks=True)
    return copy


def _tamper(
    name: str,
    content: bytes | Callable[[bytes], bytes],
    *,
    relist: bool = True,
    compare: bool = False,
) -> Callable[[Path, Path, pytest.MonkeyPatch], list[str]]:
    """``reclens metrics --no-save`` (``compare``: ``reclens compare`` with the intact run) on a
    copy of the run whose file ``name`` is replaced; with ``relist`` the manifest is updated to
    match (as a careful tamperer would)."""

    def argv(folder: Path, run: Path, mp: pytest.MonkeyPatch) -> list[str]:
        copy = _copy(run, folder)
        path = copy / name
        path.write_bytes(content(path.read_bytes()) if callable(content) else content)
        if relist:
            marker = json.loads((copy / ".complete").read_text())
            marker["files"][name] = {
                "bytes": path.stat().st_size,
                "sha256": hashlib.sha256(path.read_bytes()).hexdigest(),
            }
            (copy / ".complete").write_text(json.dumps(marker))
        if compare:
            return ["compare", "--runs", f"{run},{copy}"]
        return ["metrics", "--run", str(copy), "--no-save"]

    return argv


def _config_edit(edit: Callable[[dict], None]) -> Callable[[bytes], bytes]:
    def change(raw: bytes) -> bytes:
        config = json.loads(raw)
        edit(config)
        return json.dumps(config).encode()

    return change


def _parquet_edit(edit: Callable[[pl.DataFrame], pl.DataFrame]) -> Callable[[bytes], bytes]:
    def change(raw: bytes) -> bytes:
        out = io.BytesIO()
        edit(pl.read_parquet(io.BytesIO(raw))).write_parquet(out)
        return out.getvalue()

    return change


def _raise(mp: pytest.MonkeyPatch, target: str, error: BaseException) -> None:
    def fail(*args: object, **kwargs: object) -> None:
        raise error

    mp.setattr(target, fail)


def _train_then(
    setup: Callable[[Path, pytest.MonkeyPatch], list[str]],
) -> Callable[[Path, Path, pytest.MonkeyPatch], list[str]]:
    return lambda folder, run, mp: [*TRAIN, *setup(folder, mp)]


def _zip_bomb(folder: Path, run: Path, mp: pytest.MonkeyPatch) -> list[str]:
    import data.movielens

    mp.setattr(data.movielens, "MAX_MEMBER_BYTES", 100_000)
    archive = folder / "ml-100k.zip"
    with zipfile.ZipFile(archive, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("ml-100k/u.data", b"1\t1\t5\t881250949\n" * 20_000)  # 360 KB, 1 KB zipped
        zf.writestr("ml-100k/u.item", "1|Toy Story (1995)|01-Jan-1995||http://x/1|" + "0|" * 18)
    return ["data", "info", str(archive)]


def _presplit(folder: Path, run: Path, mp: pytest.MonkeyPatch) -> list[str]:
    split = folder / "split"
    split.mkdir()
    (split / "train.txt").write_text("".join(f"{u} {u % 5} {u % 5 + 1}\n" for u in range(10)))
    (split / "test.txt").write_text("".join(f"{u} {u % 5 + 2}\n" for u in range(10, 20)))
    return ["train", "--dataset", str(split), "--model", "pop", "--quiet", "--no-save"]


def _run_copy(extra: list[str]) -> Callable[[Path, Path, pytest.MonkeyPatch], list[str]]:
    return lambda folder, run, mp: [*extra[:1], "--run", str(_copy(run, folder)), *extra[1:]]


def _unfinished(folder: Path, run: Path, mp: pytest.MonkeyPatch) -> list[str]:
    copy = _copy(run, folder)
    (copy / ".complete").unlink()
    return ["metrics", "--run", str(copy)]


def _symlinked(folder: Path, run: Path, mp: pytest.MonkeyPatch) -> list[str]:
    copy = _copy(run, folder)
    outside = folder / "metrics-elsewhere.json"
    shutil.move(copy / "metrics.json", outside)
    (copy / "metrics.json").symlink_to(outside)
    return ["metrics", "--run", str(copy), "--no-save"]


def _linked_inside(name: str) -> Callable[[Path, Path, pytest.MonkeyPatch], list[str]]:
    """A copy of the run whose ``name`` (a file or a folder) is a link to a copy outside it."""

    def argv(folder: Path, run: Path, mp: pytest.MonkeyPatch) -> list[str]:
        copy = _copy(run, folder)
        outside = folder / f"outside-{name.strip('.')}"
        shutil.move(copy / name, outside)
        (copy / name).symlink_to(outside)
        return ["metrics", "--run", str(copy), "--no-save"]

    return argv


def _derived_folder_linked(folder: Path, run: Path, mp: pytest.MonkeyPatch) -> list[str]:
    """A derived file in a sub-folder that is a link to a folder outside the run."""
    from engine.runs import write_derived_json

    copy = _copy(run, folder)
    write_derived_json(copy, "fidelity/summary.json", {"ok": True})
    shutil.move(copy / "fidelity", folder / "elsewhere")
    (copy / "fidelity").symlink_to(folder / "elsewhere")
    return ["metrics", "--run", str(copy), "--no-save"]


def _read_only(folder: Path, run: Path, mp: pytest.MonkeyPatch) -> list[str]:
    import engine.runs

    copy = _copy(run, folder)
    _raise(mp, "engine.runs._write_json", PermissionError(13, "Permission denied", str(copy)))
    assert engine.runs._write_json is not None
    return ["metrics", "--run", str(copy)]


def _full_disk(folder: Path, mp: pytest.MonkeyPatch) -> list[str]:
    _raise(mp, "engine.runs.save_file", OSError(errno.ENOSPC, "No space left on device"))
    return ["--out", str(folder / "runs")]


def _not_writable(folder: Path, mp: pytest.MonkeyPatch) -> list[str]:
    (folder / "locked").mkdir()
    _raise(mp, "engine.pipeline.tempfile.TemporaryFile", PermissionError(13, "Permission denied"))
    _raise(mp, "engine.pipeline.build_data", AssertionError("trained before checking --out"))
    return ["--out", str(folder / "locked")]


def _out_is_a_file(folder: Path, mp: pytest.MonkeyPatch) -> list[str]:
    _raise(mp, "engine.pipeline.build_data", AssertionError("trained before checking --out"))
    return ["--out", "/etc/passwd"]


def _out_of_memory(folder: Path, mp: pytest.MonkeyPatch) -> list[str]:
    # what numpy raises for n_items=99999999999 (simulated: some machines overcommit memory)
    error = MemoryError("Unable to allocate 745. GiB for an array with shape (99999999999,)")
    _raise(mp, "data.synthetic.generate", error)
    return ["--no-save", "--data-option", "n_items=99999999999"]


def _interrupted(folder: Path, mp: pytest.MonkeyPatch) -> list[str]:
    _raise(mp, "engine.pipeline.fit", KeyboardInterrupt())
    return ["--no-save"]


def _bug(folder: Path, mp: pytest.MonkeyPatch) -> list[str]:
    _raise(mp, "engine.pipeline.fit", ZeroDivisionError("division by zero"))
    return ["--no-save"]


NESTED = b'{"model": ' + b"[" * 100_000 + b"]" * 100_000 + b"}"
NGCF_TRAIN = "0 1 2\n1 2 3\n"
CASES = [
    # data: files that cannot be read as a dataset
    Case("missing file", lambda f, r, m: ["data", "info", str(f / "nope.csv")], "no such file"),
    Case("unknown name", lambda f, r, m: ["data", "info", "ml-100"], "did you mean ml-100k"),
    Case("unknown fetch name", lambda f, r, m: ["data", "fetch", "ml-10m0"], "did you mean"),
    Case("no such column", _file("log.csv", "user,item\n1,2\n", "--user-col", "uid"), "no column"),
    Case("no item column", _file("log.csv", "user,product\n1,2\n"), "no item id column"),
    Case("word rating", _file("log.csv", "user,item,rating\n1,2,great\n"), "is not a number"),
    Case("+inf rating", _file("log.csv", "user,item,rating\n1,2,4\n1,3,inf\n"), "not a finite"),
    Case("-inf rating", _file("log.csv", "user,item,rating\n1,2,-inf\n1,3,4\n"), "not a finite"),
    Case("nan rating", _file("log.csv", "user,item,rating\n1,2,4\n1,3,NaN\n"), "not a finite"),
    Case("missing user id", _file("log.csv", "user,item\n1,2\n,3\n"), "missing user id"),
    Case("bad timestamp", _file("log.tsv", "user\titem\ttime\n1\t2\tlast tuesday\n"), "line 2"),
    Case("empty file", _file("empty.csv", ""), "the file is empty"),
    Case("header only", _file("header.csv", "user,item,rating\n"), "no interactions"),
    Case("unsupported type", _file("log.xlsx", "PK"), "unsupported file type .xlsx"),
    Case("not parquet", _file("log.parquet", "user,item\n1,2\n"), "Parquet"),
    Case("not a zip", _file("ml-100k.zip", "PK\x03\x04 truncated"), "truncated or corrupt"),
    Case("zip bomb", _zip_bomb, "more than the 100000 a member may hold"),
    Case("recbole no types", _file("toy.inter", "user_id:token\titem_id\n1\t2\n"), "no type"),
    Case(
        "ngcf word id",
        lambda f, r, m: [
            "data",
            "info",
            str(_write(f / "s", {"train.txt": "0 1 x3\n", "test.txt": "0 3\n"})),
        ],  # fmt: skip
        "item id 'x3' is not an integer",
    ),
    Case(
        "ngcf id past int64",
        lambda f, r, m: [
            "data",
            "info",
            str(_write(f / "s", {"train.txt": NGCF_TRAIN, "test.txt": "0 " + BIG})),
        ],  # fmt: skip
        "is not an integer",
    ),
    Case("unknown folder", lambda f, r, m: ["data", "info", str(f)], "not a dataset folder"),
    Case(
        "column option unused",
        lambda f, r, m: ["data", "info", "synthetic", "--user-col", "u"],
        "user_col",
    ),  # fmt: skip
    # train: arguments
    Case("seed -1", lambda f, r, m: [*TRAIN, "--seed", "-1"], "--seed: -1 is out of range"),
    Case("seed 2**66", lambda f, r, m: [*TRAIN, "--seed", str(2**66)], "out of range"),
    Case("seed word", lambda f, r, m: [*TRAIN, "--seed", "one"], "'one' is not an integer"),
    Case("epochs 0", lambda f, r, m: [*TRAIN, "--epochs", "0"], "--epochs: 0 is out of range"),
    Case("threshold nan", lambda f, r, m: [*TRAIN, "--threshold", "nan"], "not a finite number"),
    Case("k-core -5", lambda f, r, m: [*TRAIN, "--min-user-interactions", "-5"], "out of range"),
    Case(
        "k-core too high",
        lambda f, r, m: [*TRAIN, "--no-save", "--min-item-interactions", "1000"],
        "no interactions left",
    ),  # fmt: skip
    Case("unknown model", lambda f, r, m: [*TRAIN, "--model", "nosuch"], "nosuch"),
    Case("empty model list", lambda f, r, m: [*TRAIN, "--model", ","], "at least one model"),
    Case("unknown device", lambda f, r, m: [*TRAIN, "--device", "tpu"], "unknown device 'tpu'"),
    Case("unknown protocol", lambda f, r, m: [*TRAIN, "--protocol", "x"], "invalid choice"),
    Case("data option w/o =", lambda f, r, m: [*TRAIN, "--data-option", "n"], "expected KEY=VALUE"),
    Case(
        "unknown data option",
        lambda f, r, m: [*TRAIN, "--no-save", "--data-option", "n_userz=5"],
        "bad option",
    ),  # fmt: skip
    Case("no --dataset", lambda f, r, m: ["train", "--model", "pop"], "--dataset"),
    Case("unknown command", lambda f, r, m: ["trian"], "invalid choice: 'trian'"),
    # train: the data and the disk
    Case("too large for memory", _train_then(_out_of_memory), "out of memory"),
    Case("pre-split, no test user trained", _presplit, "10 have no training items"),
    Case("--out /etc/passwd", _train_then(_out_is_a_file), "cannot write run folders there"),
    Case("--out not writable", _train_then(_not_writable), "Permission denied"),
    Case("full disk during save", _train_then(_full_disk), "No space left on device"),
    Case("Ctrl-C", _train_then(_interrupted), "reclens: interrupted", code=130),
    Case("a bug", _train_then(_bug), "rerun with --debug for the traceback", code=1),
    # the tiny run: metrics, fidelity, trajectory, compare
    Case("metrics --k 0", _run_copy(["metrics", "--k", "0"]), "--k must be at least 1"),
    Case("metrics --k 1000", _run_copy(["metrics", "--k", "1000"]), "fewer than k=1000"),
    Case("metrics group", _run_copy(["metrics", "--group-by", "shoe"]), "shoe"),
    Case("metrics no run", lambda f, r, m: ["metrics", "--run", str(f / "x")], "no such run"),
    Case("metrics read-only run", _read_only, "Permission denied"),
    Case("trajectory of ease", _run_copy(["trajectory", "--user", "1"]), "diffrec"),
    Case("compare one run", lambda f, r, m: ["compare", "--runs", str(r)], "at least two runs"),
    Case(
        "compare metric",
        lambda f, r, m: ["compare", "--runs", f"{r},{_copy(r, f)}", "--metric", "x@1"],
        "x@1",
    ),  # fmt: skip
    Case(
        "fidelity --users 0",
        lambda f, r, m: [
            "fidelity",
            "--dataset",
            "synthetic",
            *TINY,
            "--model",
            "ease",
            "--users",
            "0",
        ],
        "--users",
    ),  # fmt: skip
    # tampered runs
    Case("no manifest", _unfinished, "not a complete run"),
    Case(
        "changed metrics",
        _tamper("metrics.json", lambda b: b.replace(b"0", b"1", 1), relist=False),
        "checksum mismatch",
    ),  # fmt: skip
    Case("cut metrics", _tamper("metrics.json", b"{}", relist=False), "truncated"),
    Case("nested config", _tamper("config.json", NESTED), "nested too deeply"),
    Case("config not JSON", _tamper("config.json", b"{model"), "invalid JSON"),
    Case("config list", _tamper("config.json", b"[1]"), "expected a JSON object"),
    Case(
        "negative n_items",
        _tamper("config.json", _config_edit(lambda c: c.update(n_items=-5))),
        "config.json",
    ),  # fmt: skip
    Case(
        "unknown model in config",
        _tamper("config.json", _config_edit(lambda c: c.update(model="nosuch"))),
        "nosuch",
    ),  # fmt: skip
    Case(
        "hparams not a dict",
        _tamper("config.json", _config_edit(lambda c: c.update(hparams=[1]))),
        "config.json",
    ),  # fmt: skip
    Case(
        "bad hparam",
        _tamper("config.json", _config_edit(lambda c: c["hparams"].update(reg=-1e9, shoe=1))),
        "config.json",
    ),  # fmt: skip
    Case(
        "negative dimension",
        _tamper("config.json", _config_edit(lambda c: c.update(model="fism", hparams={"dim": -4}))),
        "cannot rebuild model",
    ),  # fmt: skip
    Case(
        "n_items past the data",
        _tamper("config.json", _config_edit(lambda c: c.update(n_items=10**12))),
        "training data (50 items)",
    ),  # fmt: skip
    Case(
        "negative split seed",
        _tamper("config.json", _config_edit(lambda c: c["split"].update(seed=-1))),
        "split seed",
    ),  # fmt: skip
    Case(
        "threshold as text",
        _tamper("config.json", _config_edit(lambda c: c["prepare"].update(threshold="x"))),
        "finite number",
    ),  # fmt: skip
    Case(
        "per-user ids as text",
        _tamper(
            "per_user_metrics.parquet",
            _parquet_edit(lambda t: t.with_columns(t["user"].cast(str))),
            compare=True,
        ),
        "integer user",
    ),  # fmt: skip
    Case("nested metrics", _tamper("metrics.json", NESTED), "nested too deeply"),
    Case("metrics list", _tamper("metrics.json", b"[]"), "expected a JSON object"),
    Case(
        "per-user not parquet",
        _tamper("per_user_metrics.parquet", b"PAR1 x", compare=True),
        "parquet",
    ),  # fmt: skip
    Case(
        "recommendations cut",
        _tamper("recommendations.parquet", lambda b: b[: len(b) // 2]),
        "recommendations.parquet",
    ),  # fmt: skip
    Case("model state cut", _tamper("model.safetensors", lambda b: b[:100]), "model.safetensors"),
    Case("symlinked file", _symlinked, "symbolic link"),
    Case("symlinked manifest", _linked_inside(".complete"), "symbolic link"),
    Case("symlinked model", _linked_inside("model.safetensors"), "symbolic link"),
    Case("symlinked derived folder", _derived_folder_linked, "outside the run"),
    Case(
        "fidelity --out a file's child",
        lambda f, r, m: [
            "fidelity",
            "--dataset",
            "synthetic",
            *TINY,
            "--model",
            "ease",
            "--out",
            "/etc/passwd/x.parquet",
        ],
        "cannot write there",
    ),  # fmt: skip
]


@pytest.mark.parametrize("case", CASES, ids=[case.name for case in CASES])
def test_cli_bad_input_is_one_line(
    case: Case,
    tiny_run: Path,
    tmp_path: Path,
    tmp_home: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    from app.cli import main

    argv = case.argv(tmp_path, tiny_run, monkeypatch)
    code = _exit_code(main, argv)
    captured = capsys.readouterr()
    lines = captured.err.splitlines()
    assert "Traceback" not in captured.err + captured.out
    assert code == case.code, captured.err
    assert len(lines) == 1, captured.err
    assert case.expect in lines[0], lines[0]


def test_the_table_is_large_enough() -> None:
    assert len(CASES) >= 40


def _exit_code(main: Callable[[list[str]], int], argv: list[str]) -> int:
    """``main(argv)``, or the status of the ``SystemExit`` argparse raises."""
    try:
        return main(argv)
    except SystemExit as stop:
        return int(stop.code or 0)


def _run_cli(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    from app.cli import main

    code = _exit_code(main, argv)
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_debug_shows_the_traceback_of_a_bug(
    tmp_home: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    _raise(monkeypatch, "engine.pipeline.fit", ZeroDivisionError("division by zero"))
    with pytest.raises(ZeroDivisionError):
        _run_cli([*TRAIN, "--no-save", "--debug"], capsys)


def test_ctrl_c_while_starting_up_is_one_line() -> None:
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    proc = subprocess.Popen(
        [sys.executable, "-m", "app.cli", "data", "list"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    time.sleep(0.4)  # the command modules (polars, PyTorch) take seconds to import
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=60)
    # 130, or death by SIGINT itself when the signal landed in code an extension module runs
    # through PyRun_* during its import (CPython then re-raises SIGINT at exit): both are what
    # a shell reports as status 130
    assert proc.returncode in (130, -signal.SIGINT), err
    assert err.splitlines() == ["reclens: interrupted"], err


def test_ids_past_int64_are_kept_as_text(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "big.csv"
    path.write_text(f"user,item\n{BIG},2\n1,3\n{BIG},3\n")
    dataset = load(path)
    assert sorted(dataset.user_raw_ids.astype(str)) == sorted(["1", BIG])
    code, out, err = _run_cli(["data", "info", str(path), "--json"], capsys)
    assert code == 0 and json.loads(out)["n_users"] == 2, err


def test_fewer_items_than_k_caps_the_lists_and_says_so(
    tmp_path: Path, tmp_home: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "small.csv"
    rows = [f"{u},{(u * 7 + j * 3) % 19},4" for u in range(30) for j in range(8)]
    path.write_text("user,item,rating\n" + "\n".join(rows) + "\n")
    code, out, err = _run_cli(
        ["train", "--dataset", str(path), "--model", "pop", "--quiet"], capsys
    )
    assert code == 0, err
    assert "the dataset has 19 items, fewer than K=20" in out
    run_dir = Path(out.strip().splitlines()[-1].split(": ", 1)[1])
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert any("fewer than K=20" in note for note in metrics["notes"])
    assert 0.0 < metrics["test"]["recall@20"] <= 1.0
    # a list at 20 holds all 19 items: every held-out item is found
    assert metrics["test"]["recall@20"] == pytest.approx(1.0)


def test_a_catalogue_smaller_than_every_k_is_saved(
    tmp_path: Path, tmp_home: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "six.csv"
    rows = [f"{u},{(u * 3 + j) % 6}" for u in range(40) for j in range(4)]
    path.write_text("user,item\n" + "\n".join(rows) + "\n")
    code, out, err = _run_cli(
        ["train", "--dataset", str(path), "--model", "ease", "--quiet"], capsys
    )
    assert code == 0, err
    assert "fewer than K=10, 20" in out
    run_dir = Path(out.strip().splitlines()[-1].split(": ", 1)[1])
    code, out, err = _run_cli(["metrics", "--run", str(run_dir), "--k", "2", "--json"], capsys)
    assert code == 0 and json.loads(out)["k"] == 2, err


def test_presplit_users_without_training_items_are_counted(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    split = tmp_path / "split"
    split.mkdir()
    train = "".join(f"{u} {u % 6} {(u + 1) % 6} {(u + 2) % 6}\n" for u in range(12))
    (split / "train.txt").write_text(train)
    test = "".join(f"{u} {(u + 3) % 6}\n" for u in range(16))  # users 12..15 never trained
    (split / "test.txt").write_text(test)
    code, out, err = _run_cli(
        ["train", "--dataset", str(split), "--model", "pop", "--quiet", "--no-save", "--json"],
        capsys,
    )
    assert code == 0, err
    summary = json.loads(out)
    assert summary["notes"][0] == "4 of 16 test users are not evaluated: 4 have no training items"


def test_metrics_no_save_works_on_a_read_only_run(
    tiny_run: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    argv = _read_only(tmp_path, tiny_run, monkeypatch)
    code, out, err = _run_cli([*argv, "--no-save"], capsys)
    assert code == 0 and "Catalogue" in out and err == "", err


def test_full_disk_leaves_no_partial_folder(
    tmp_path: Path,
    tmp_home: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    code, _, err = _run_cli([*TRAIN, *_full_disk(tmp_path, monkeypatch)], capsys)
    assert code == 2 and "No space left" in err
    assert [p.name for p in (tmp_path / "runs" / "synthetic").iterdir()] == []


def test_stale_partials_are_removed_and_a_running_save_is_kept(tmp_path: Path) -> None:
    from engine.runs import STALE_PARTIAL_SECONDS, remove_stale_partials

    stale = tmp_path / ".pop-20260101T000000Z.partial-123-abcd"
    stale.mkdir()
    (stale / "model.safetensors").write_bytes(b"x")
    old = time.time() - STALE_PARTIAL_SECONDS - 60
    os.utime(stale, (old, old))
    fresh = tmp_path / ".ease-20260101T000000Z.partial-456-ef01"
    fresh.mkdir()
    run = tmp_path / "mf-20260101T000000Z"
    run.mkdir()
    os.utime(run, (old, old))
    assert remove_stale_partials(tmp_path) == [stale]
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([fresh.name, run.name])


def test_saving_a_run_cleans_stale_partials(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from engine.runs import STALE_PARTIAL_SECONDS

    folder = tmp_path / "runs" / "synthetic"
    folder.mkdir(parents=True)
    stale = folder / ".pop-20260101T000000Z.partial-123-abcd"
    stale.mkdir()
    old = time.time() - STALE_PARTIAL_SECONDS - 60
    os.utime(stale, (old, old))
    fresh = folder / ".pop-20260101T000001Z.partial-456-ef01"
    fresh.mkdir()
    code, _, err = _run_cli([*TRAIN, "--out", str(tmp_path / "runs")], capsys)
    assert code == 0, err
    names = [p.name for p in folder.iterdir()]
    assert stale.name not in names and fresh.name in names
    assert len([n for n in names if n.startswith("pop-")]) == 1


def test_writing_a_derived_file_cleans_stale_partials(tiny_run: Path, tmp_path: Path) -> None:
    from engine.runs import STALE_PARTIAL_SECONDS, write_derived_json

    copy = _copy(tiny_run, tmp_path)
    stale = copy / ".beyond_metrics.json.partial-123-abcd"
    stale.write_text("{")
    old = time.time() - STALE_PARTIAL_SECONDS - 60
    os.utime(stale, (old, old))
    fresh = copy / ".beyond_metrics.json.partial-456-ef01"  # another process writing now
    fresh.write_text("{")
    write_derived_json(copy, "notes.json", {"ok": True})
    assert not stale.exists() and fresh.exists() and (copy / "notes.json").is_file()
