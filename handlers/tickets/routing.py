"""Who gets a new ticket: the personal manager, the least-loaded agent on duty, or the department queue."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from config.business import BusinessConfig
from handlers.context import AppContext
from handlers.dto import ClientProfile
from handlers.tickets.common import Departments, is_account_management
from storage.uow import UnitOfWork


@dataclass(frozen=True)
class Route:
    department_code: str
    assignee_id: int | None
    assignee_name: str | None
    reason: str  # personal_manager|least_loaded|queue


async def route_ticket(ctx: AppContext, uow: UnitOfWork, depts: Departments, topic: str,
                       client: ClientProfile | None, *, prefer_manager: bool = False) -> Route:
    config = ctx.config
    department_code = config.topics[topic].department
    if client is not None and client.manager_id is not None and wants_personal_manager(
            config, topic, client, prefer_manager=prefer_manager):
        manager = await uow.staff.get(client.manager_id)
        if manager is not None and manager.is_active and manager.on_duty:
            # The ticket follows the manager into their department: their supervisor and calendar apply.
            code = depts.by_id.get(manager.department_id, department_code)
            return Route(code, manager.id, manager.name, "personal_manager")
    return await least_loaded(ctx, uow, depts, department_code)


def wants_personal_manager(config: BusinessConfig, topic: str, client: ClientProfile | None, *,
                           prefer_manager: bool) -> bool:
    """Whether the client's personal manager (if any, and on duty) should get this ticket."""
    return client is not None and client.manager_id is not None and (
        prefer_manager or is_account_management(config, topic, client))


async def least_loaded(ctx: AppContext, uow: UnitOfWork, depts: Departments, department_code: str,
                       *, exclude: int | None = None) -> Route:
    """The on-duty agent or manager with the fewest open tickets, under the department's per-agent cap."""
    cap = ctx.config.department(department_code).max_open_per_agent
    candidates = await uow.tickets.on_duty_candidates(depts.id(department_code))
    return pick_least_loaded(department_code, candidates, cap, exclude=exclude)


def pick_least_loaded(department_code: str, candidates: Iterable[tuple[int, str, int]], cap: int,
                      *, exclude: int | None = None) -> Route:
    """Among (id, name, open tickets) candidates: the fewest open tickets under `cap`, the lowest id on a tie;
    the department queue when nobody qualifies."""
    eligible = [c for c in candidates if c[2] < cap and c[0] != exclude]
    if not eligible:
        return Route(department_code, None, None, "queue")
    staff_id, name, _load = min(eligible, key=lambda c: (c[2], c[0]))
    return Route(department_code, staff_id, name, "least_loaded")
