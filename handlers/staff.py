"""Staff identity and duty: who is writing to the bot, and whether they take new tickets now."""

from __future__ import annotations

from handlers.context import AppContext
from handlers.dto import Actor, InvalidRequest, PermissionDenied, StaffProfile
from handlers.tickets.common import database_errors_as_unavailable
from storage.models import Staff


def staff_profile(staff: Staff) -> StaffProfile:
    return StaffProfile(staff_id=staff.id, name=staff.name, role=staff.role, department_id=staff.department_id,
                        department_code=staff.department.code, language=staff.language, on_duty=staff.on_duty,
                        telegram_id=staff.telegram_id)


@database_errors_as_unavailable
async def identify_staff(ctx: AppContext, telegram_id: int) -> StaffProfile | None:
    """The active staff member with this Telegram id, or None (then the person is treated as a client).

    Writing to the bot proves it is not blocked any more: alerts go to the person again (not the group).
    Asked for every update the bot gets, almost all from clients: a read-only look-up answers (one round trip
    on PostgreSQL instead of BEGIN, SELECT, ROLLBACK), and a write transaction opens only to clear the flag."""
    async with ctx.read() as reader:
        staff = await reader.staff.by_telegram_id(telegram_id)
        if staff is None:
            return None
        profile, unreachable = staff_profile(staff), staff.telegram_unreachable
    if unreachable:
        await mark_reachable(ctx, telegram_id)
    return profile


@database_errors_as_unavailable
async def mark_reachable(ctx: AppContext, telegram_id: int) -> None:
    """The staff member wrote to the bot, so it is not blocked: alerts go to them again, not to the group."""
    async with ctx.uow() as uow:
        staff = await uow.staff.by_telegram_id(telegram_id)
        if staff is not None and staff.telegram_unreachable:
            staff.telegram_unreachable = False
            await uow.commit()


@database_errors_as_unavailable
async def set_on_duty(ctx: AppContext, actor: Actor, on: bool, *, staff_id: int | None = None) -> StaffProfile:
    """Go on or off duty (routing gives new tickets only to staff on duty).

    Staff change their own duty; a supervisor may change it for their department, an admin for anyone.
    Writing to the bot again also proves the bot is not blocked any more, so alerts go to the person again.
    """
    if actor.kind != "staff" or actor.staff_id is None:
        raise PermissionDenied("staff only")
    async with ctx.uow() as uow:
        me = await uow.staff.get(actor.staff_id)
        if me is None or not me.is_active:
            raise PermissionDenied("not an active staff member")
        target = me if staff_id in (None, me.id) else await uow.staff.get(staff_id)
        if target is None or not target.is_active:
            raise InvalidRequest("no such staff member")
        if target.id != me.id and not (
            me.role == "admin" or (me.role == "supervisor" and target.department_id == me.department_id)
        ):
            raise PermissionDenied("cannot change another person's duty")
        target.on_duty = bool(on)
        if target.id == me.id:
            target.telegram_unreachable = False
        await uow.commit()
        return staff_profile(target)
