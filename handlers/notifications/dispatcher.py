"""The notification dispatcher: delivers outbox rows to Telegram (or e-mail), at least once, never twice on
purpose, within Telegram's limits.

How it stays correct with several processes:
- Claiming is one statement that leases due rows (`locked_until`); PostgreSQL adds `FOR UPDATE SKIP LOCKED`,
  SQLite's single writer makes the statement atomic. A row is worked on by one dispatcher at a time.
- After Telegram accepts a message the dispatcher writes a "sent" marker for the outbox id to `ctx.kv`
  (Redis) and then marks the row sent in the database. A process that dies between the two leaves the row
  leased; when the lease runs out another dispatcher claims it, finds the marker and only marks it sent.
  The remaining window — death between Telegram's answer and the marker write (microseconds), or any crash
  when Redis is not configured (the marker is in-process then) — can repeat a message: delivery is
  at-least-once, duplicates are limited to that window.
- A database or Redis outage never stalls alerts past the outage: the loop retries on its own within
  seconds (it does not crash into the supervisor's growing pauses), and rows this dispatcher had leased but
  could not finish (the database went away mid-batch) are taken back by this same dispatcher as soon as the
  database answers, instead of waiting out their lease. Taking back is a compare-and-set on the lease value we
  wrote, so a row someone else claimed meanwhile is left alone, and the "sent" marker check still runs first.
- 429: the row waits exactly `retry_after` (not counted as a failed attempt) and nobody sends to that chat
  before then; 5xx/timeouts: exponential backoff; 403 / chat gone: a staff member is marked unreachable and
  the alert goes to the department group (or, with no group, to colleagues on duty / supervisors); a client
  who blocked the bot gets the e-mail copy when there is one, else the row is dead with the reason.
"""

from __future__ import annotations

import asyncio
import html
import logging
import random
import re
import time
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import select

from handlers.context import OUTBOX_CHANNEL, AppContext
from handlers.notifications.limits import DeliveryPacer, TelegramLimits
from handlers.ports import (
    Button,
    DeliveryError,
    PermanentFailure,
    RecipientUnreachable,
    RetryAfter,
    SentMessage,
    TemporaryFailure,
)
from handlers.tickets.card import render_ticket_alert
from handlers.tickets.notify import department_staff_fallback
from storage.models import Customer, Notification, Staff

log = logging.getLogger(__name__)
TELEGRAM_LIMIT = 4096
MAX_ATTEMPTS = 25
MAX_BACKOFF = 300.0
SENT_MARKER_TTL = 7 * 24 * 3600
MAX_REROUTES = 3
# After a failed pass (database/Redis unreachable) the loop tries again after 0.5 s, doubling up to this cap:
# short, so recovery is noticed within seconds, not after minutes of supervisor back-off.
MAX_LOOP_RETRY = 5.0
# A row whose delivery raised is retried by us on the next pass, then after 1 s, doubling up to this cap (a
# row that hits a bug every time must not spin; an outage-hit row goes again promptly).
MAX_HELD_RETRY = 60.0
ERROR_LOG_INTERVAL = 30.0
_TAG = re.compile(r"<[^>]+>")


@dataclass
class Target:
    """Where one row goes now."""

    chat_id: int | None = None
    language: str = "ru"
    email: dict[str, Any] | None = None  # {"email", "subject", "text", "attachments"}
    reroute_reason: str | None = None  # deliver to the fallback instead (staff without Telegram...)
    unreachable_staff_id: int | None = None
    dead_reason: str | None = None


@dataclass
class _Held:
    """A row still leased to this dispatcher that it could not finish; it takes the row back itself."""

    lease: datetime  # the locked_until value we wrote: our proof of ownership for the compare-and-set
    failures: int = 0  # consecutive unexpected errors on this row
    retry_at: float = 0.0  # time.monotonic()


