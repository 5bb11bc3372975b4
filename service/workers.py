"""Background workers (notification dispatcher, SLA watcher, reminders) and their supervisor.

A worker is an object with a `name` and `async run(stop: asyncio.Event)`. The supervisor restarts a worker
that crashes, with growing pauses, so a persistent fault becomes a slow retry with logged errors, not a
crash loop; it never takes the process down.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Protocol

log = logging.getLogger(__name__)


class Worker(Protocol):
    name: str

    async def run(self, stop: asyncio.Event) -> None: ...


async def supervise(worker: Worker, stop: asyncio.Event, *, min_delay: float = 1.0, max_delay: float = 60.0,
                    healthy_after: float | None = None) -> None:
    """Run `worker` until `stop`; restart it after a crash with pauses doubling from `min_delay` to `max_delay`.

    The pause goes back to `min_delay` once a run has lasted `healthy_after` seconds (default: `max_delay`):
    without that, each crash of a past outage would still lengthen the pause before the next restart, and
    after a few outages a worker would stay down a full minute after a single transient error.
    """
    healthy_after = max_delay if healthy_after is None else healthy_after
    loop = asyncio.get_running_loop()
    delay = min_delay
    while not stop.is_set():
        started = loop.time()
        try:
            await worker.run(stop)
            delay = min_delay
            if not stop.is_set():
                log.warning("worker %s returned early; restarting", worker.name)
        except asyncio.CancelledError:
            raise
        except Exception:
            if loop.time() - started >= healthy_after:
                delay = min_delay
            log.exception("worker %s crashed; restarting in %.0fs", worker.name, delay)
            try:
                await asyncio.wait_for(stop.wait(), delay)
            except TimeoutError:
                pass
            delay = min(delay * 2, max_delay)


class WorkerGroup:
    def __init__(self, workers: list[Worker]) -> None:
        self.workers = workers
        self.stop = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []

    def start(self) -> None:
        self._tasks = [asyncio.create_task(supervise(w, self.stop), name=f"worker:{w.name}") for w in self.workers]

    async def shutdown(self, timeout: float = 10.0) -> None:
        self.stop.set()
        if not self._tasks:
            return
        done, pending = await asyncio.wait(self._tasks, timeout=timeout)
        for task in pending:
            task.cancel()
        await asyncio.gather(*pending, return_exceptions=True)
