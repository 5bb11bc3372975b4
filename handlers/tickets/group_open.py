"""Opening tickets on PostgreSQL in shared transactions (group commit).

Opened one by one, a ticket took six round trips (BEGIN, the follow-up check, routing, the alert fallback,
the write, COMMIT) and a commit, and the Python around each round trip (pool, session, driver) was most of
its CPU. Here concurrent openings queue, and one task at a time takes them as a batch:

1. one query reads all the batch needs (storage.repositories.ticket_batch.read_opening_snapshot): the
   departments' staff and their open load, each client's open ticket on the topic, the used message keys;
2. each ticket is routed and planned in Python (handlers.tickets.routing_snapshot counts each assignment,
   so the batch routes exactly as the same tickets opened one after another);
3. one statement writes every ticket with its events, attachments, staff alerts and interaction, and one
   commit makes them durable together. Each caller then gets its own outcome.

Alone, a ticket costs about what it did before; under load a batch costs about what one ticket did.

What does not change: all of a ticket's rows (and its batch's) commit together or not at all, with the
staff alert in the same transaction. Opening is idempotent on the message key: a key already used is
found by the read and fails that opening alone with the IntegrityError callers already handle; a key used
concurrently by another process fails the write, and the batch is retried ticket by ticket so that only
the duplicate fails. Two openings with the same message key, or for the same client and topic, never
share a batch: the second waits for the next one and so sees the first (a duplicate, or a follow-up).
One batch at a time per process, so every routing read sees the previous batch's assignments.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Hashable
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy.exc import IntegrityError

from handlers.context import AppContext
from handlers.dto import TicketSummary
from handlers.tickets.common import (
    INTERACTION_TEXT_LIMIT,
    Departments,
    department_name,
    departments,
    topic_title,
)
from handlers.tickets.planning import NewTicket, plan_ticket
from handlers.tickets.routing import wants_personal_manager
from handlers.tickets.routing_snapshot import SnapshotRouter
from storage.repositories.ticket_batch import (
    AttachmentRow,
    FollowUpCheck,
    OpenedRow,
    OpeningRow,
    OpeningSnapshot,
    Recipient,
    insert_opened_batch,
    read_opening_snapshot,
)

log = logging.getLogger(__name__)
_OPENER_KEY = "tickets.group_opener"
# Big enough that a burst is a few batches; small enough that one statement stays quick to plan and run.
MAX_BATCH = 100


@dataclass(frozen=True)
class Opening:
    request: NewTicket
    now: datetime
    # Intake appends a message to the client's open ticket on the same topic instead of opening another.
    check_follow_up: bool
    record_interaction: bool
    interaction_key: str | None  # the interaction's external id (unique, like the ticket's source key)


@dataclass(frozen=True)
class Opened:
    summary: TicketSummary
    interaction_id: int | None


@dataclass(frozen=True)
class FollowUp:
    """Not opened: the client has an open ticket on this topic; the message belongs to it."""

    ticket_id: int


class DuplicateMessage(IntegrityError):
    """The message key was used already: what inserting the rows would have raised, without trying."""

    def __init__(self, key: str) -> None:
        super().__init__("opening a ticket", {"key": key}, ValueError(f"message key {key!r} already used"))


async def grouped_opener(ctx: AppContext) -> TicketOpener | None:
    """The process's opener when the database is PostgreSQL; None on SQLite (the portable path is used)."""
    opener = ctx.extras.get(_OPENER_KEY)
    if opener is None:
        async with ctx.read() as uow:
            postgres = uow.tickets.dialect == "postgresql"
        opener = TicketOpener(ctx) if postgres else False
        ctx.extras[_OPENER_KEY] = opener
    return opener or None


_Entry = tuple[Opening, "asyncio.Future[Opened | FollowUp]"]


