"""The SLA watcher: warns the assignee at 80% of a deadline and alerts supervisors and the group at breach.

Restart-safe because deadlines are data (columns on the ticket), and fire-once with any number of watcher
processes because each event is claimed with a conditional UPDATE of its `*_warned_at` / `*_breached_at`
column: only the process whose UPDATE changed the row writes the event and the alerts, in that same
transaction.
"""

from __future__ import annotations

import logging
from datetime import datetime

from handlers.context import AppContext
from handlers.notifications.periodic import PeriodicWorker
from handlers.tickets.common import departments
from handlers.tickets.notify import alert_department, alert_staff
from handlers.tickets.sla import warning_time
from storage.models import Ticket

log = logging.getLogger(__name__)


class SlaWatcher(PeriodicWorker):
    what = "SLA check"
    name = "sla-watcher"

    def __init__(self, ctx: AppContext, *, interval: float = 30.0) -> None:
        self.ctx, self.interval = ctx, interval

    async def run_once(self, now: datetime | None = None) -> int:
        """Check every open ticket once; returns how many warnings and breaches this call fired."""
        now = now or self.ctx.clock()
        ratio = self.ctx.config.tickets.sla_warning_ratio
        async with self.ctx.uow() as uow:
            depts = await departments(self.ctx, uow)
            candidates = await uow.tickets.sla_candidates(now, limit=5000)
        fired = 0
        for ticket in candidates:
            calendar = self.ctx.config.calendar_of(depts.by_id[ticket.department_id])
            for which, due, done, warned, breached in (
                ("first_response", ticket.first_response_due, ticket.first_response_at,
                 ticket.first_response_warned_at, ticket.first_response_breached_at),
                ("resolution", ticket.resolution_due, None, ticket.resolution_warned_at,
                 ticket.resolution_breached_at),
            ):
                if due is None or done is not None or breached is not None:
                    continue
                if now >= due:
                    fired += await self._fire(ticket, which, "breach", due, now)
                elif warned is None and now >= warning_time(calendar, ticket.created_at, due, ratio):
                    fired += await self._fire(ticket, which, "warning", due, now)
        return fired

    async def _fire(self, candidate: Ticket, which: str, what: str, due: datetime, now: datetime) -> int:
        column = f"{which}_{'breached' if what == 'breach' else 'warned'}_at"
        async with self.ctx.uow() as uow:
            if not await uow.tickets.mark_once(candidate.id, column, now):
                return 0  # another watcher did it
            if what == "breach":
                await uow.tickets.mark_once(candidate.id, f"{which}_warned_at", now)  # no warning after a breach
            ticket = await uow.tickets.get(candidate.id)
            if ticket is None or ticket.status not in ("new", "in_progress"):
                await uow.rollback()
                return 0
            depts = await departments(self.ctx, uow)
            kind = f"sla_{what}"
            extra = {"which": which, "due": due.isoformat()}
            uow.tickets.add_event(ticket.id, kind, "system", at=now, payload=extra)
            if what == "warning":
                if ticket.assignee_id is not None:
                    await alert_staff(uow, ticket, ticket.assignee_id, event=kind, kind=kind, extra=extra)
                else:
                    await alert_department(self.ctx, uow, depts, ticket, event=kind, kind=kind, extra=extra)
            else:
                if ticket.assignee_id is not None:
                    await alert_staff(uow, ticket, ticket.assignee_id, event=kind, kind=kind, extra=extra)
                await alert_department(self.ctx, uow, depts, ticket, event=kind, kind=kind, extra=extra,
                                       supervisors_too=True)
            await uow.commit()
        await self.ctx.wake_dispatcher()
        log.info("ticket %s: SLA %s %s", candidate.number, which, what)
        return 1
