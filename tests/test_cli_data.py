"""``reclens data list|info|fetch`` and the SOURCE helpers other commands reuse."""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import subprocess
import sys
import urllib.error
from pathlib import Path

import pytest

from app.cli import main
from app.cli_data import add_source_options, load_from_args
from data import download


@pytest.mark.slow
def test_info_json_on_real_ml100k_through_console_script(ml100k_dir: Path) -> None:
    env = {**os.environ, "RECLENS_DATA": str(ml100k_dir.parent)}
    script = Path(sys.executable).with_name("reclens")
    command = [str(script)] if script.exists() else [sys.executable, "-m", "app.cli"]
    done = subprocess.run(
        [*command, "data", "info", "ml-100k", "--json"],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    info = json.loads(done.stdout)
    assert (info["n_users"], info["n_items"], info["n_interactions"]) == (943, 1682, 100_000)
    assert info["density"] == pytest.approx(100_000 / (943 * 1682))
    assert info["rating_histogram"] == {"1": 6110, "2": 11370, "3": 27145, "4": 34174, "5": 21201}
    assert 0.5 < info["top20_item_share"] < 0.8
    assert info["user_activity_quantiles"]["min"] == 20  # every ml-100k user rated >= 20 movies


def test_info_text_and_json_on_a_csv(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "log.csv"
    rows = ["a,x,5", "a,y,4", "a,z,4", "b,x,3", "c,x,1"]
    path.write_text("buyer,product,stars\n" + "\n".join(rows) + "\n")
    columns = ["--user-col", "buyer", "--item-col", "product", "--rating-col", "stars"]
    assert main(["data", "info", str(path), *columns, "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert (info["n_users"], info["n_items"], info["n_interactions"]) == (3, 3, 5)
    assert info["density"] == pytest.approx(5 / 9)
    assert info["rating_histogram"] == {"1": 1, "3": 1, "4": 2, "5": 1}
    assert info["top20_item_share"] == pytest.approx(3 / 5)  # item x holds 3 of 5
    assert (
        info["user_activity_quantiles"]["max"] == 3 and info["user_activity_quantiles"]["min"] == 1
    )
    assert main(["data", "info", str(path), *columns]) == 0
    text = capsys.readouterr().out
    assert "users" in text and "density" in text and "55.5556%" in text and "ratings:" in text


def test_list_shows_locations_and_hints(
    tiny_movielens, tmp_path: Path, tmp_home: Path, monkeypatch: pytest.MonkeyPatch, capsys
) -> None:
    folder = tiny_movielens("ml-100k")
    monkeypatch.setenv("RECLENS_DATA", str(folder.parent))
    assert main(["data", "list"]) == 0
    out = capsys.readouterr().out
    assert str(folder) in out
    assert "not found: place ml-1m.zip" in out and "reclens data fetch ml-1m" in out
    assert main(["data", "list", "--json"]) == 0
    listed = {s["name"]: s for s in json.loads(capsys.readouterr().out)["sources"]}
    assert listed["ml-100k"]["location"] == str(folder) and listed["ml-25m"]["available"] is False


def test_user_mistakes_print_one_line_and_exit_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bad = tmp_path / "bad.csv"
    bad.write_text("user,item,rating\n1,2,good\n")
    assert main(["data", "info", str(bad)]) == 2
    err = capsys.readouterr().err
    assert err == f"reclens: error: {bad}: line 2, column 'rating': 'good' is not a number\n"
    assert main(["data", "info", "ml-10k"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Traceback" not in err and "did you mean ml-100k" in err


def test_fetch_offline_and_online(
    tiny_movielens, zip_dataset, tmp_path: Path, tmp_home: Path,
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
) -> None:  # fmt: skip
    monkeypatch.delenv("RECLENS_DATA", raising=False)
    real_urlopen = download.urlopen

    def offline(url: str) -> None:
        raise urllib.error.URLError("Temporary failure in name resolution")

    monkeypatch.setattr(download, "urlopen", offline)
    assert main(["data", "fetch", "ml-100k"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Traceback" not in err
    assert "place ml-100k.zip" in err and str(tmp_home / "datasets") in err

    served = tmp_path / "served"
    served.mkdir()
    archive = zip_dataset(tiny_movielens("ml-100k"), served / "ml-100k.zip")
    monkeypatch.setattr(download, "urlopen", real_urlopen)
    monkeypatch.setattr(download, "BASE_URL", served.as_uri() + "/")
    monkeypatch.setitem(
        download.KNOWN_MD5, "ml-100k", hashlib.md5(archive.read_bytes()).hexdigest()
    )
    assert main(["data", "fetch", "ml-100k"]) == 0
    cached = tmp_home / "datasets" / "ml-100k.zip"
    assert capsys.readouterr().out.strip() == f"ml-100k: {cached}"
    assert cached.read_bytes() == archive.read_bytes()
    assert main(["data", "fetch", "ml-10k"]) == 2
    assert "did you mean ml-100k" in capsys.readouterr().err


def test_source_helpers_for_other_commands(tmp_path: Path) -> None:
    path = tmp_path / "log.csv"
    path.write_text("u,i\n1,2\n3,4\n")
    parser = argparse.ArgumentParser()
    add_source_options(parser)
    ds = load_from_args(parser.parse_args([str(path), "--user-col", "u", "--item-col", "i"]))
    assert (ds.n_users, ds.n_items, ds.n_interactions) == (2, 2, 2)
