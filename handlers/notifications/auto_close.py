"""Closes resolved tickets after the configured quiet time (`tickets.auto_close_after`).

A client's message reopens a resolved ticket before that; once closed, a new message makes a new ticket.
The close is a conditional UPDATE (still resolved, still old enough), so concurrent workers close once.
"""

from __future__ import annotations

import logging
from datetime import datetime

from handlers.context import AppContext
from handlers.notifications.periodic import PeriodicWorker

log = logging.getLogger(__name__)


class AutoCloser(PeriodicWorker):
    what = "auto-close"
    name = "ticket-auto-close"

    def __init__(self, ctx: AppContext, *, interval: float = 60.0) -> None:
        self.ctx, self.interval = ctx, interval

    async def run_once(self, now: datetime | None = None) -> int:
        now = now or self.ctx.clock()
        cutoff = now - self.ctx.config.tickets.auto_close_after
        closed = 0
        async with self.ctx.uow() as uow:
            ids = await uow.tickets.due_for_auto_close(cutoff)
        for ticket_id in ids:
            async with self.ctx.uow() as uow:
                if await uow.tickets.close_if_resolved(ticket_id, cutoff, now):
                    uow.tickets.add_event(ticket_id, "closed", "system", at=now, payload={"reason": "auto"})
                    await uow.commit()
                    closed += 1
        if closed:
            log.info("auto-closed %s resolved tickets", closed)
        return closed
