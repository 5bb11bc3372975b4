"""The call log: one `Call` row and one `Interaction` (channel "ivr") per call, kept up to date per step.

Written by the IVR adapter itself because the call, its menu path and its telephony status are facts of
this channel; what a caller asks for goes through the use cases, which record their own interactions.
Every write is idempotent: a repeated webhook or a late status callback never duplicates or corrupts a row.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

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


@dataclass(frozen=True)
class _NewCall:
    sid: str
    customer_id: int | None
    from_number: str | None
    to_number: str | None
    first_step: str
    at: datetime


class GroupCommit:
    """Writes what concurrent requests add in shared transactions; each `add` returns once its item is
    committed (or raises). While one batch is being written the next one gathers, so under load many new
    calls cost one round of statements and one commit, and alone a call costs what it would anyway."""

    def __init__(self, write: Callable[[list[Any]], Awaitable[None]], max_batch: int = 200) -> None:
        self._write = write
        self._max = max_batch
        self._pending: list[tuple[Any, asyncio.Future[None]]] = []
        self._task: asyncio.Task[None] | None = None

    async def add(self, item: Any) -> None:
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._pending.append((item, future))
        if self._task is None or self._task.done():
            self._task = asyncio.create_task(self._drain())
        await future

    async def _drain(self) -> None:
        while self._pending:
            batch, self._pending = self._pending[: self._max], self._pending[self._max:]
            try:
                await self._write([item for item, _ in batch])
            except Exception:
                # One bad item (a duplicated call) must not fail the others: write them one by one.
                for item, future in batch:
                    await self._write_one(item, future)
                continue
            for _, future in batch:
                if not future.done():
                    future.set_result(None)

    async def _write_one(self, item: Any, future: asyncio.Future[None]) -> None:
        try:
            await self._write([item])
        except IntegrityError:
            log.info("call log: %s already written", item)
            if not future.done():
                future.set_result(None)
        except Exception as exc:
            if not future.done():
                future.set_exception(exc)
        else:
            if not future.done():
                future.set_result(None)


class CallLog:
    def __init__(self, ctx: AppContext) -> None:
        self._ctx = ctx
        self._starts = GroupCommit(self._insert)

    async def start(self, sid: str, customer_id: int | None, from_number: str | None,
                    to_number: str | None, first_step: str) -> None:
        """Log a new call; returns once its rows are committed (concurrent starts share one commit)."""
        await self._starts.add(_NewCall(sid, customer_id, (from_number or "")[:32] or None,
                                        (to_number or "")[:32] or None, first_step, self._ctx.clock()))

    async def _insert(self, calls: list[_NewCall]) -> None:
        async with self._ctx.uow() as uow:
            session = uow.session
            rows = await session.execute(
                insert(Interaction).returning(Interaction.id, Interaction.external_id, sort_by_parameter_order=True),
                [{"channel": "ivr", "customer_id": c.customer_id, "sender": c.from_number,
                  "external_id": f"ivr:{c.sid}", "text": "", "outcome": "call", "created_at": c.at} for c in calls])
            ids = {external_id: id_ for id_, external_id in rows}
            await session.execute(insert(Call), [
                {"call_sid": c.sid, "customer_id": c.customer_id, "interaction_id": ids[f"ivr:{c.sid}"],
                 "from_number": c.from_number, "to_number": c.to_number, "status": "in-progress",
                 "path": {"steps": [c.first_step]}, "started_at": c.at} for c in calls])
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
