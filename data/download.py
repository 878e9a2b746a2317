"""Download MovieLens archives from GroupLens: progress bar, checksum check, atomic rename.

A download goes to a hidden temporary file in the destination folder; only after its length,
MD5 checksum and zip directory have been checked is it renamed into place with
:func:`os.replace`. On any failure (network, truncation, checksum mismatch, interruption) the
temporary file is removed, so the cache never holds a half-written archive.
"""

from __future__ import annotations

import difflib
import hashlib
import os
import re
import sys
import tempfile
import urllib.request
import zipfile
from collections.abc import Callable
from http.client import HTTPException
from pathlib import Path
from typing import IO, Any

from tqdm import tqdm

from data import paths
from data.errors import DataError, DownloadError

BASE_URL = "https://files.grouplens.org/datasets/movielens/"

# Official MD5 checksums, as published by GroupLens in ``<name>.zip.md5`` next to each archive.
# ``None`` means the archive is updated from time to time (ml-latest-small), so its published
# ``.md5`` file is fetched alongside it instead.
KNOWN_MD5: dict[str, str | None] = {
    "ml-100k": "0e33842e24a9c977be4e0107933c0723",
    "ml-1m": "c4d9eecfca2ab87c1945afe126590906",
    "ml-latest-small": None,
    "ml-20m": "cd245b17a1ae2cc31bb14903e1204af3",
    "ml-25m": "6b51fb2759a8657d3bfcbfc42b592ada",
}

Opener = Callable[[str], Any]
_CHUNK = 1 << 20
_MD5_RE = re.compile(r"\b([0-9a-fA-F]{32})\b")


def urlopen(url: str) -> Any:
    """Open ``url`` for reading (http(s) or file://); tests replace this to simulate failures."""
    return urllib.request.urlopen(url, timeout=60)  # noqa: S310 (GroupLens or file:// only)


def url_for(name: str) -> str:
    """The official GroupLens address of ``<name>.zip``."""
    return f"{BASE_URL}{name}.zip"


def check_name(name: str) -> None:
    """Raise :class:`DataError` (with close names) unless ``name`` is a downloadable dataset."""
    if name not in KNOWN_MD5:
        close = difflib.get_close_matches(name, list(KNOWN_MD5), n=3, cutoff=0.5)
        hint = f"; did you mean {', '.join(close)}?" if close else ""
        raise DataError(
            f"{name}: unknown dataset name (downloadable: {', '.join(KNOWN_MD5)}){hint}"
        )


def fetch(name: str, *, force: bool = False, progress: bool = True) -> Path:
    """Make sure MovieLens dataset ``name`` is available locally and return its folder or zip.

    An existing copy (in ``$RECLENS_DATA`` or the cache) is returned as is unless ``force``;
    otherwise ``<name>.zip`` is downloaded into ``$RECLENS_HOME/datasets`` and verified.
    Raises :class:`DownloadError` naming the file to place, and where, when that fails.
    """
    check_name(name)
    if not force:
        found = paths.find_named(name)
        if found is not None:
            return found
    dest = paths.cache_dir() / f"{name}.zip"
    url = url_for(name)
    hint = paths.placement_hint(name)
    try:
        md5 = KNOWN_MD5[name] or published_md5(url + ".md5")
        return download(url, dest, md5=md5, progress=progress)
    except DownloadError as err:
        raise DownloadError(f"{err}; to use {name} without downloading, {hint}") from None


def published_md5(url: str) -> str:
    """The MD5 value in a GroupLens ``.md5`` file (``MD5 (name.zip) = <hex>``)."""
    try:
        with urlopen(url) as response:
            text = response.read(4096).decode("ascii", errors="replace")
    except (OSError, HTTPException, ValueError) as err:
        raise DownloadError(f"{url}: could not fetch the checksum ({_reason(err)})") from None
    match = _MD5_RE.search(text)
    if match is None:
        raise DownloadError(f"{url}: no MD5 value in the checksum file")
    return match.group(1).lower()


def download(
    url: str,
    dest: Path,
    *,
    md5: str | None,
    progress: bool = True,
    expect_zip: bool = True,
) -> Path:
    """Download ``url`` to ``dest`` atomically and return ``dest``.

    The bytes go to a temporary file in ``dest``'s folder; the length is checked against the
    server's ``Content-Length``, the MD5 against ``md5`` (when given) and, with ``expect_zip``,
    the zip directory is opened. Only then is the file renamed to ``dest``. Any failure raises
    :class:`DownloadError` and leaves nothing behind.
    """
    dest = Path(dest)
    try:
        dest.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp_name = tempfile.mkstemp(prefix=f".{dest.name}.", suffix=".part", dir=dest.parent)
    except OSError as err:
        raise DownloadError(f"{dest}: cannot write the download ({_reason(err)})") from None
    tmp = Path(tmp_name)
    try:
        with os.fdopen(fd, "wb") as out:
            received, expected, digest = _copy(url, out, dest.name, progress)
            out.flush()
            os.fsync(out.fileno())
        if expected is not None and received != expected:
            raise DownloadError(
                f"{dest.name}: download from {url} was truncated "
                f"({received} of {expected} bytes received)"
            )
        if md5 is not None and digest != md5.lower():
            raise DownloadError(
                f"{dest.name}: checksum mismatch for {url} (md5 {digest}, expected {md5.lower()})"
            )
        if expect_zip:
            _check_zip(tmp, dest.name, url)
        os.replace(tmp, dest)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return dest


def _copy(url: str, out: IO[bytes], label: str, progress: bool) -> tuple[int, int | None, str]:
    """Stream ``url`` into ``out``; return (bytes received, Content-Length or None, md5 hex)."""
    digest = hashlib.md5(usedforsecurity=False)
    received = 0
    try:
        with urlopen(url) as response:
            length = _content_length(response)
            with tqdm(
                total=length,
                unit="B",
                unit_scale=True,
                unit_divisor=1024,
                desc=label,
                file=sys.stderr,
                disable=not progress,
                leave=False,
            ) as bar:
                while True:
                    chunk = response.read(_CHUNK)
                    if not chunk:
                        break
                    out.write(chunk)
                    digest.update(chunk)
                    received += len(chunk)
                    bar.update(len(chunk))
    except (OSError, HTTPException, ValueError) as err:
        raise DownloadError(f"{label}: download from {url} failed ({_reason(err)})") from None
    return received, length, digest.hexdigest()


def _content_length(response: Any) -> int | None:
    headers = getattr(response, "headers", None)
    value = headers.get("Content-Length") if headers is not None else None
    try:
        return int(value) if value is not None else None
    except ValueError:
        return None


def _check_zip(path: Path, label: str, url: str) -> None:
    try:
        with zipfile.ZipFile(path) as archive:
            archive.namelist()
    except (zipfile.BadZipFile, OSError) as err:
        raise DownloadError(f"{label}: download from {url} is not a valid zip ({err})") from None


def _reason(err: BaseException) -> str:
    reason = getattr(err, "reason", None) or str(err) or type(err).__name__
    return " ".join(str(reason).split())
