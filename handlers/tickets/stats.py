"""Staff statistics for a period (supervisors and administrators): load, SLA, response times, CSAT."""

from __future__ import annotations

from datetime import datetime
from statistics import median

from sqlalchemy import select

from handlers.context import AppContext
from handlers.dto import Actor, CountRow, InvalidRequest, PermissionDenied, StaffStats
from handlers.tickets.common import database_errors_as_unavailable, department_name, departments
from handlers.tickets.permissions import acting_staff
from storage.models import Staff


@database_errors_as_unavailable
async def staff_statistics(ctx: AppContext, actor: Actor, *, since: datetime, until: datetime,
                           language: str | None = None) -> StaffStats:
    """Open tickets now (per department and assignee), and for tickets created in [since, until): SLA
    breaches, median first response and resolution (wall-clock), and the CSAT average."""
    if since.tzinfo is None or until.tzinfo is None or until <= since:
        raise InvalidRequest("period must be aware datetimes with since < until")
    async with ctx.uow() as uow:
        staff = await acting_staff(uow, actor)
        if staff.role not in ("supervisor", "admin"):
            raise PermissionDenied("statistics are for supervisors")
        lang = language or staff.language
        depts = await departments(ctx, uow)
        open_counts = await uow.tickets.open_counts()
        created = await uow.tickets.created_between(since, until)
        resolved_in_period = await uow.tickets.resolved_between(since, until)
        names = dict((await uow.session.execute(select(Staff.id, Staff.name))).all())
    by_department: dict[int, int] = {}
    by_assignee: dict[int, int] = {}
    unassigned = 0
    for department_id, assignee_id, count in open_counts:
        by_department[department_id] = by_department.get(department_id, 0) + count
        if assignee_id is None:
            unassigned += count
        else:
            by_assignee[assignee_id] = by_assignee.get(assignee_id, 0) + count
    first_times = [(t.first_response_at - t.created_at).total_seconds() for t in created if t.first_response_at]
    resolution_times = [(t.resolved_at - t.created_at).total_seconds() for t in resolved_in_period
                        if t.resolved_at]
    rated = [t.csat_score for t in resolved_in_period if t.csat_score]
    return StaffStats(
        since=since, until=until, created=len(created), resolved=len(resolved_in_period),
        open_total=sum(by_department.values()),
        open_by_department=tuple(sorted(
            (CountRow(depts.by_id.get(d, str(d)), department_name(ctx.config, depts.by_id.get(d, ""), lang), c)
             for d, c in by_department.items()), key=lambda r: (-r.count, r.key))),
        open_by_assignee=tuple(sorted(
            (CountRow(str(s), str(names.get(s, s)), c) for s, c in by_assignee.items()),
            key=lambda r: (-r.count, r.name))),
        unassigned_open=unassigned,
        first_response_breaches=sum(1 for t in created if t.first_response_breached_at),
        resolution_breaches=sum(1 for t in created if t.resolution_breached_at),
        first_response_median_seconds=median(first_times) if first_times else None,
        resolution_median_seconds=median(resolution_times) if resolution_times else None,
        csat_average=round(sum(rated) / len(rated), 2) if rated else None,
        csat_count=len(rated),
    )
