"""Many tickets opened at once, on both backends: PostgreSQL opens them in shared batches
(handlers.tickets.group_open), SQLite one by one; the outcome must be the same as opening them one after
another — numbers, routing under the per-agent cap, alerts, follow-ups, idempotency — and a failure must
reach every caller it concerns and nobody else."""

from __future__ import annotations

import asyncio
import dataclasses
from datetime import UTC, datetime

import pytest
from sqlalchemy import func, insert, select, text
from sqlalchemy.exc import OperationalError

from handlers.dto import Attachment, ClientProfile, ServiceUnavailable
from handlers.identification import identify_by_phone
from handlers.intake import handle_inbound
from handlers.tickets import group_open, open_ticket
from handlers.tickets.notify import department_staff_fallback
from handlers.tickets.planning import NewTicket
from handlers.tickets.queries import summaries
from storage.models import Customer, Interaction, Notification, Ticket, TicketAttachment, TicketEvent
from storage.repositories.ticket_batch import OpeningRow, Recipient, insert_opened_batch

NOW = datetime(2026, 11, 16, 7, 0, tzinfo=UTC)  # Monday 10:00 in Moscow: every department is open
ROMASHKA = "+74951112233"  # corporate, personal manager Анна Петрова


@pytest.fixture
def ctx(demo_services):  # type: ignore[no-untyped-def]
    ctx = demo_services.ctx
    ctx.clock = lambda: NOW
    ctx.classifier = None  # topics are given (forced), as when a client presses a topic button
    ctx.extras.pop("knowledge", None)
    return ctx


async def dialect(ctx) -> str:  # type: ignore[no-untyped-def]
    async with ctx.read() as uow:
        return uow.tickets.dialect


async def new_clients(ctx, count: int) -> list[ClientProfile]:  # type: ignore[no-untyped-def]
    async with ctx.uow() as uow:
        ids = list((await uow.session.execute(
            insert(Customer).returning(Customer.id, sort_by_parameter_order=True),
            [{"kind": "person", "name": f"Клиент {i}", "language": "ru", "segment": "mass"} for i in range(count)],
        )).scalars())
        await uow.commit()
    return [ClientProfile(customer_id=i, name=f"Клиент {n}", kind="person", segment="mass", language="ru", phones=(),
                          email=None, telegram_user_id=None, account_numbers=(), manager_id=None, manager_name=None,
                          has_consent=True) for n, i in enumerate(ids)]


def inbound(ctx, client, key: str, topic: str = "no_connection", **kwargs):  # type: ignore[no-untyped-def]
    return handle_inbound(ctx, channel="telegram", text=f"Сообщение {key}", language="ru", client=client,
                          sender="5001", message_key=key, forced_topic=topic, **kwargs)


async def count(ctx, model, *where) -> int:  # type: ignore[no-untyped-def]
    async with ctx.uow() as uow:
        return int(await uow.session.scalar(select(func.count()).select_from(model).where(*where)))


async def test_openings_at_once_are_numbered_routed_and_alerted_like_one_after_another(ctx) -> None:
    clients = await new_clients(ctx, 51)
    results = await asyncio.gather(*(inbound(ctx, c, f"tg:{i}") for i, c in enumerate(clients)))
    assert {r.outcome for r in results} == {"ticket_opened"}
    tickets = [r.ticket for r in results]
    assert sorted(t.number for t in tickets) == [f"2026-{n:06d}" for n in range(1, 52)]
    # Tech support: two agents with a cap of 25 each; the 51st ticket waits in the queue.
    assigned: dict[str | None, int] = {}
    for t in tickets:
        assigned[t.assignee_name] = assigned.get(t.assignee_name, 0) + 1
    assert assigned == {"Алексей Морозов": 25, "Игорь Новиков": 25, None: 1}
    assert await count(ctx, Ticket) == await count(ctx, Interaction, Interaction.outcome == "ticket_opened") == 51
    assert await count(ctx, TicketEvent, TicketEvent.kind == "opened") == 51
    assert await count(ctx, TicketEvent, TicketEvent.kind == "assigned") == 50
    queued = next(t for t in tickets if t.assignee_id is None)
    async with ctx.uow() as uow:
        alerts = list(await uow.session.scalars(select(Notification).where(Notification.ticket_id == queued.id)
                                                .order_by(Notification.id)))
        fallback = await department_staff_fallback(uow, (await uow.tickets.get(queued.id)).department_id)
        interaction = await uow.interactions.by_external_id(f"tg:{tickets.index(queued)}")
    assert [a.staff_id for a in alerts] == fallback and fallback
    assert {a.payload["event"] for a in alerts} == {"opened"}
    assert interaction is not None and interaction.ticket_id == queued.id


