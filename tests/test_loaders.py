"""Loading every kind of source: MovieLens (real and made-up), tables, RecBole, pre-split and
synthetic, and the download path (file:// URLs and a replaced opener)."""

from __future__ import annotations

import hashlib
import io
import shutil
import time
import urllib.error
from pathlib import Path

import numpy as np
import polars as pl
import pytest

from data import download, load
from data.errors import DownloadError
from data.loaders import known_sources

# -- real MovieLens 100K ---------------------------------------------------------------------------


def test_ml100k_counts_ids_and_attributes(
    ml100k_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("RECLENS_DATA", str(ml100k_dir.parent))
    ds = load("ml-100k")
    assert (ds.n_users, ds.n_items, ds.n_interactions) == (943, 1682, 100_000)
    assert ds.user_index("1") == 0 and ds.item_index("1") == 0
    assert ds.user_index("943") == 942
    toy = ds.items.row(ds.item_index("1"), named=True)
    assert toy["title"] == "Toy Story (1995)"
    assert toy["genres"] == ["Animation", "Children's", "Comedy"]
    assert toy["year"] == 1995
    user1 = ds.users.row(0, named=True)
    assert (user1["age"], user1["gender"], user1["occupation"], user1["zip"]) == (
        24,
        "M",
        "technician",
        "85711",
    )
    first = ds.interactions.row(0, named=True)  # u.data line 1: 196 242 3 881250949
    assert ds.user_raw_ids[first["user"]] == "196" and ds.item_raw_ids[first["item"]] == "242"
    assert (first["rating"], first["timestamp"]) == (3.0, 881250949)


def test_ml100k_accented_title_decodes(ml100k_dir: Path) -> None:
    ds = load(ml100k_dir)
    row = ds.items.row(ds.item_index("543"), named=True)
    assert row["title"] == "Misérables, Les (1995)"
    assert "\ufffd" not in "".join(ds.items["title"].to_list())


def test_ml100k_zip_and_folder_give_identical_tables(ml100k_dir: Path) -> None:
    archive = ml100k_dir.parent / "ml-100k.zip"
    if not archive.is_file():
        pytest.skip(f"{archive} not found")
    from_zip, from_folder = load(archive), load(ml100k_dir)
    assert from_zip.name == from_folder.name == "ml-100k"
    for table in ("interactions", "items", "users"):
        assert getattr(from_zip, table).equals(getattr(from_folder, table)), table


# -- made-up MovieLens layouts ---------------------------------------------------------------------


def test_tiny_ml100k_zip_matches_folder_and_orders_ids_numerically(
    tiny_movielens, zip_dataset, tmp_path: Path
) -> None:
    folder = tiny_movielens("ml-100k")
    archive = zip_dataset(folder, tmp_path / "ml-100k.zip")
    a, b = load(folder), load(archive)
    for table in ("interactions", "items", "users"):
        assert getattr(a, table).equals(getattr(b, table))
    assert list(a.user_raw_ids) == ["1", "2", "10"]  # numeric order, not "1", "10", "2"
    row = a.items.row(a.item_index("2"), named=True)
    assert row["title"] == "Misérables, Les (1995)"
    assert row["genres"] == ["Drama", "Musical"]
    assert a.items.row(a.item_index("3"), named=True)["year"] is None
    assert a.items.row(a.item_index("4"), named=True)["year"] == 1997  # from the release date
    assert a.users.row(a.user_index("10"), named=True)["zip"] == "T8H1N"


def test_ml1m_layout(tiny_movielens, zip_dataset, tmp_path: Path) -> None:
    archive = zip_dataset(tiny_movielens("ml-1m"), tmp_path / "ml-1m.zip")
    ds = load(archive)
    assert (ds.n_users, ds.n_items, ds.n_interactions) == (2, 2, 3)
    cafe = ds.items.row(ds.item_index("10"), named=True)
    assert cafe["title"] == "Café Society (1995)"
    assert cafe["genres"] == ["Comedy", "Romance"] and cafe["year"] == 1995
    users = ds.users.to_dicts()
    assert users[0]["occupation"] == "K-12 student" and users[1]["occupation"] == "self-employed"
    assert users[1]["age"] == 56 and users[0]["gender"] == "F"
    assert ds.interactions["timestamp"].to_list() == [978300760, 978302109, 978301968]


def test_latest_csv_layout_keeps_catalogue_and_links(tiny_movielens) -> None:
    ds = load(tiny_movielens("ml-latest-small"))
    assert ds.n_items == 3 and ds.n_users == 2 and ds.n_interactions == 3
    pres = ds.items.row(ds.item_index("3"), named=True)
    assert pres["title"] == "American President, The (1995)"
    assert pres["genres"] == ["Comedy", "Drama", "Romance"] and pres["year"] == 1995
    assert pres["imdbId"] == "0112346"  # leading zero kept
    short = ds.items.row(ds.item_index("7"), named=True)
    assert short["genres"] == [] and short["year"] is None
    assert ds.interactions["rating"].to_list() == [4.0, 4.5, 2.5]


def test_named_lookup_order(
    tiny_movielens, zip_dataset, tmp_path: Path, tmp_home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    folder = tiny_movielens("ml-100k")
    data_root = tmp_path / "data"
    data_root.mkdir()
    monkeypatch.setenv("RECLENS_DATA", str(data_root))
    # only in the cache -> found there, read from the zip
    cache = tmp_home / "datasets"
    cache.mkdir()
    zip_dataset(folder, cache / "ml-100k.zip")
    assert load("ml-100k").source == str(cache / "ml-100k.zip")
    # RECLENS_DATA wins over the cache, and a folder wins over a zip in the same place
    zip_dataset(folder, data_root / "ml-100k.zip")
    assert load("ml-100k").source == str(data_root / "ml-100k.zip")
    shutil.copytree(folder, data_root / "ml-100k")
    assert load("ml-100k").source == str(data_root / "ml-100k")
    where = {s.name: s.location for s in known_sources()}
    assert where["ml-100k"] == data_root / "ml-100k" and where["ml-1m"] is None


# -- generic tables --------------------------------------------------------------------------------


def test_million_row_csv_loads_fast(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    n = 1_000_000
    users = rng.integers(0, 20_000, n)
    items = rng.integers(0, 5_000, n) * 3 + 7  # sparse raw ids
    path = tmp_path / "big.csv"
    pl.DataFrame({"user": users, "item": items}).write_csv(path)
    start = time.perf_counter()
    ds = load(path)
    elapsed = time.perf_counter() - start
    assert ds.n_interactions == n
    assert ds.n_users == len(np.unique(users)) and ds.n_items == len(np.unique(items))
    # row order kept and indices follow the numeric order of raw ids
    expected_item = np.searchsorted(np.unique(items), items[:1000])
    assert np.array_equal(ds.interactions["item"].to_numpy()[:1000], expected_item)
    assert ds.interactions["rating"].null_count() == n
    assert elapsed < 15, f"1M-row CSV took {elapsed:.1f}s"


def test_common_column_names_and_tsv(tmp_path: Path) -> None:
    path = tmp_path / "log.tsv"
    path.write_text("userID\titemID\tscore\tts\tcountry\nb\tx\t1.5\t100\tNO\na\tx\t2\t50\tSE\n")
    ds = load(path)
    assert list(ds.user_raw_ids) == ["a", "b"]  # string ids sort as strings
    assert ds.interactions.to_dicts() == [
        {"user": 1, "item": 0, "rating": 1.5, "timestamp": 100},
        {"user": 0, "item": 0, "rating": 2.0, "timestamp": 50},
    ]


def test_explicit_columns_items_file_and_dates(tmp_path: Path) -> None:
    path = tmp_path / "events.csv"
    path.write_text("who,what,stars,when\n7,m2,5,2020-01-02\n3,m1,4,2020-01-01\n")
    items = tmp_path / "movies.csv"
    items.write_text("what,title,genres,director\nm1,Alpha (2001),Drama|War,Ann\nm3,Gamma,,Bo\n")
    ds = load(path, user_col="who", item_col="what", rating_col="stars", time_col="when",
              items_path=items)  # fmt: skip
    assert ds.n_items == 3  # m1, m2 rated; m3 from the catalogue
    alpha = ds.items.row(ds.item_index("m1"), named=True)
    assert (alpha["title"], alpha["genres"], alpha["year"], alpha["director"]) == (
        "Alpha (2001)",
        ["Drama", "War"],
        2001,
        "Ann",
    )
    assert ds.items.row(ds.item_index("m2"), named=True)["title"] == "m2"
    assert ds.interactions["timestamp"].to_list() == [1577923200, 1577836800]


def test_parquet_with_datetime_and_headerless_csv(tmp_path: Path) -> None:
    from datetime import datetime

    frame = pl.DataFrame(
        {"user_id": [1, 2], "item_id": [5, 6], "time": [datetime(2001, 9, 9, 1, 46, 40)] * 2}
    )
    frame.write_parquet(tmp_path / "p.parquet")
    ds = load(tmp_path / "p.parquet")
    assert ds.interactions["timestamp"].to_list() == [1_000_000_000] * 2
    (tmp_path / "raw.csv").write_text("196,242,3,881250949\n186,302,3,891717742\n")
    raw = load(tmp_path / "raw.csv")
    assert raw.n_interactions == 2 and raw.interactions["rating"].to_list() == [3.0, 3.0]


# -- RecBole and pre-split folders -----------------------------------------------------------------


def test_recbole_atomic_files(tmp_path: Path) -> None:
    folder = tmp_path / "ml-toy"
    folder.mkdir()
    (folder / "ml-toy.inter").write_text(
        "user_id:token\titem_id:token\trating:float\ttimestamp:float\n"
        "196\t242\t3\t881250949\n186\t302\t3\t891717742\n196\t302\t5\t881250950\n"
    )
    (folder / "ml-toy.item").write_text(
        "item_id:token\tmovie_title:token_seq\trelease_year:token\tclass:token_seq\n"
        "242\tKolya\t1996\tComedy\n302\tL.A. Confidential\t1997\tCrime Film-Noir Mystery\n"
        "999\tNobody Rated\t2000\tDrama\n"
    )
    (folder / "ml-toy.user").write_text(
        "user_id:token\tage:token\tgender:token\n196\t49\tM\n186\t39\tF\n"
    )
    ds = load(folder)
    assert (ds.n_users, ds.n_items, ds.n_interactions) == (2, 3, 3)
    la = ds.items.row(ds.item_index("302"), named=True)
    assert la["title"] == "L.A. Confidential" and la["year"] == 1997
    assert la["genres"] == ["Crime", "Film-Noir", "Mystery"]
    assert ds.users.row(ds.user_index("196"), named=True)["gender"] == "M"
    assert load(folder / "ml-toy.inter").interactions.equals(ds.interactions)


def test_ngcf_presplit(tmp_path: Path) -> None:
    (tmp_path / "train.txt").write_text("0 0 1 2\n1 2 3\n2\n")
    (tmp_path / "test.txt").write_text("0 3\n1 0\n2  4\n")
    ds = load(tmp_path)
    assert ds.parts is not None and list(ds.parts) == ["train", "valid", "test"]
    assert ds.parts["train"].height == 5 and ds.parts["valid"].height == 0
    assert ds.parts["test"].height == 3
    assert ds.n_interactions == 8 and ds.n_users == 3 and ds.n_items == 5
    test_pairs = ds.parts["test"].select("user", "item").rows()
    assert test_pairs == [(0, 3), (1, 0), (2, 4)]


def test_table_presplit_with_valid(tmp_path: Path) -> None:
    (tmp_path / "train.csv").write_text("user_id,item_id,rating\nu1,a,5\nu2,b,3\n")
    (tmp_path / "valid.csv").write_text("user_id,item_id,rating\nu1,b,4\n")
    pl.DataFrame({"user_id": ["u2"], "item_id": ["c"], "rating": [1.0]}).write_parquet(
        tmp_path / "test.parquet"
    )
    ds = load(tmp_path)
    assert {k: v.height for k, v in ds.parts.items()} == {"train": 2, "valid": 1, "test": 1}
    assert ds.n_items == 3 and ds.n_interactions == 4
    assert ds.parts["test"]["item"].to_list() == [ds.item_index("c")]


def test_synthetic_dispatch() -> None:
    ds = load("synthetic", n_users=60, n_items=50, n_interactions=800, seed=3)
    assert ds.truth is not None
    assert ds.n_users <= 60 and ds.n_items <= 50 and ds.n_interactions > 0


# -- downloads -------------------------------------------------------------------------------------


def _server(tiny_movielens, zip_dataset, tmp_path: Path) -> tuple[str, bytes]:
    """A folder served through file:// holding a made-up ml-100k.zip; returns (base URL, bytes)."""
    served = tmp_path / "served"
    served.mkdir()
    archive = zip_dataset(tiny_movielens("ml-100k"), served / "ml-100k.zip")
    return served.as_uri() + "/", archive.read_bytes()


def test_fetch_over_file_url_verifies_and_loads(
    tiny_movielens, zip_dataset, tmp_path: Path, tmp_home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    base, payload = _server(tiny_movielens, zip_dataset, tmp_path)
    monkeypatch.delenv("RECLENS_DATA", raising=False)
    monkeypatch.setattr(download, "BASE_URL", base)
    monkeypatch.setitem(download.KNOWN_MD5, "ml-100k", hashlib.md5(payload).hexdigest())
    path = download.fetch("ml-100k", progress=False)
    assert path == tmp_home / "datasets" / "ml-100k.zip"
    assert path.read_bytes() == payload
    assert sorted(p.name for p in path.parent.iterdir()) == ["ml-100k.zip"]
    assert load("ml-100k").n_interactions == 6


def test_fetch_uses_published_md5_file(
    tiny_movielens, zip_dataset, tmp_path: Path, tmp_home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    served = tmp_path / "served"
    served.mkdir()
    archive = zip_dataset(tiny_movielens("ml-latest-small"), served / "ml-latest-small.zip")
    digest = hashlib.md5(archive.read_bytes()).hexdigest()
    (served / "ml-latest-small.zip.md5").write_text(f"MD5 (ml-latest-small.zip) = {digest}\n")
    monkeypatch.delenv("RECLENS_DATA", raising=False)
    monkeypatch.setattr(download, "BASE_URL", served.as_uri() + "/")
    ds = load("ml-latest-small")
    assert ds.n_interactions == 3 and ds.source == str(
        tmp_home / "datasets" / "ml-latest-small.zip"
    )


class _FakeResponse(io.BytesIO):
    """What ``urlopen`` returns, with a Content-Length header that may lie."""

    def __init__(self, body: bytes, length: int) -> None:
        super().__init__(body)
        self.headers = {"Content-Length": str(length)}


def test_fetch_with_progress_bar_and_replaced_opener(
    tiny_movielens, zip_dataset, tmp_path: Path, tmp_home: Path, monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:  # fmt: skip
    _base, payload = _server(tiny_movielens, zip_dataset, tmp_path)
    monkeypatch.delenv("RECLENS_DATA", raising=False)
    seen: list[str] = []

    def opener(url: str) -> _FakeResponse:
        seen.append(url)
        return _FakeResponse(payload, len(payload))

    monkeypatch.setattr(download, "urlopen", opener)
    monkeypatch.setitem(download.KNOWN_MD5, "ml-100k", hashlib.md5(payload).hexdigest())
    download.fetch("ml-100k")
    assert seen == ["https://files.grouplens.org/datasets/movielens/ml-100k.zip"]
    assert "ml-100k.zip" in capsys.readouterr().err  # tqdm writes its bar to stderr


def test_offline_error_says_what_to_place_where(
    tmp_home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("RECLENS_DATA", raising=False)

    def offline(url: str) -> None:
        raise urllib.error.URLError("Name or service not known")

    monkeypatch.setattr(download, "urlopen", offline)
    with pytest.raises(DownloadError) as err:
        load("ml-1m")
    message = str(err.value)
    assert "\n" not in message
    assert "ml-1m.zip" in message and str(tmp_home / "datasets") in message
    assert not (tmp_home / "datasets").exists() or not any((tmp_home / "datasets").iterdir())
