"""Periodic client notices that no event triggers: "your paid period ends in N days"."""

from __future__ import annotations

import asyncio
import logging

from handlers.context import AppContext
from handlers.subscriptions import check_service_end

log = logging.getLogger(__name__)


class SubscriptionsWorker:
    name = "subscriptions"

    def __init__(self, ctx: AppContext, interval: float = 3600.0) -> None:
        self.ctx = ctx
        self.interval = interval

    async def run_once(self) -> int:
        # Several worker processes may run: one check at a time is enough (notices are deduplicated anyway).
        async with self.ctx.kv.locks.hold("subscriptions:service_end", ttl=600) as acquired:
            if not acquired:
                return 0
            queued = await check_service_end(self.ctx)
        if queued:
            log.info("service end notices queued: %d", queued)
        return queued

    async def run(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            await self.run_once()
            try:
                await asyncio.wait_for(stop.wait(), self.interval)
            except TimeoutError:
                pass
