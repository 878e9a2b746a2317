"""``reclens serve`` start-up: bad ports and addresses, a port in use, the access token."""

from __future__ import annotations

import argparse
import socket
from pathlib import Path

import pytest

from app.cli import main
from app.cli_serve import access_token


@pytest.mark.parametrize(
    "args",
    [
        ["--port", "-1"],
        ["--port", "70000"],
        ["--port", "0x10"],
        ["--address", "999.1.1.1"],
        ["--address", "evil.example"],
        ["--address", "10.255.255.1"],  # a valid address that is not this machine's
    ],
)
def test_bad_port_or_address_is_one_line_exit_2(
    args: list[str], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exc:
        code = main(["serve", "--runs", str(tmp_path), *args])
        raise SystemExit(code)
    err = capsys.readouterr().err
    assert exc.value.code == 2 and err.count("\n") == 1 and "Traceback" not in err
    assert "--port" in err or "--address" in err


def test_port_in_use_is_one_line_exit_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        code = main(["serve", "--runs", str(tmp_path), "--port", str(port)])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1 and "already in use" in err


def test_token_only_beyond_loopback(capsys: pytest.CaptureFixture[str]) -> None:
    args = argparse.Namespace(address="127.0.0.1", token=None)
    assert access_token(args) is None and capsys.readouterr().err == ""
    args = argparse.Namespace(address="0.0.0.0", token=None)
    first, second = access_token(args), access_token(args)
    assert first and second and first != second and len(first) >= 20
    assert "warning" in capsys.readouterr().err
    args = argparse.Namespace(address="0.0.0.0", token="given")
    assert access_token(args) == "given"
