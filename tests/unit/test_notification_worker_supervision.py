"""The supervisor that restarts the notification dispatcher (and the other workers) after a crash: its pause
grows while crashes come in a row, and goes back to the shortest once the worker has run healthily, so the
crashes of past outages do not keep a worker down for a minute after the next transient error."""

from __future__ import annotations

import asyncio

import pytest

from service import workers as workers_module
from service.workers import supervise


class ScriptedWorker:
    """Each run lasts the next of `durations` seconds and then crashes; stops the group after the last."""

    name = "scripted"

    def __init__(self, durations: list[float], stop: asyncio.Event) -> None:
        self.durations, self.stop, self.runs = list(durations), stop, 0

    async def run(self, stop: asyncio.Event) -> None:
        duration = self.durations[self.runs]
        self.runs += 1
        await asyncio.sleep(duration)
        if self.runs == len(self.durations):
            self.stop.set()
            return
        raise ConnectionRefusedError(111, "database unreachable")


@pytest.fixture
def pauses(monkeypatch: pytest.MonkeyPatch) -> list[float]:
    """The restart pauses the supervisor chose (it waits for them with asyncio.wait_for)."""
    chosen: list[float] = []
    original = asyncio.wait_for

    async def recording_wait_for(awaitable, timeout):  # type: ignore[no-untyped-def]
        chosen.append(timeout)
        return await original(awaitable, timeout)

    monkeypatch.setattr(workers_module.asyncio, "wait_for", recording_wait_for)
    return chosen


async def test_pause_grows_while_crashing_and_resets_after_a_healthy_run(pauses: list[float]) -> None:
    stop = asyncio.Event()
    # Four quick crashes (an outage), a run of 0.3 s (healthy: longer than healthy_after), one more crash.
    worker = ScriptedWorker([0, 0, 0, 0, 0.3, 0, 0], stop)
    async with asyncio.timeout(10):  # not wait_for: that one is being recorded
        await supervise(worker, stop, min_delay=0.01, max_delay=0.05, healthy_after=0.2)
    assert worker.runs == 7
    assert pauses == pytest.approx([0.01, 0.02, 0.04, 0.05, 0.01, 0.02])


async def test_without_a_healthy_run_the_pause_keeps_its_cap(pauses: list[float]) -> None:
    stop = asyncio.Event()
    worker = ScriptedWorker([0, 0, 0, 0.05, 0], stop)
    async with asyncio.timeout(10):
        await supervise(worker, stop, min_delay=0.01, max_delay=0.04, healthy_after=5)
    assert pauses == pytest.approx([0.01, 0.02, 0.04, 0.04])
