"""The thread governor: threads follow the cores other processes leave free, restored after."""

from __future__ import annotations

import pytest
import torch

from data.errors import ReclensError
from engine import device as dev
from engine.device import ThreadGovernor


class Clock:
    """Simulated /proc/stat and process times: ``others`` cores busy elsewhere, ``own`` here."""

    def __init__(self, others: float, own: float) -> None:
        self.others, self.own, self.t = others, own, 0.0

    def advance(self, seconds: float) -> None:
        self.t += seconds

    def monotonic(self) -> float:
        return self.t

    def busy(self) -> float:
        return (self.others + self.own) * self.t

    def own_seconds(self) -> float:
        return self.own * self.t


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> Clock:
    c = Clock(others=0.0, own=2.0)
    monkeypatch.setattr(dev, "_busy_seconds", c.busy)
    monkeypatch.setattr(dev, "_own_seconds", c.own_seconds)
    monkeypatch.setattr(dev.time, "monotonic", c.monotonic)
    monkeypatch.setattr(dev.time, "sleep", c.advance)
    monkeypatch.setattr(dev, "usable_cores", lambda: 2)
    monkeypatch.delenv(dev.THREADS_ENV, raising=False)
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    yield c
    torch.set_num_threads(before)


def test_threads_follow_the_free_cores_and_are_restored(clock: Clock) -> None:
    with ThreadGovernor(torch.device("cpu"), recheck_s=0.5) as governor:
        assert torch.get_num_threads() == 2  # quiet machine: every thread
        clock.others, clock.own = 1.0, 1.0  # another program takes a core
        clock.advance(0.2)
        governor.tick()  # too soon: no re-check
        assert torch.get_num_threads() == 2
        clock.advance(0.4)
        governor.tick()
        assert torch.get_num_threads() == 1
        clock.others, clock.own = 0.0, 1.0  # it stops
        clock.advance(0.6)
        governor.tick()
        assert torch.get_num_threads() == 2
    assert governor.choices == [2, 1, 2]
    assert torch.get_num_threads() == 2


def test_never_more_threads_than_at_the_start(clock: Clock) -> None:
    torch.set_num_threads(1)
    with ThreadGovernor(torch.device("cpu")) as governor:
        assert torch.get_num_threads() == 1
    assert governor.choices == [1]


def test_fixed_threads_and_bad_values(clock: Clock, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(dev.THREADS_ENV, "1")
    with ThreadGovernor(torch.device("cpu")) as governor:
        assert torch.get_num_threads() == 1
        clock.advance(1.0)
        governor.tick()
        assert governor.choices == []
    assert torch.get_num_threads() == 2
    monkeypatch.setenv(dev.THREADS_ENV, "many")
    with pytest.raises(ReclensError, match="RECLENS_THREADS"):
        ThreadGovernor(torch.device("cpu"))
