"""A worker that does `run_once()` every `interval` seconds until asked to stop."""

from __future__ import annotations

import asyncio
import logging

log = logging.getLogger(__name__)


class PeriodicWorker:
    name = "periodic"
    what = "periodic check"  # for the log line when a pass fails
    interval: float

    async def run_once(self) -> int:
        raise NotImplementedError

    async def run(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            try:
                await self.run_once()
            except Exception:
                # A failed pass (database down...) is logged and tried again on the next tick.
                log.exception("%s failed; trying again in %.0fs", self.what, self.interval)
            try:
                await asyncio.wait_for(stop.wait(), self.interval)
            except TimeoutError:
                pass
