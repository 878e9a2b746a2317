"""Bad input gives one-line DataError/DownloadError messages naming the file (and line/column),
and nothing half-written is left in the cache."""

from __future__ import annotations

import hashlib
import io
from pathlib import Path

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
