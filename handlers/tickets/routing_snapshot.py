"""Routing a batch of new tickets from one read of the staff (see handlers.tickets.group_open).

The decisions are those of `route_ticket` (personal manager, else the least-loaded agent on duty under the
cap, else the queue) and the alert fallback of `notify.department_staff_fallback` (the department's on-duty
staff, else its supervisors, else the administrators), taken from a snapshot instead of a query per ticket.
Each assignment is counted as it is made, so the next ticket of the batch sees it: a batch routes exactly as
the same tickets opened one after another would.
"""

from __future__ import annotations

from collections.abc import Sequence

from config.business import BusinessConfig
from handlers.dto import ClientProfile
from handlers.tickets.common import Departments
from handlers.tickets.routing import Route, pick_least_loaded, wants_personal_manager
from storage.repositories.ticket_batch import StaffRow


class SnapshotRouter:
    def __init__(self, config: BusinessConfig, depts: Departments, staff: Sequence[StaffRow]) -> None:
        self._config = config
        self._depts = depts
        self._staff = sorted(staff, key=lambda s: s.id)
        self._by_id = {s.id: s for s in self._staff}
        # Open tickets per routing candidate, raised by every assignment this batch makes.
        self._load = {s.id: s.load for s in self._staff if s.load is not None}

    def route(self, topic: str, client: ClientProfile | None, *, prefer_manager: bool = False) -> Route:
        department_code = self._config.topics[topic].department
        department_id = self._depts.id(department_code)
        if client is not None and client.manager_id is not None and wants_personal_manager(
                self._config, topic, client, prefer_manager=prefer_manager):
            # Only active staff are in the snapshot: a missing manager is an inactive or deleted one.
            manager = self._by_id.get(client.manager_id)
            if manager is not None and manager.on_duty:
                code = self._depts.by_id.get(manager.department_id, department_code)
                return self._count(Route(code, manager.id, manager.name, "personal_manager"))
        cap = self._config.department(department_code).max_open_per_agent
        candidates = [(s.id, s.name, self._load[s.id]) for s in self._staff
                      if s.department_id == department_id and s.id in self._load]
        return self._count(pick_least_loaded(department_code, candidates, cap))

    def _count(self, route: Route) -> Route:
        if route.assignee_id is not None and route.assignee_id in self._load:
            self._load[route.assignee_id] += 1
        return route

    def alert_fallback(self, department_id: int) -> list[int]:
        """Who hears of a queued ticket of a department without a group chat (see the module docstring)."""
        on_duty = [s.id for s in self._staff if s.department_id == department_id and s.on_duty]
        if on_duty:
            return on_duty
        supervisors = [s.id for s in self._staff if s.department_id == department_id and s.role == "supervisor"]
        if supervisors:
            return supervisors
        return [s.id for s in self._staff if s.role == "admin"]