class TicketOpener:
    def __init__(self, ctx: AppContext, max_batch: int = MAX_BATCH) -> None:
        self._ctx = ctx
        self._max = max_batch
        self._pending: list[_Entry] = []
        self._task: asyncio.Task[None] | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    async def open(self, opening: Opening) -> Opened | FollowUp:
        """Returns once this opening is committed (or raises what made it fail)."""
        loop = asyncio.get_running_loop()
        if loop is not self._loop:
            # A new event loop (a restarted service, a test): what belonged to the old one is gone with it.
            self._loop, self._pending, self._task = loop, [], None
        future: asyncio.Future[Opened | FollowUp] = loop.create_future()
        self._pending.append((opening, future))
        if self._task is None or self._task.done():
            self._task = loop.create_task(self._drain())
        return await future

    async def _drain(self) -> None:
        while self._pending:
            batch = self._take_batch()
            if batch:
                await self._settle(batch)

    def _take_batch(self) -> list[_Entry]:
        taken: list[_Entry] = []
        waiting: list[_Entry] = []
        keys: set[Hashable] = set()
        for entry in self._pending:
            if entry[1].done():  # its caller gave up (cancelled) before it was written: nobody to answer
                continue
            entry_keys = _conflict_keys(entry[0])
            if len(taken) < self._max and keys.isdisjoint(entry_keys):
                taken.append(entry)
                keys |= entry_keys
            else:
                waiting.append(entry)
        self._pending = waiting
        return taken

    async def _settle(self, batch: list[_Entry]) -> None:
        try:
            outcomes = await self._open_batch([opening for opening, _ in batch])
        except IntegrityError as exc:
            if len(batch) == 1:
                _fail(batch[0][1], exc)
                return
            # A key was used by someone else between our read and our write: one at a time, only it fails.
            for entry in batch:
                await self._settle([entry])
            return
        except Exception as exc:
            # The database is unreachable or the statement failed as a whole: every caller hears it.
            for _, future in batch:
                _fail(future, exc)
            return
        except BaseException:
            for _, future in batch:
                future.cancel()
            raise
        for (_, future), outcome in zip(batch, outcomes, strict=True):
            if isinstance(outcome, BaseException):
                _fail(future, outcome)
            elif not future.done():
                future.set_result(outcome)

    async def _open_batch(self, openings: list[Opening]) -> list[Opened | FollowUp | Exception]:
        ctx = self._ctx
        outcomes: list[Opened | FollowUp | Exception | None] = []
        to_open: list[tuple[int, OpeningRow, str | None]] = []  # (item, row, assignee name)
        # One transaction (one pooled connection) for the read and the write. The read takes no locks, and
        # at READ COMMITTED it sees what it would see on its own; the counter row is locked only by the write,
        # for the write and the commit.
        async with ctx.uow() as uow:
            depts = await departments(ctx, uow)
            snapshot = await read_opening_snapshot(uow.session, **self._snapshot_query(openings, depts))
            router = SnapshotRouter(ctx.config, depts, snapshot.staff)
            for item, opening in enumerate(openings):
                try:
                    decided = _decide(item, opening, snapshot)
                    if decided is None:
                        row, assignee_name = self._row(opening, router, depts)
                        to_open.append((item, row, assignee_name))
                except Exception as exc:  # e.g. a topic routed to a department the database does not know
                    decided = exc
                outcomes.append(decided)
            if not to_open:
                return outcomes  # type: ignore[return-value]  # nothing to open: no None left
            written = await insert_opened_batch(uow.session, [row for _, row, _ in to_open])
            await uow.commit()
        await self._wake_dispatcher()
        for (item, row, assignee_name), opened in zip(to_open, written, strict=True):
            outcomes[item] = Opened(self._summary(row, opened, depts, assignee_name, openings[item].request),
                                    opened.interaction_id)
        return outcomes  # type: ignore[return-value]  # every None (to be opened) was filled above

    def _snapshot_query(self, openings: list[Opening], depts: Departments) -> dict[str, object]:
        config = self._ctx.config
        window = config.tickets.follow_up_window
        department_ids: set[int] = set()
        manager_ids: set[int] = set()
        checks: list[FollowUpCheck] = []
        for item, opening in enumerate(openings):
            request, client = opening.request, opening.request.client
            topic = config.topics.get(request.topic)  # an unknown one fails its own opening, when routed
            if topic is not None and (department_id := depts.by_code.get(topic.department)) is not None:
                department_ids.add(department_id)
            if topic is not None and client is not None and client.manager_id is not None and \
                    wants_personal_manager(config, request.topic, client, prefer_manager=request.prefer_manager):
                manager_ids.add(client.manager_id)
            if opening.check_follow_up and client is not None:
                checks.append(FollowUpCheck(item, client.customer_id, request.topic, opening.now - window))
        return {
            "department_ids": sorted(department_ids), "manager_ids": sorted(manager_ids), "follow_up_checks": checks,
            "external_ids": [o.interaction_key for o in openings if o.record_interaction and o.interaction_key],
            "source_keys": [o.request.message_key for o in openings if o.request.message_key],
        }

    def _row(self, opening: Opening, router: SnapshotRouter, depts: Departments) -> tuple[OpeningRow, str | None]:
        config = self._ctx.config
        request, client, now = opening.request, opening.request.client, opening.now
        route = router.route(request.topic, client, prefer_manager=request.prefer_manager)
        plan = plan_ticket(config, request, route, now)
        department_id = depts.id(route.department_code)
        group_chat = config.department(route.department_code).telegram_chat_id
        if route.assignee_id is not None:
            recipients = [Recipient("staff", staff_id=route.assignee_id)]
        elif group_chat:
            recipients = [Recipient("group", chat_id=group_chat)]
        else:
            recipients = [Recipient("staff", staff_id=i) for i in router.alert_fallback(department_id)]
        row = OpeningRow(
            year=plan.year, customer_id=client.customer_id if client else None, channel=request.channel,
            source_key=request.message_key, topic=request.topic, department_id=department_id,
            assignee_id=route.assignee_id, priority=plan.priority, language=plan.language, subject=plan.subject,
            text=plan.text, confidence=request.confidence, contact_phone=plan.contact_phone, opened_at=now,
            first_response_due=plan.first_response_due, resolution_due=plan.resolution_due,
            opened_author="client" if client else "system", opened_payload=plan.opened_payload,
            assigned_payload={"assignee_id": route.assignee_id, "reason": route.reason}
            if route.assignee_id is not None else None,
            recipients=recipients,
            attachments=[AttachmentRow(a.kind, a.ref[:1000], a.content_type) for a in request.attachments],
            record_interaction=opening.record_interaction,
            sender=(request.sender or None) and request.sender[:100],
            external_id=opening.interaction_key,
            interaction_text=(request.text or "")[:INTERACTION_TEXT_LIMIT],
            outcome="ticket_opened",
        )
        return row, route.assignee_name

    def _summary(self, row: OpeningRow, written: OpenedRow, depts: Departments, assignee_name: str | None,
                 request: NewTicket) -> TicketSummary:
        """What `summarize` would make of the ticket just written (building a `Ticket` row for it would cost
        more than the rest of the opening's Python)."""
        config = self._ctx.config
        code = depts.by_id.get(row.department_id, "")
        return TicketSummary(
            id=written.ticket_id, number=written.number, status="new", topic=row.topic,
            topic_title=topic_title(config, row.topic, row.language), department_code=code,
            department_name=department_name(config, code, row.language), priority=row.priority,
            subject=row.subject, created_at=row.opened_at, first_response_due=row.first_response_due,
            resolution_due=row.resolution_due, assignee_id=row.assignee_id, assignee_name=assignee_name,
            customer_id=row.customer_id, channel=row.channel, language=row.language, text=row.text,
            customer_name=request.client.name if request.client else None, updated_at=row.opened_at,
        )

    async def _wake_dispatcher(self) -> None:
        try:
            await self._ctx.wake_dispatcher()
        except Exception:
            # The alerts are committed; a lost wake-up only delays them until the dispatcher's next poll.
            log.warning("could not wake the notification dispatcher", exc_info=True)


def _decide(item: int, opening: Opening, snapshot: OpeningSnapshot) -> FollowUp | DuplicateMessage | None:
    """What the read already settles for this opening: a duplicate, a follow-up, or None (open it)."""
    key = opening.request.message_key
    if key and key in snapshot.used_source_keys:
        return DuplicateMessage(key)
    if opening.record_interaction and opening.interaction_key in snapshot.used_external_ids:
        return DuplicateMessage(opening.interaction_key or "")
    if (ticket_id := snapshot.follow_ups.get(item)) is not None:
        return FollowUp(ticket_id)
    return None


def _conflict_keys(opening: Opening) -> set[Hashable]:
    """Openings sharing one of these must not share a batch (see the module docstring)."""
    request = opening.request
    keys: set[Hashable] = set()
    if request.message_key:
        keys.add(("source_key", request.message_key))
    if opening.interaction_key:
        keys.add(("interaction", opening.interaction_key))
    if request.client is not None:
        keys.add(("client_topic", request.client.customer_id, request.topic))
    return keys


def _fail(future: asyncio.Future[Opened | FollowUp], exc: BaseException) -> None:
    if not future.done():
        future.set_exception(exc)
