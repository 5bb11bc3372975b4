"""Who works in a department: the people a staff member may hand a ticket to (the Reassign button)."""

from __future__ import annotations

from handlers.context import AppContext
from handlers.dto import Actor, NotFound, PermissionDenied, StaffProfile
from handlers.staff_invites import staff_profile_of

MAX_LISTED = 30


async def department_staff(ctx: AppContext, actor: Actor, department_code: str) -> list[StaffProfile]:
    """Active staff of a department, on duty first. Staff only: clients never see the staff list."""
    if actor.kind != "staff" or actor.staff_id is None:
        raise PermissionDenied("only staff can list colleagues")
    async with ctx.uow() as uow:
        department = await uow.departments.by_code(department_code)
        if department is None:
            raise NotFound(f"department {department_code!r}")
        people = await uow.staff.in_department(department.id)
        profiles = [staff_profile_of(person) for person in people]
    profiles.sort(key=lambda p: (not p.on_duty, p.name))
    return profiles[:MAX_LISTED]