class NotificationDispatcher:
    name = "notification-dispatcher"

    def __init__(self, ctx: AppContext, *, batch_size: int = 60, lease: float = 90.0, poll_interval: float = 1.0,
                 concurrency: int = 32, limits: TelegramLimits = TelegramLimits(), chat_wait: float = 4.0) -> None:
        self.ctx = ctx
        self.batch_size, self.lease, self.poll_interval = batch_size, lease, poll_interval
        self.pacer = DeliveryPacer(ctx.kv, limits)
        self.chat_wait = chat_wait
        self._slots = asyncio.Semaphore(concurrency)
        self._warned_no_sender = False
        self._held: dict[int, _Held] = {}
        self._last_error_log = float("-inf")
        self._answered_at = 0.0  # when the database last answered a claim (for the recovery log line)

    # ------------------------------------------------------------------ worker loop

    async def run(self, stop: asyncio.Event) -> None:
        wake = asyncio.Event()
        listener = asyncio.create_task(self._listen(wake), name="outbox-wake")
        try:
            retry = 0.5
            failing_since: float | None = None
            while not stop.is_set():
                handled = 0
                if self.ctx.sender is None:
                    if not self._warned_no_sender:
                        log.warning("no message sender (BOT_TOKEN unset): notifications stay pending")
                        self._warned_no_sender = True
                else:
                    try:
                        handled = await self.run_once()
                    except Exception as exc:
                        # Typically the database is unreachable. Crashing would hand us to the supervisor, whose
                        # pauses grow with every crash of an outage (1, 2, 4, 8 s...); retrying here with a short
                        # cap picks the work up within seconds of recovery.
                        failing_since = failing_since or time.monotonic()
                        self._log_error("notification pass failed, retrying in %.1fs: %r", retry, exc)
                        await _wait_any(stop, asyncio.Event(), retry)
                        retry = min(retry * 2, MAX_LOOP_RETRY)
                        continue
                    if failing_since is not None:
                        log.warning("notification dispatcher recovered: storage answered again %.1fs after the "
                                    "first failure", self._answered_at - failing_since)
                        failing_since, retry = None, 0.5
                if handled >= self.batch_size or (self.ctx.sender is not None and self._held_due()):
                    continue  # more may be waiting: no pause
                wake.clear()
                await _wait_any(stop, wake, self._next_pause())
        finally:
            listener.cancel()
            await asyncio.gather(listener, return_exceptions=True)

    async def _listen(self, wake: asyncio.Event) -> None:
        while True:
            try:
                async for _ in self.ctx.kv.pubsub.subscribe(OUTBOX_CHANNEL):
                    wake.set()
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # polling still delivers; try to listen again shortly
                log.warning("outbox wake-ups unavailable: %s", exc)
                await asyncio.sleep(5)

    async def run_once(self) -> int:
        """Take back our unfinished rows, claim one batch of due rows and deliver them all; returns how many
        rows were claimed or taken back."""
        now = self.ctx.clock()
        lease_until = now + timedelta(seconds=self.lease)
        rows = await self._take_back(lease_until)
        if len(rows) < self.batch_size:
            async with self.ctx.uow() as uow:
                rows += await uow.outbox.claim(now, lease_until, self.batch_size - len(rows))
                await uow.commit()
        self._answered_at = time.monotonic()
        if not rows:
            return 0
        try:
            await self._deliver_batch(rows)
        except BaseException:
            # Resolving recipients failed (or we are being cancelled): the rows are still ours for a lease.
            self._hold(rows, failed=True)
            raise
        return len(rows)

    async def _deliver_batch(self, rows: list[Notification]) -> None:
        targets = await self._resolve(rows)
        # Same chat in order, one after another; different chats side by side.
        by_chat: dict[Any, list[tuple[Notification, Target]]] = {}
        for row in rows:
            target = targets[row.id]
            key = target.chat_id if target.chat_id is not None else f"row{row.id}"
            by_chat.setdefault(key, []).append((row, target))
        # Stop touching rows shortly before our lease ends: after that another dispatcher may claim them.
        lease_end = asyncio.get_running_loop().time() + self.lease - min(10.0, self.lease / 3)
        results = await asyncio.gather(*(self._deliver_chat(items, lease_end) for items in by_chat.values()))
        for failed, unstarted in results:
            self._hold(failed, failed=True)
            self._hold(unstarted, failed=False)

    # ------------------------------------------------------------------ rows left unfinished

    def _hold(self, rows: list[Notification], *, failed: bool) -> None:
        """Remember rows we still hold a lease on but did not finish, to take them back ourselves."""
        now = time.monotonic()
        for row in rows:
            if row.locked_until is None:
                continue
            held = self._held.pop(row.id, None)
            failures = (held.failures if held else 0) + (1 if failed else 0)
            # The first failure is retried on the next pass (an outage: the loop's own pause applies), later
            # ones after 1, 2, 4... s.
            delay = min(MAX_HELD_RETRY, 2.0 ** (failures - 2)) if failures >= 2 else 0.0
            self._held[row.id] = _Held(lease=row.locked_until, failures=failures, retry_at=now + delay)

    def _held_due(self) -> bool:
        now = time.monotonic()
        return any(h.retry_at <= now for h in self._held.values())

    def _next_pause(self) -> float:
        if not self._held or self.ctx.sender is None:
            return self.poll_interval
        return max(0.0, min(self.poll_interval, min(h.retry_at for h in self._held.values()) - time.monotonic()))

    async def _take_back(self, lease_until: datetime) -> list[Notification]:
        """Renew the lease on our unfinished rows, only where it is still the lease we wrote (nobody claimed
        the row since, it is still pending). Rows lost that way are forgotten; a database error leaves the
        list as it is for the next pass."""
        now = time.monotonic()
        due = {row_id: held for row_id, held in self._held.items() if held.retry_at <= now}
        if not due:
            return []
        by_lease: dict[datetime, list[int]] = {}
        for row_id, held in due.items():
            by_lease.setdefault(held.lease, []).append(row_id)
        taken: list[Notification] = []
        async with self.ctx.uow() as uow:
            for lease, ids in by_lease.items():
                taken += await uow.outbox.renew_leases(ids, lease, lease_until)
            await uow.commit()
        kept = {row.id for row in taken}
        for row_id in due.keys() - kept:
            self._held.pop(row_id, None)
        for row in taken:  # the new lease is now the proof of ownership
            held = self._held[row.id]
            held.lease = row.locked_until  # type: ignore[assignment]
        if taken:
            log.info("took back %s unfinished outbox rows", len(taken))
        taken.sort(key=lambda n: n.id)
        return taken

    def _log_error(self, message: str, *args: Any) -> None:
        """An outage fails every pass: log the first failure with its traceback, then once in a while."""
        now = time.monotonic()
        if now - self._last_error_log >= ERROR_LOG_INTERVAL:
            self._last_error_log = now
            log.error(message, *args, exc_info=True)

    # ------------------------------------------------------------------ resolving recipients

    async def _resolve(self, rows: list[Notification]) -> dict[int, Target]:
        config = self.ctx.config
        default_lang = config.default_language
        staff_ids = {r.staff_id for r in rows if r.recipient_kind == "staff" and r.staff_id}
        customer_ids = {r.customer_id for r in rows if r.recipient_kind == "customer" and r.customer_id}
        async with self.ctx.uow() as uow:
            staff = {s.id: s for s in (await uow.session.scalars(
                select(Staff).where(Staff.id.in_(staff_ids)))).unique()} if staff_ids else {}
            customers = {c.id: c for c in (await uow.session.scalars(
                select(Customer).where(Customer.id.in_(customer_ids)))).unique()} if customer_ids else {}
            dept_chats = {d.id: d.telegram_chat_id for d in await uow.departments.all()}
        email_port = self.ctx.extras.get("email")
        targets: dict[int, Target] = {}
        for row in rows:
            payload = row.payload or {}
            kind = row.recipient_kind
            if kind == "staff":
                person = staff.get(row.staff_id) if row.staff_id else None
                if person is None or not person.is_active:
                    targets[row.id] = Target(reroute_reason="staff member gone")
                elif person.telegram_id is None:
                    targets[row.id] = Target(reroute_reason=f"staff {person.id} has no Telegram")
                elif person.telegram_unreachable:
                    targets[row.id] = Target(reroute_reason=f"staff {person.id} unreachable in Telegram")
                else:
                    targets[row.id] = Target(chat_id=person.telegram_id, language=person.language)
            elif kind == "group":
                chat = row.chat_id or dept_chats.get(row.department_id or -1)
                targets[row.id] = Target(chat_id=chat, language=default_lang) if chat else \
                    Target(reroute_reason="department has no Telegram group")
            elif kind == "chat":
                targets[row.id] = Target(chat_id=row.chat_id, language=payload.get("language") or default_lang) \
                    if row.chat_id else Target(dead_reason="no chat id")
            elif kind == "customer":
                person = customers.get(row.customer_id) if row.customer_id else None
                email = payload.get("email") if isinstance(payload.get("email"), dict) else None
                if person is None:
                    targets[row.id] = Target(dead_reason="customer gone")
                elif person.telegram_user_id is not None:
                    targets[row.id] = Target(chat_id=person.telegram_user_id, language=person.language, email=email)
                elif email and email_port is not None:
                    targets[row.id] = Target(email=email, language=person.language)
                else:
                    targets[row.id] = Target(dead_reason="client has no Telegram linked" +
                                             ("" if not email else " and e-mail is not configured"))
            elif kind == "email":
                targets[row.id] = Target(email=dict(payload)) if email_port is not None else \
                    Target(dead_reason="e-mail is not configured (SMTP_URL)")
            else:
                targets[row.id] = Target(dead_reason=f"unknown recipient kind {kind!r}")
        return targets

    # ------------------------------------------------------------------ delivering

    async def _deliver_chat(self, items: list[tuple[Notification, Target]],
                            lease_end: float) -> tuple[list[Notification], list[Notification]]:
        """Deliver one chat's rows in order; returns the rows that failed unexpectedly and those not started
        (still leased to us, see `_hold`)."""
        failed: list[Notification] = []
        async with self._slots:
            for index, (row, target) in enumerate(items):
                if asyncio.get_running_loop().time() >= lease_end:
                    # Never touch a row past our lease without renewing it first (another dispatcher may own
                    # it by then): `_take_back` renews it only if nobody did.
                    return failed, [r for r, _t in items[index:]]
                try:
                    postponed = await self._deliver(row, target)
                except Exception:
                    # A bug or a database hiccup must not stop the others; we take the row back shortly.
                    self._log_error("outbox %s: delivery failed unexpectedly", row.id)
                    failed.append(row)
                    continue
                self._held.pop(row.id, None)
                if postponed is not None:
                    # This chat is busy (flood limit): the rest of its rows wait their turn without attempts.
                    interval = self.pacer.interval(target.chat_id or 0)
                    for offset, (later, _t) in enumerate(items[index + 1:], start=1):
                        try:
                            await self._reschedule(later, postponed + interval * offset, None, count=False)
                            self._held.pop(later.id, None)
                        except Exception:
                            self._log_error("outbox %s: could not postpone", later.id)
                            failed.append(later)
                    break
        return failed, []

    async def _deliver(self, row: Notification, target: Target) -> float | None:
        """Deliver one row; returns seconds to postpone the chat's remaining rows, else None."""
        if await self.ctx.kv.kv.get(_marker(row.id)) is not None:
            # Sent before a crash, not yet marked: mark, never resend.
            message_id = await self.ctx.kv.kv.get(_marker(row.id))
            await self._mark_sent(row, target.chat_id or 0, int(message_id) if message_id and message_id.isdigit()
                                  else None)
            return None
        if target.dead_reason:
            await self._dead(row, target.dead_reason)
            return None
        if target.reroute_reason:
            await self._reroute(row, target.reroute_reason)
            return None
        if target.chat_id is None and target.email is not None:
            await self._send_email(row, target.email)
            return None
        assert target.chat_id is not None
        content = await self._content(row, target)
        if content is None:
            return None
        chat_id = target.chat_id
        if not await self.pacer.acquire_chat(chat_id, self.chat_wait):
            await self._reschedule(row, self.pacer.interval(chat_id), None, count=False)
            return self.pacer.interval(chat_id)
        await self.pacer.acquire_global()
        try:
            sent = await self._send(chat_id, content)
        except RetryAfter as exc:
            await self.pacer.block_chat(chat_id, exc.seconds)
            await self._reschedule(row, exc.seconds, f"429 retry after {exc.seconds}s", count=False)
            return exc.seconds
        except TemporaryFailure as exc:
            await self._temporary(row, str(exc))
            return None
        except RecipientUnreachable as exc:
            await self._unreachable(row, target, str(exc))
            return None
        except PermanentFailure as exc:
            if content.get("parse_mode") == "HTML" and "parse" in str(exc).lower():
                # Broken markup must not lose the message: send it once more as plain text.
                plain = {**content, "parse_mode": None, "text": [_plain(t) for t in content["text"]]}
                try:
                    sent = await self._send(chat_id, plain)
                except DeliveryError as again:
                    await self._dead(row, f"{exc}; as plain text: {again}")
                    return None
            else:
                await self._dead(row, str(exc))
                return None
        except DeliveryError as exc:
            await self._temporary(row, str(exc))
            return None
        await self.ctx.kv.kv.set(_marker(row.id), str(sent.message_id), ttl=SENT_MARKER_TTL)
        await self._mark_sent(row, sent.chat_id, sent.message_id)
        return None

    async def _content(self, row: Notification, target: Target) -> dict[str, Any] | None:
        payload = row.payload or {}
        if payload.get("render") == "ticket_alert" and row.ticket_id is not None:
            rendered = await render_ticket_alert(self.ctx, row.ticket_id, payload, target.language)
            if rendered is None:
                await self._dead(row, "ticket no longer exists")
                return None
            text, buttons = rendered
        else:
            text, buttons = str(payload.get("text") or ""), payload.get("buttons")
        content: dict[str, Any] = {"text": split_message(text) if text else [], "buttons": _buttons(buttons),
                                   "parse_mode": payload.get("parse_mode", "HTML"),
                                   "reply_to": payload.get("reply_to_message_id")}
        document = payload.get("document")
        if isinstance(document, dict) and document.get("path"):
            path = Path(str(document["path"]))
            if not path.is_absolute():
                path = Path(self.ctx.data_dir) / path
            try:
                data = await asyncio.to_thread(path.read_bytes)
            except OSError as exc:
                await self._dead(row, f"document unreadable: {exc}")
                return None
            content["document"] = (str(document.get("filename") or path.name), data, document.get("caption"))
        if not content["text"] and "document" not in content:
            await self._dead(row, "nothing to send")
            return None
        return content

    async def _send(self, chat_id: int, content: dict[str, Any]) -> SentMessage:
        sender = self.ctx.sender
        first: SentMessage | None = None
        if "document" in content:
            filename, data, caption = content["document"]
            first = await sender.send_document(chat_id, filename, data, caption=caption)
        parts = content["text"]
        for index, part in enumerate(parts):
            last = index == len(parts) - 1
            if index > 0:
                await self.pacer.acquire_chat(chat_id, self.chat_wait * 4)
                await self.pacer.acquire_global()
            sent = await sender.send_message(chat_id, part, buttons=content["buttons"] if last else None,
                                             parse_mode=content["parse_mode"],
                                             reply_to_message_id=content["reply_to"] if index == 0 else None)
            first = first or sent
        assert first is not None
        return first

    async def _send_email(self, row: Notification, spec: dict[str, Any]) -> None:
        port = self.ctx.extras.get("email")
        to = spec.get("email")
        if port is None or not to:
            await self._dead(row, "no e-mail route")
            return
        try:
            await port.send(to, str(spec.get("subject") or ""), _plain(str(spec.get("text") or "")),
                            list(spec.get("attachments") or []))
        except Exception as exc:
            await self._temporary(row, f"e-mail: {exc}")
            return
        await self._mark_sent(row, 0, None)

    # ------------------------------------------------------------------ outcomes

    async def _mark_sent(self, row: Notification, chat_id: int, message_id: int | None) -> None:
        now = self.ctx.clock()
        async with self.ctx.uow() as uow:
            await uow.outbox.mark_sent(row.id, now, message_id, chat_id)
            if row.ticket_id is not None and message_id is not None and row.recipient_kind in ("staff", "group"):
                await uow.outbox.remember_alert(chat_id, message_id, row.ticket_id)
            await uow.commit()

    async def _reschedule(self, row: Notification, delay: float, error: str | None, *, count: bool) -> None:
        async with self.ctx.uow() as uow:
            await uow.outbox.reschedule(row.id, self.ctx.clock() + timedelta(seconds=delay), error,
                                        count_attempt=count)
            await uow.commit()

    async def _temporary(self, row: Notification, error: str) -> None:
        attempts = (row.attempts or 0) + 1
        if attempts >= MAX_ATTEMPTS:
            log.error("outbox %s: giving up after %s attempts: %s", row.id, attempts, error)
            await self._dead(row, f"gave up after {attempts} attempts: {error}")
            return
        delay = min(MAX_BACKOFF, 2.0 ** attempts) * random.uniform(0.8, 1.2)
        await self._reschedule(row, delay, error, count=True)

    async def _dead(self, row: Notification, reason: str) -> None:
        log.warning("outbox %s (%s to %s): not deliverable: %s", row.id, row.kind, row.recipient_kind, reason)
        async with self.ctx.uow() as uow:
            await uow.outbox.mark_dead(row.id, reason)
            await uow.commit()

    async def _unreachable(self, row: Notification, target: Target, error: str) -> None:
        if row.recipient_kind == "staff":
            await self._reroute(row, f"staff unreachable: {error}", unreachable_staff_id=row.staff_id)
        elif row.recipient_kind == "group":
            await self._reroute(row, f"group unreachable: {error}", group_gone=True)
        elif row.recipient_kind == "customer" and target.email and self.ctx.extras.get("email") is not None:
            await self._send_email(row, target.email)
        else:
            await self._dead(row, f"recipient unreachable: {error}")

    async def _reroute(self, row: Notification, reason: str, *, unreachable_staff_id: int | None = None,
                       group_gone: bool = False) -> None:
        """Deliver a staff alert to the fallback: the department group, else colleagues on duty / supervisors."""
        payload = dict(row.payload or {})
        tried = list(payload.get("rerouted_from") or [])
        tried.append(row.staff_id if row.recipient_kind == "staff" else f"group:{row.department_id}")
        payload["rerouted_from"] = tried
        async with self.ctx.uow() as uow:
            if unreachable_staff_id is not None:
                person = await uow.staff.get(unreachable_staff_id)
                if person is not None:
                    person.telegram_unreachable = True
            department_id = row.department_id
            if department_id is None and row.staff_id is not None:
                person = await uow.staff.get(row.staff_id)
                department_id = person.department_id if person is not None else None
            created = 0
            if department_id is not None and len(tried) <= MAX_REROUTES:
                department = await uow.departments.get(department_id)
                group_tried = f"group:{department_id}" in tried
                if department is not None and department.telegram_chat_id and not group_gone and not group_tried:
                    uow.outbox.enqueue(kind=row.kind, recipient_kind="group", chat_id=department.telegram_chat_id,
                                       department_id=department_id, ticket_id=row.ticket_id, payload=payload)
                    created = 1
                else:
                    for staff_id in await department_staff_fallback(uow, department_id, exclude=row.staff_id):
                        if staff_id in tried:
                            continue
                        person = await uow.staff.get(staff_id)
                        if person is None or person.telegram_id is None or person.telegram_unreachable:
                            continue
                        uow.outbox.enqueue(kind=row.kind, recipient_kind="staff", staff_id=staff_id,
                                           department_id=department_id, ticket_id=row.ticket_id, payload=payload)
                        created += 1
            if created:
                await uow.outbox.reschedule(row.id, self.ctx.clock(), f"rerouted: {reason}", status="rerouted")
            else:
                await uow.outbox.mark_dead(row.id, f"{reason}; no fallback recipient")
                log.error("outbox %s: %s and nobody else to tell", row.id, reason)
            await uow.commit()
        await self.ctx.wake_dispatcher()