async def test_one_client_writing_twice_at_once_gets_one_ticket_and_a_follow_up(ctx) -> None:
    [client] = await new_clients(ctx, 1)
    results = await asyncio.gather(*(inbound(ctx, client, f"tg:{i}") for i in range(3)))
    assert sorted(r.outcome for r in results) == ["ticket_appended", "ticket_appended", "ticket_opened"]
    assert len({r.ticket.id for r in results}) == 1
    assert await count(ctx, Ticket) == 1
    assert await count(ctx, TicketEvent, TicketEvent.kind == "message") == 2


async def test_a_message_delivered_many_times_at_once_opens_one_ticket(ctx) -> None:
    clients = await new_clients(ctx, 3)
    results = await asyncio.gather(*(inbound(ctx, clients[i % 3], f"tg:{i % 3}") for i in range(9)))
    assert sorted(r.outcome for r in results).count("ticket_opened") == 3
    assert {r.outcome for r in results} == {"ticket_opened", "duplicate"}
    assert await count(ctx, Ticket) == 3 and await count(ctx, Interaction) == 3


async def test_the_summary_returned_is_the_ticket_stored(ctx) -> None:
    [client] = await new_clients(ctx, 1)
    romashka = await identify_by_phone(ctx, ROMASHKA)
    opened = [
        (await inbound(ctx, client, "tg:1", attachments=[Attachment("photo", "FILE1")])).ticket,
        await open_ticket(ctx, channel="telegram", text="Жалоба на обслуживание", language="ru", client=romashka,
                          topic="complaint", message_key="rasa:1"),
        await open_ticket(ctx, channel="ivr", text="Перезвоните", language="en", client=None, topic="human",
                          contact_phone="+7 916 123-45-67", record_interaction=False),
    ]
    assert opened[1].assignee_name == "Анна Петрова" and opened[1].priority == "urgent"
    async with ctx.uow() as uow:
        stored = await summaries(ctx, uow, [t.id for t in opened])
        files = list(await uow.session.scalars(select(TicketAttachment.ref)
                                               .where(TicketAttachment.ticket_id == opened[0].id)))
    for returned, read_back in zip(opened, stored, strict=True):
        assert dataclasses.asdict(returned) == dataclasses.asdict(read_back)
    assert files == ["FILE1"]
    assert await count(ctx, Interaction, Interaction.external_id == "ticket:rasa:1") == 1
    assert await count(ctx, Interaction) == 2  # the IVR keeps its own call record
    again = await open_ticket(ctx, channel="telegram", text="Жалоба", language="ru", client=romashka,
                              topic="complaint", message_key="rasa:1")
    assert again.id == opened[1].id and await count(ctx, Ticket) == 3


# ------------------------------------------------------------------ PostgreSQL's batches


async def test_a_key_used_between_the_read_and_the_write_fails_only_that_opening(ctx, monkeypatch) -> None:
    if await dialect(ctx) != "postgresql":
        pytest.skip("batches are PostgreSQL's; SQLite opens one ticket per transaction")
    clients = await new_clients(ctx, 3)
    first = await inbound(ctx, clients[0], "tg:0")
    real_read = group_open.read_opening_snapshot

    async def read_missing_the_used_keys(*args, **kwargs):  # type: ignore[no-untyped-def]
        # As if another process wrote the key just after this read: only the write's unique index sees it.
        return dataclasses.replace(await real_read(*args, **kwargs), used_external_ids=set(), used_source_keys=set())

    monkeypatch.setattr(group_open, "read_opening_snapshot", read_missing_the_used_keys)
    results = await asyncio.gather(inbound(ctx, clients[0], "tg:0", topic="line_damage"),
                                   inbound(ctx, clients[1], "tg:1"), inbound(ctx, clients[2], "tg:2"))
    assert [r.outcome for r in results] == ["duplicate", "ticket_opened", "ticket_opened"]
    assert results[0].ticket.id == first.ticket.id
    assert await count(ctx, Ticket) == 3 and await count(ctx, Interaction) == 3


