"""The call log: one `Call` row and one `Interaction` (channel "ivr") per call, kept up to date per step.

Written by the IVR adapter itself because the call, its menu path and its telephony status are facts of
this channel; what a caller asks for goes through the use cases, which record their own interactions.
Every write is idempotent: a repeated webhook or a late status callback never duplicates or corrupts a row.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.exc import IntegrityError

from handlers.context import AppContext
from storage.batching import Batcher, Failure
from storage.models import Interaction, Staff
from storage.repositories.interactions import StartedCall

log = logging.getLogger(__name__)

FINAL_STATUSES = {"completed", "busy", "no-answer", "failed", "canceled"}
MAX_PATH_STEPS = 200


@dataclass(frozen=True)
class StaffPhone:
    staff_id: int
    name: str
    phone: str | None
    department_code: str


class GroupCommit:
    """Writes what concurrent requests add in shared transactions; each `add` returns once its item is
    committed (or raises). While one batch is being written the next one gathers, so under load many new
    calls cost one round of statements and one commit, and alone a call costs what it would anyway."""

    def __init__(self, write: Callable[[list[Any]], Awaitable[None]], max_batch: int = 200) -> None:
        self._write = write
        self._batches: Batcher[Any, None] = Batcher(self._write_batch, max_batch=max_batch, max_in_flight=1)

    async def add(self, item: Any) -> None:
        await self._batches.submit(item)

    async def _write_batch(self, items: list[Any]) -> list[Failure | None]:
        try:
            await self._write(items)
        except Exception:
            # One bad item (a duplicated call) must not fail the others: write them one by one.
            return [await self._write_one(item) for item in items]
        return [None] * len(items)

    async def _write_one(self, item: Any) -> Failure | None:
        try:
            await self._write([item])
        except IntegrityError:
            log.info("call log: %s already written", item)
        except Exception as exc:
            return Failure(exc)
        return None


class CallLog:
    def __init__(self, ctx: AppContext) -> None:
        self._ctx = ctx
        self._starts = GroupCommit(self._insert)

    async def start(self, sid: str, customer_id: int | None, from_number: str | None,
                    to_number: str | None, first_step: str) -> None:
        """Log a new call; returns once its rows are committed (concurrent starts share one commit)."""
        await self._starts.add(StartedCall(sid, customer_id, (from_number or "")[:32] or None,
                                           (to_number or "")[:32] or None, first_step, self._ctx.clock()))

    async def _insert(self, calls: list[StartedCall]) -> None:
        async with self._ctx.uow() as uow:
            await uow.calls.add_started(calls)
            await uow.commit()

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
