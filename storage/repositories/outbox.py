"""The notification outbox and the alert-message index.

Claiming is one statement (`UPDATE … WHERE id IN (SELECT … FOR UPDATE SKIP LOCKED) RETURNING …` on
PostgreSQL; the same without the row-lock clause on SQLite, whose single writer makes the statement atomic):
rows come back leased until `locked_until`, and no other dispatcher process can claim them in that time.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import func, or_, select, update

from storage.models import AlertMessage, Notification
from storage.repositories.base import Repository


class OutboxRepository(Repository):
    def _dialect(self) -> str:
        return self.session.bind.dialect.name  # type: ignore[union-attr]

    def enqueue(self, **fields: Any) -> Notification:
        row = Notification(**fields)
        self.session.add(row)
        return row

    async def get(self, notification_id: int) -> Notification | None:
        return await self.session.get(Notification, notification_id)

    async def claim(self, now: datetime, lease_until: datetime, limit: int) -> list[Notification]:
        due = (
            select(Notification.id)
            .where(Notification.status == "pending", Notification.next_attempt_at <= now,
                   or_(Notification.locked_until.is_(None), Notification.locked_until < now))
            .order_by(Notification.next_attempt_at, Notification.id)
            .limit(limit)
        )
        if self._dialect() == "postgresql":
            due = due.with_for_update(skip_locked=True)
        stmt = (
            update(Notification)
            .where(Notification.id.in_(due.scalar_subquery()))
            .values(locked_until=lease_until)
            .returning(Notification)
            .execution_options(synchronize_session=False)
        )
        rows = list((await self.session.scalars(stmt)).all())
        rows.sort(key=lambda n: n.id)
        return rows

    async def renew_leases(self, ids: list[int], held_lease: datetime, lease_until: datetime) -> list[Notification]:
        """Extend the lease on rows still pending under exactly `held_lease` (the value this dispatcher
        wrote when it claimed them): a compare-and-set, so a row another dispatcher claimed since, or one
        already finished, is left alone. Returns the rows renewed."""
        stmt = (
            update(Notification)
            .where(Notification.id.in_(ids), Notification.status == "pending",
                   Notification.locked_until == held_lease)
            .values(locked_until=lease_until)
            .returning(Notification)
            .execution_options(synchronize_session=False)
        )
        return list((await self.session.scalars(stmt)).all())

    async def pending_count(self) -> int:
        return int(await self.session.scalar(
            select(func.count()).select_from(Notification).where(Notification.status == "pending")) or 0)

    async def _set(self, notification_id: int, **values: Any) -> None:
        await self.session.execute(
            update(Notification).where(Notification.id == notification_id).values(**values)
            .execution_options(synchronize_session=False)
        )

    async def mark_sent(self, notification_id: int, at: datetime, message_id: int | None, chat_id: int) -> None:
        await self._set(notification_id, status="sent", sent_at=at, telegram_message_id=message_id,
                        chat_id=chat_id, locked_until=None, attempts=Notification.attempts + 1, last_error=None)

    async def reschedule(self, notification_id: int, at: datetime, error: str | None, *,
                         count_attempt: bool = True, **changes: Any) -> None:
        values: dict[str, Any] = {"next_attempt_at": at, "locked_until": None, "last_error": error, **changes}
        if count_attempt:
            values["attempts"] = Notification.attempts + 1
        await self._set(notification_id, **values)

    async def mark_dead(self, notification_id: int, reason: str) -> None:
        await self._set(notification_id, status="dead", locked_until=None, last_error=reason[:2000],
                        attempts=Notification.attempts + 1)

    # ------------------------------------------------------------------ alert messages

    async def remember_alert(self, chat_id: int, message_id: int, ticket_id: int) -> None:
        exists = await self.session.scalar(
            select(AlertMessage.id).where(AlertMessage.chat_id == chat_id, AlertMessage.message_id == message_id))
        if exists is None:
            self.session.add(AlertMessage(chat_id=chat_id, message_id=message_id, ticket_id=ticket_id))

    async def ticket_for_alert(self, chat_id: int, message_id: int) -> int | None:
        return await self.session.scalar(
            select(AlertMessage.ticket_id).where(AlertMessage.chat_id == chat_id, AlertMessage.message_id == message_id)
        )