# ---------------------------------------------------------------------- helpers


def _marker(notification_id: int) -> str:
    return f"outbox:sent:{notification_id}"


def _buttons(raw: Any) -> list[list[Button]] | None:
    if not raw:
        return None
    rows: list[list[Button]] = []
    for raw_row in raw:
        row = [Button(text=str(b.get("text", "")), callback_data=b.get("callback_data"), url=b.get("url"))
               for b in raw_row if isinstance(b, dict) and (b.get("callback_data") or b.get("url"))]
        if row:
            rows.append(row)
    return rows or None


def split_message(text: str, limit: int = TELEGRAM_LIMIT) -> list[str]:
    """Telegram takes at most 4,096 characters: split on line breaks (or hard, for one huge line)."""
    if len(text) <= limit:
        return [text]
    parts: list[str] = []
    current = ""
    for line in text.splitlines(keepends=True):
        while len(line) > limit:
            if current:
                parts.append(current)
                current = ""
            parts.append(line[:limit])
            line = line[limit:]
        if len(current) + len(line) > limit:
            parts.append(current)
            current = ""
        current += line
    if current:
        parts.append(current)
    return parts


def _plain(text: str) -> str:
    return html.unescape(_TAG.sub("", text))


async def _wait_any(stop: asyncio.Event, wake: asyncio.Event, timeout: float) -> None:
    waiters = [asyncio.ensure_future(stop.wait()), asyncio.ensure_future(wake.wait())]
    try:
        await asyncio.wait(waiters, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for waiter in waiters:
            waiter.cancel()
        await asyncio.gather(*waiters, return_exceptions=True)

