"""Is a department open now, and when does it open next (the IVR decides transfers with these)."""

from __future__ import annotations

from datetime import datetime

from handlers.context import AppContext
from handlers.dto import InvalidRequest
from handlers.tickets.sla import is_open, next_opening_time


def _calendar(ctx: AppContext, department_code: str):  # type: ignore[no-untyped-def]
    try:
        return ctx.config.calendar_of(department_code)
    except KeyError:
        raise InvalidRequest(f"unknown department {department_code!r}") from None


async def department_is_open(ctx: AppContext, department_code: str, at: datetime) -> bool:
    return is_open(_calendar(ctx, department_code), at)


async def next_opening(ctx: AppContext, department_code: str, at: datetime) -> datetime:
    """`at` when the department is open then, otherwise when it next opens (aware UTC)."""
    return next_opening_time(_calendar(ctx, department_code), at)
