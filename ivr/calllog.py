"""The call log: one `Call` row and one `Interaction` (channel "ivr") per call, kept up to date per step.

Written by the IVR adapter itself because the call, its menu path and its telephony status are facts of
this channel; what a caller asks for goes through the use cases, which record their own interactions.
Every write is idempotent: a repeated webhook or a late status callback never duplicates or corrupts a row.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from sqlalchemy import insert, select, update
from sqlalchemy.exc import IntegrityError

from handlers.context import AppContext
from storage.models import Call, Interaction, Staff

log = logging.getLogger(__name__)

FINAL_STATUSES = {"completed", "busy", "no-answer", "failed", "canceled"}
MAX_PATH_STEPS = 200


@dataclass(frozen=True)
class StaffPhone:
    staff_id: int
    name: str
    phone: str | None
    department_code: str


class CallLog:
    def __init__(self, ctx: AppContext) -> None:
        self._ctx = ctx

    async def start(self, sid: str, customer_id: int | None, from_number: str | None,
                    to_number: str | None, first_step: str) -> None:
        now = self._ctx.clock()
        async with self._ctx.uow() as uow:
            session = uow.session
            try:
                interaction_id = await session.scalar(
                    insert(Interaction).values(channel="ivr", customer_id=customer_id,
                                               sender=(from_number or "")[:100] or None,
                                               external_id=f"ivr:{sid}", text="", outcome="call",
                                               created_at=now).returning(Interaction.id))
                await session.execute(
                    insert(Call).values(call_sid=sid, customer_id=customer_id, interaction_id=interaction_id,
                                        from_number=(from_number or None) and from_number[:32],
                                        to_number=(to_number or None) and to_number[:32],
                                        status="in-progress", path={"steps": [first_step]}, started_at=now))
                await uow.commit()
            except IntegrityError:
                # The same call started twice (a duplicated first request raced past the state check).
                log.info("call %s already logged", sid)

    async def step(self, sid: str, node: str | None, *, outcome: str | None = None,
                   customer_id: int | None = None, recording_url: str | None = None) -> None:
        if node is None and outcome is None and customer_id is None and recording_url is None:
            return
        async with self._ctx.uow() as uow:
            call = await uow.calls.by_sid(sid)
            if call is None:
                return
            if node is not None:
                steps = list((call.path or {}).get("steps", []))
                if len(steps) < MAX_PATH_STEPS:
                    call.path = {**(call.path or {}), "steps": [*steps, node]}
            if outcome is not None:
                call.outcome = outcome
            if recording_url is not None:
                call.recording_url = recording_url[:1000]
            if customer_id is not None and call.customer_id is None:
                call.customer_id = customer_id
                if call.interaction_id is not None:
                    await uow.session.execute(update(Interaction).where(Interaction.id == call.interaction_id)
                                              .values(customer_id=customer_id))
            await uow.commit()

    async def close(self, sid: str, status: str, duration: int | None) -> bool:
        """Apply a status callback; False when the call is unknown (nothing is created for it)."""
        async with self._ctx.uow() as uow:
            call = await uow.calls.by_sid(sid)
            if call is None:
                return False
            call.status = status[:20]
            if status in FINAL_STATUSES:
                if call.ended_at is None:
                    call.ended_at = self._ctx.clock()
                if duration is not None:
                    call.duration_seconds = duration
                if call.outcome is None:
                    call.outcome = "abandoned" if status == "completed" else status
                if call.interaction_id is not None:
                    await uow.session.execute(update(Interaction).where(Interaction.id == call.interaction_id)
                                              .values(outcome=f"call:{call.outcome}"[:40]))
            await uow.commit()
            return True

    async def staff_phone(self, staff_id: int) -> StaffPhone | None:
        async with self._ctx.uow() as uow:
            staff = await uow.session.scalar(select(Staff).where(Staff.id == staff_id, Staff.is_active.is_(True)))
            if staff is None:
                return None
            return StaffPhone(staff.id, staff.name, staff.phone, staff.department.code)