async def test_a_batch_that_cannot_be_written_fails_every_caller_and_writes_nothing(ctx, monkeypatch) -> None:
    if await dialect(ctx) != "postgresql":
        pytest.skip("batches are PostgreSQL's; SQLite opens one ticket per transaction")
    clients = await new_clients(ctx, 3)

    async def connection_lost(*_args, **_kwargs):  # type: ignore[no-untyped-def]
        raise OperationalError("INSERT", {}, ConnectionResetError("server closed the connection"))

    monkeypatch.setattr(group_open, "insert_opened_batch", connection_lost)
    results = await asyncio.gather(*(inbound(ctx, c, f"tg:{i}") for i, c in enumerate(clients)),
                                   return_exceptions=True)
    assert all(isinstance(r, ServiceUnavailable) for r in results)
    assert await count(ctx, Ticket) == 0 and await count(ctx, Interaction) == 0
    monkeypatch.undo()
    # Redelivered after the outage, the same messages open their tickets once.
    results = await asyncio.gather(*(inbound(ctx, c, f"tg:{i}") for i, c in enumerate(clients)))
    assert [r.outcome for r in results] == ["ticket_opened"] * 3


async def test_an_opening_that_cannot_be_planned_fails_alone(ctx) -> None:
    if await dialect(ctx) != "postgresql":
        pytest.skip("batches are PostgreSQL's; SQLite opens one ticket per transaction")
    clients = await new_clients(ctx, 2)
    opener = await group_open.grouped_opener(ctx)
    assert opener is not None

    def opening(client: ClientProfile, topic: str, key: str) -> group_open.Opening:
        request = NewTicket(channel="telegram", text="t", language="ru", client=client, topic=topic, message_key=key)
        return group_open.Opening(request, NOW, check_follow_up=True, record_interaction=True, interaction_key=key)

    good, bad = await asyncio.gather(opener.open(opening(clients[0], "no_connection", "k1")),
                                     opener.open(opening(clients[1], "no_such_topic", "k2")), return_exceptions=True)
    assert isinstance(good, group_open.Opened) and good.summary.number == "2026-000001"
    assert isinstance(bad, KeyError)
    assert await count(ctx, Ticket) == 1


async def test_batch_numbers_continue_per_year_and_grow_past_six_digits(ctx) -> None:
    if await dialect(ctx) != "postgresql":
        pytest.skip("the batch statement is PostgreSQL's")
    async with ctx.uow() as uow:
        await uow.session.execute(text("INSERT INTO ticket_counters (year, last) VALUES (2026, 999998)"))
        department_id = (await uow.departments.by_code("tech_support")).id
        await uow.commit()

    def row(year: int, key: str) -> OpeningRow:
        return OpeningRow(
            year=year, customer_id=None, channel="ivr", source_key=key, topic="no_connection",
            department_id=department_id, assignee_id=None, priority="normal", language="ru", subject="s",
            text="t", confidence=None, contact_phone=None, opened_at=NOW, first_response_due=NOW,
            resolution_due=NOW, opened_author="system", opened_payload={"route": "queue"}, assigned_payload=None,
            recipients=[Recipient("group", chat_id=-100 - len(key))], record_interaction=year == 2027,
            external_id=key, outcome="ticket_opened")

    async with ctx.uow() as uow:
        written = await insert_opened_batch(uow.session, [row(2026, "a"), row(2027, "bb"), row(2026, "ccc")])
        await uow.commit()
    assert [w.number for w in written] == ["2026-999999", "2027-000001", "2026-1000000"]
    assert [w.interaction_id is not None for w in written] == [False, True, False]
    assert written[0].ticket_id < written[1].ticket_id < written[2].ticket_id  # ids follow the rows' order
    async with ctx.uow() as uow:
        alerts = (await uow.session.execute(select(Notification.ticket_id, Notification.chat_id)
                                            .order_by(Notification.id))).all()
    assert alerts == [(w.ticket_id, -100 - len(k)) for w, k in zip(written, ("a", "bb", "ccc"), strict=True)]
