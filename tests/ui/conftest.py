"""Browser-test fixtures: a small synthetic runs folder, a dashboard server subprocess on a free
port, and pytest-playwright launched with Debian's Chromium (never a downloaded browser)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from ui_support import CHROMIUM, CHROMIUM_ARGS, Server, build_runs, start_server, stop_server


@pytest.fixture(scope="session")
def ui_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    runs = build_runs(tmp_path_factory.getbasetemp() / "reclens_ui")
    server = start_server(runs)
    yield server
    stop_server(server)


@pytest.fixture(scope="session")
def browser_type_launch_args(browser_type_launch_args: dict) -> dict:
    """Launch Debian's Chromium with flags that keep it off the network."""
    if CHROMIUM is None:
        pytest.skip("chromium is not installed")
    return {**browser_type_launch_args, "executable_path": CHROMIUM, "args": CHROMIUM_ARGS}
