"""Shared fixtures: the real MovieLens 100K folder, a private RecLens home, tiny MovieLens files.

Real data is never copied into the repository: :func:`ml100k_dir` finds ``ml-100k/`` under
``$RECLENS_DATA`` (e.g. ``RECLENS_DATA=/work/shared/data``) and skips the test otherwise. The
tiny MovieLens writers produce small made-up files in the original layouts, for tests that
need a dataset in a given shape but not the real one.
"""

from __future__ import annotations

import zipfile
from collections.abc import Callable
from pathlib import Path

import pytest

from data.paths import data_dirs


@pytest.fixture
def ml100k_dir() -> Path:
    """The real ``ml-100k`` folder under ``$RECLENS_DATA``; skips when it is not there."""
    for root in data_dirs():
        folder = root / "ml-100k"
        if (folder / "u.data").is_file() and (folder / "u.item").is_file():
            return folder
    pytest.skip(
        "MovieLens 100K not found: set RECLENS_DATA to a folder holding ml-100k/ "
        "(for example RECLENS_DATA=/work/shared/data)"
    )


@pytest.fixture
def tmp_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A fresh ``$RECLENS_HOME`` (the download cache lives in its ``datasets/``)."""
    home = tmp_path / "reclens-home"
    home.mkdir()
    monkeypatch.setenv("RECLENS_HOME", str(home))
    return home


GENRES_100K = (
    "unknown", "Action", "Adventure", "Animation", "Children's", "Comedy", "Crime",
    "Documentary", "Drama", "Fantasy", "Film-Noir", "Horror", "Musical", "Mystery", "Romance",
    "Sci-Fi", "Thriller", "War", "Western",
)  # fmt: skip


def _flags(*genres: str) -> str:
    return "|".join("1" if g in genres else "0" for g in GENRES_100K)


def write_tiny_ml100k(folder: Path) -> Path:
    """A made-up ml-100k folder: 3 users (ids 1, 2, 10), 4 items, 6 ratings, Latin-1 titles."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "u.data").write_text(
        "1\t1\t5\t881250949\n1\t2\t3\t881250950\n2\t1\t4\t881250951\n"
        "10\t3\t1\t881250952\n10\t4\t2\t881250953\n2\t4\t5\t881250954\n"
    )
    items = [
        f"1|Toy Story (1995)|01-Jan-1995||http://x/1|{_flags('Animation', 'Comedy')}",
        f"2|Misérables, Les (1995)|01-Jan-1995||http://x/2|{_flags('Drama', 'Musical')}",
        f"3|unknown|||http://x/3|{_flags('unknown')}",
        f"4|Some Film|15-Mar-1997||http://x/4|{_flags('Action')}",
    ]
    (folder / "u.item").write_bytes(("\n".join(items) + "\n").encode("latin-1"))
    (folder / "u.genre").write_text("".join(f"{g}|{k}\n" for k, g in enumerate(GENRES_100K)) + "\n")
    (folder / "u.user").write_text(
        "1|24|M|technician|85711\n2|53|F|other|94043\n10|30|M|writer|T8H1N\n"
    )
    return folder


def write_tiny_ml1m(folder: Path) -> Path:
    """A made-up ml-1m folder (``::`` separators, Latin-1, occupation codes)."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "ratings.dat").write_text(
        "1::10::5::978300760\n1::20::3::978302109\n2::20::4::978301968\n"
    )
    movies = "10::Café Society (1995)::Comedy|Romance\n20::Heat (1995)::Action|Crime|Thriller\n"
    (folder / "movies.dat").write_bytes(movies.encode("latin-1"))
    (folder / "users.dat").write_text("1::F::1::10::48067\n2::M::56::16::70072\n")
    return folder


def write_tiny_latest(folder: Path) -> Path:
    """A made-up ml-latest-small folder (CSV, quoted titles, a catalogue item nobody rated)."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "ratings.csv").write_text(
        "userId,movieId,rating,timestamp\n1,1,4.0,964982703\n1,3,4.5,964981247\n5,1,2.5,964982224\n"
    )
    (folder / "movies.csv").write_text(
        "movieId,title,genres\n1,Toy Story (1995),Adventure|Animation|Children\n"
        '3,"American President, The (1995)",Comedy|Drama|Romance\n'
        "7,Untitled Short,(no genres listed)\n"
    )
    (folder / "links.csv").write_text("movieId,imdbId,tmdbId\n1,0114709,862\n3,0112346,9087\n")
    return folder


def zip_folder(folder: Path, archive: Path) -> Path:
    """Zip ``folder`` the way GroupLens does (members under ``<folder name>/``)."""
    with zipfile.ZipFile(archive, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        for file in sorted(folder.iterdir()):
            zf.write(file, f"{folder.name}/{file.name}")
    return archive


@pytest.fixture
def tiny_movielens(tmp_path: Path) -> Callable[[str], Path]:
    """Factory: ``tiny_movielens("ml-100k"|"ml-1m"|"ml-latest-small")`` -> a made-up folder."""
    writers = {"ml-100k": write_tiny_ml100k, "ml-1m": write_tiny_ml1m}

    def make(name: str) -> Path:
        writer = writers.get(name, write_tiny_latest)
        return writer(tmp_path / "tiny" / name)

    return make


@pytest.fixture
def zip_dataset() -> Callable[[Path, Path], Path]:
    """The :func:`zip_folder` helper, as a fixture: ``zip_dataset(folder, archive_path)``."""
    return zip_folder
