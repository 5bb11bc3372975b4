"""Tickets end to end on both backends: intake, idempotency, follow-ups, routing, lifecycle, permissions,
history, CSAT, statistics, card, SLA watcher and auto-close."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import func, select, update

from handlers import tickets as T
from handlers.dto import Actor, Attachment, InvalidRequest, NotFound, PermissionDenied
from handlers.identification import identify_by_phone
from handlers.intake import handle_inbound
from handlers.notifications.auto_close import AutoCloser
from handlers.notifications.sla_watcher import SlaWatcher
from handlers.staff import identify_staff, set_on_duty, staff_profile
from storage.models import Interaction, Notification, Staff, Ticket, TicketEvent

ROMASHKA = "+74951112233"  # 100001, corporate, personal manager Анна Петрова (manager1)
IVANOV = "+79161234567"  # 200001, mass, no manager
PETROVA = "+79262345678"  # 200002, mass


@dataclass
class Ranked:
    topic: str
    confidence: float


@dataclass
class Verdict:
    topic: str | None
    confidence: float
    ranking: list[Ranked] = field(default_factory=list)
    rejected: bool = False
    urgent: bool = False


class FakeClassifier:
    """Keyword rules; anything else is rejected with a ranking, like the real one when unsure."""

    RULES = {"интернет": "no_connection", "баланс": "balance", "акт": "documents", "тариф": "tariff_change",
             "жалоба": "complaint", "кабель": "line_damage"}

    def classify(self, text: str, k: int = 3) -> Verdict:
        lowered = text.lower()
        for word, topic in self.RULES.items():
            if word in lowered:
                return Verdict(topic, 0.9, [Ranked(topic, 0.9)], urgent="срочно" in lowered)
        return Verdict(None, 0.2, [Ranked("equipment", 0.2), Ranked("slow_connection", 0.15)], rejected=True)


class Clock:
    def __init__(self, start: datetime) -> None:
        self.now = start

    def __call__(self) -> datetime:
        return self.now

    def advance(self, **kwargs: float) -> None:
        self.now += timedelta(**kwargs)


@pytest.fixture
def clock(demo_services) -> Clock:  # type: ignore[no-untyped-def]
    # Monday 16 Nov 2026, 10:00 Moscow: every department is open.
    clock = Clock(datetime(2026, 11, 16, 7, 0, tzinfo=UTC))
    demo_services.ctx.clock = clock
    demo_services.ctx.classifier = FakeClassifier()
    demo_services.ctx.extras.pop("knowledge", None)
    return clock


async def staff_actor(ctx, email: str) -> Actor:  # type: ignore[no-untyped-def]
    async with ctx.uow() as uow:
        staff = await uow.staff.by_email(email)
        return staff_profile(staff).actor


async def count(ctx, model, *where) -> int:  # type: ignore[no-untyped-def]
    async with ctx.uow() as uow:
        return int(await uow.session.scalar(select(func.count()).select_from(model).where(*where)))


async def test_intake_opens_one_ticket_with_event_alert_and_interaction(demo_services, clock) -> None:
    ctx = demo_services.ctx
    client = await identify_by_phone(ctx, IVANOV)
    result = await handle_inbound(ctx, channel="telegram", text="Не работает интернет с утра", language="ru",
                                  client=client, sender="5001", message_key="tg:1")
    assert result.outcome == "ticket_opened"
    ticket = result.ticket
    assert ticket.number == "2026-000001" and ticket.topic == "no_connection"
    assert ticket.department_code == "tech_support" and ticket.priority == "high"
    # 24x7 department, high priority: 30 min * 0.5
    assert ticket.first_response_due == clock.now + timedelta(minutes=15)
    assert ticket.assignee_name in ("Алексей Морозов", "Игорь Новиков")
    assert await count(ctx, Interaction, Interaction.ticket_id == ticket.id) == 1
    assert await count(ctx, TicketEvent, TicketEvent.ticket_id == ticket.id, TicketEvent.kind == "opened") == 1
    assert await count(ctx, Notification, Notification.ticket_id == ticket.id,
                       Notification.kind == "ticket_alert") == 1

    again = await handle_inbound(ctx, channel="telegram", text="Не работает интернет с утра", language="ru",
                                 client=client, sender="5001", message_key="tg:1")
    assert again.outcome == "duplicate" and again.ticket.id == ticket.id
    assert again.extra["original_outcome"] == "ticket_opened"
    assert await count(ctx, Ticket) == 1 and await count(ctx, Interaction) == 1
    # The redelivery was not appended to the ticket as a follow-up either.
    assert await count(ctx, TicketEvent, TicketEvent.kind == "message") == 0

    second = await handle_inbound(ctx, channel="telegram", text="Кабель оборван во дворе", language="ru",
                                  client=client, sender="5001", message_key="tg:2")
    assert second.ticket.number == "2026-000002"


async def test_concurrent_redelivery_makes_one_ticket(demo_services, clock) -> None:
    ctx = demo_services.ctx
    client = await identify_by_phone(ctx, IVANOV)
    results = await asyncio.gather(*(
        handle_inbound(ctx, channel="telegram", text="Нет интернета", language="ru", client=client,
                       message_key="tg:77") for _ in range(5)))
    assert {r.outcome for r in results} <= {"ticket_opened", "duplicate"}
    assert sum(r.outcome == "ticket_opened" for r in results) == 1
    assert len({r.ticket.id for r in results}) == 1
    assert await count(ctx, Ticket) == 1


async def test_follow_up_is_appended_within_the_window_only(demo_services, clock) -> None:
    ctx = demo_services.ctx
    client = await identify_by_phone(ctx, IVANOV)
    first = await handle_inbound(ctx, channel="telegram", text="Нет интернета", language="ru", client=client,
                                 message_key="a")
    follow = await handle_inbound(ctx, channel="telegram", text="Всё ещё нет интернета!", language="ru",
                                  client=client, message_key="b", attachments=[Attachment("photo", "FILEID")])
    assert follow.outcome == "ticket_appended" and follow.ticket.id == first.ticket.id
    async with ctx.uow() as uow:
        kinds = [e.kind for e, _ in await uow.tickets.events(first.ticket.id)]
        assert kinds.count("message") == 1
        assert [a.ref for a in await uow.tickets.attachments(first.ticket.id)] == ["FILEID"]
    clock.advance(hours=73)  # beyond the 72 h follow-up window
    later = await handle_inbound(ctx, channel="telegram", text="Снова нет интернета", language="ru",
                                 client=client, message_key="c")
    assert later.outcome == "ticket_opened" and later.ticket.id != first.ticket.id


async def test_auto_answers_identification_and_unsure(demo_services, clock) -> None:
    ctx = demo_services.ctx
    client = await identify_by_phone(ctx, IVANOV)
    assert (await handle_inbound(ctx, channel="telegram", text="Какой у меня баланс?", language="ru",
                                 client=client)).outcome == "balance"
    docs = await handle_inbound(ctx, channel="telegram", text="Пришлите акт за октябрь", language="ru",
                                client=client)
    assert docs.outcome == "documents" and docs.documents_query is not None
    assert (await handle_inbound(ctx, channel="ivr", text="баланс", language="ru", client=None,
                                 sender="+79990000000")).outcome == "needs_identification"
    unsure = await handle_inbound(ctx, channel="telegram", text="Хм", language="en", client=client)
    assert unsure.outcome == "choose_topic"
    assert [c.topic for c in unsure.choices][:2] == ["equipment", "slow_connection"]
    assert unsure.choices[-1].topic == "out_of_scope" and unsure.choices[0].title.startswith("Equipment")
    ctx.classifier = None  # no classifier: still a useful answer
    assert (await handle_inbound(ctx, channel="telegram", text="Хм", language="ru",
                                 client=client)).outcome == "choose_topic"
    forced = await handle_inbound(ctx, channel="telegram", text="Хм", language="ru", client=client,
                                  forced_topic="equipment")
    assert forced.outcome == "ticket_opened" and forced.ticket.topic == "equipment"
    # Every contact was recorded, including the automatic answers.
    assert await count(ctx, Interaction) == 6


async def test_routing_manager_then_least_loaded_then_queue(demo_services, clock) -> None:
    ctx = demo_services.ctx
    romashka = await identify_by_phone(ctx, ROMASHKA)
    complaint = await T.open_ticket(ctx, channel="telegram", text="Жалоба на обслуживание", language="ru",
                                    client=romashka, topic="complaint")
    assert complaint.assignee_name == "Анна Петрова"  # corporate complaint -> personal manager
    assert complaint.department_code == "subscriber_service"
    assert complaint.priority == "urgent"  # high + corporate boost
    anna = await staff_actor(ctx, "manager1@svyazservice.example")
    await set_on_duty(ctx, anna, False)
    tariff = await T.open_ticket(ctx, channel="telegram", text="Смена тарифа", language="ru", client=romashka,
                                 topic="tariff_change")
    assert tariff.assignee_name == "Сергей Иванов"  # manager off duty: least-loaded on duty

    # Tech support: two agents with a cap of 25 each; the 51st ticket waits in the queue.
    ivanov = await identify_by_phone(ctx, IVANOV)
    assigned: dict[str | None, int] = {}
    for i in range(51):
        t = await T.open_ticket(ctx, channel="telegram", text=f"Нет интернета {i}", language="ru", client=ivanov,
                                topic="no_connection")
        assigned[t.assignee_name] = assigned.get(t.assignee_name, 0) + 1
    assert assigned == {"Алексей Морозов": 25, "Игорь Новиков": 25, None: 1}


async def test_lifecycle_with_events_client_updates_and_csat(demo_services, clock) -> None:
    ctx = demo_services.ctx
    client = await identify_by_phone(ctx, PETROVA)
    async with ctx.uow() as uow:  # the client uses Telegram
        customer = await uow.customers.get(client.customer_id)
        customer.telegram_user_id = 7002
        await uow.commit()
    opened = await T.open_ticket(ctx, channel="telegram", text="Роутер мигает красным", language="ru",
                                 client=client, topic="equipment", message_key="m1")
    assert opened.status == "new" and opened.assignee_name is not None  # routed to the least-loaded agent
    email = "support1" if opened.assignee_name == "Алексей Морозов" else "support2"
    agent = await staff_actor(ctx, f"{email}@svyazservice.example")
    taken = await T.take_ticket(ctx, agent, opened.id)
    assert taken.status == "in_progress" and taken.assignee_name == opened.assignee_name
    clock.advance(minutes=10)
    replied = await T.reply_to_ticket(ctx, agent, opened.id, "Перезагрузите роутер <b>кнопкой</b>")
    assert replied.status == "in_progress"
    waiting = await T.set_waiting_client(ctx, agent, opened.id)
    assert waiting.waiting_client
    due_before = waiting.resolution_due
    clock.advance(hours=2)
    after = await T.add_client_message(ctx, client, opened.id, "Не помогло", message_key="m2")
    assert after.status == "in_progress"
    assert after.resolution_due == due_before + timedelta(hours=2)  # 24x7: the wait is added back
    repeated = await T.add_client_message(ctx, client, opened.id, "Не помогло", message_key="m2")
    assert repeated.id == opened.id
    resolved = await T.resolve_ticket(ctx, agent, opened.id, "Заменили блок питания")
    assert resolved.status == "resolved"
    with pytest.raises(InvalidRequest):
        await T.rate_ticket(ctx, client, opened.id, 6)
    rated = await T.rate_ticket(ctx, client, opened.id, 5, "Спасибо!")
    assert rated.csat_score == 5

    async with ctx.uow() as uow:
        rows = list(await uow.session.scalars(select(Notification).where(
            Notification.recipient_kind == "customer").order_by(Notification.id)))
    assert [r.kind for r in rows] == ["client_update", "client_update", "csat"]
    assert "&lt;b&gt;кнопкой&lt;/b&gt;" in rows[1].payload["text"]  # staff text escaped for HTML
    assert rows[2].payload["buttons"][0][4]["callback_data"] == f"c:rate:{opened.id}_5"
    assert T.parse_rating(f"c:rate:{opened.id}_5") == (opened.id, 5)
    assert T.parse_rating("c:rate:12_9") is None and T.parse_rating("t:take:1") is None

    history = await T.ticket_history(ctx, client.actor, opened.id)
    kinds = [e.kind for e in history]
    assert kinds[:2] == ["opened", "taken"] and "reply" in kinds and "rated" in kinds
    await T.add_internal_note(ctx, agent, opened.id, "internal only")
    assert "note" not in [e.kind for e in await T.ticket_history(ctx, client.actor, opened.id)]
    assert "note" in [e.kind for e in await T.ticket_history(ctx, agent, opened.id)]

    # A message after resolution reopens; auto-close closes a quiet resolved ticket.
    reopened = await T.add_client_message(ctx, client, opened.id, "Опять мигает")
    assert reopened.status == "in_progress"
    await T.resolve_ticket(ctx, agent, opened.id)
    closer = AutoCloser(ctx)
    assert await closer.run_once() == 0
    clock.advance(hours=73)
    assert await closer.run_once() == 1
    assert (await T.get_client_ticket(ctx, client, opened.number)).status == "closed"
    with pytest.raises(InvalidRequest):
        await T.add_client_message(ctx, client, opened.id, "ещё")


async def test_permissions(demo_services, clock) -> None:
    ctx = demo_services.ctx
    ivanov = await identify_by_phone(ctx, IVANOV)
    petrova = await identify_by_phone(ctx, PETROVA)
    tariff = await T.open_ticket(ctx, channel="telegram", text="Смена тарифа", language="ru", client=ivanov,
                                 topic="tariff_change")
    support = await staff_actor(ctx, "support1@svyazservice.example")
    with pytest.raises(PermissionDenied):  # another department's ticket
        await T.resolve_ticket(ctx, support, tariff.id)
    with pytest.raises(PermissionDenied):
        await T.take_ticket(ctx, support, tariff.id)
    with pytest.raises(PermissionDenied):
        await T.ticket_history(ctx, support, tariff.id)
    with pytest.raises(NotFound):  # another client's ticket does not exist for her
        await T.get_client_ticket(ctx, petrova, tariff.id)
    with pytest.raises(NotFound):
        await T.get_client_ticket(ctx, petrova, tariff.number)
    with pytest.raises(NotFound):
        await T.ticket_history(ctx, petrova.actor, tariff.id)
    with pytest.raises(NotFound):
        await T.rate_ticket(ctx, petrova, tariff.id, 1)
    with pytest.raises(NotFound):
        await T.add_client_message(ctx, petrova, tariff.id, "hi")
    with pytest.raises(PermissionDenied):  # a client pretending to be staff (forged callback)
        await T.take_ticket(ctx, ivanov.actor, tariff.id)
    # The assignee's colleague cannot answer for them, but the supervisor can, and can take over.
    colleague = await staff_actor(ctx, "manager1@svyazservice.example")
    assignee = (await T.get_staff_ticket(ctx, colleague, tariff.number)).assignee_id
    other_email = "manager2@svyazservice.example" if assignee != (await _id(ctx, "manager2")) else \
        "manager1@svyazservice.example"
    other = await staff_actor(ctx, other_email)
    with pytest.raises(PermissionDenied):
        await T.reply_to_ticket(ctx, other, tariff.id, "I'll answer")
    lead = await staff_actor(ctx, "subs.lead@svyazservice.example")
    assert (await T.take_ticket(ctx, lead, tariff.id)).assignee_name == "Елена Соколова"
    # Escalation moves the ticket up (subscriber service -> finance) and its supervisor may follow it.
    escalated = await T.escalate_ticket(ctx, lead, tariff.id)
    assert escalated.department_code == "finance" and escalated.priority == "high"
    assert (await T.get_staff_ticket(ctx, lead, tariff.id)).id == tariff.id
    admin = await staff_actor(ctx, "admin@svyazservice.example")
    moved = await T.reassign_ticket(ctx, admin, tariff.id, department_code="billing")
    assert moved.department_code == "billing" and moved.assignee_name == "Николай Попов"
    with pytest.raises(InvalidRequest):
        await T.reassign_ticket(ctx, admin, tariff.id, department_code="nowhere")
    # Statistics are for supervisors and admins.
    with pytest.raises(PermissionDenied):
        await T.staff_statistics(ctx, support, since=clock.now - timedelta(days=1), until=clock.now)


async def _id(ctx, prefix: str) -> int:  # type: ignore[no-untyped-def]
    async with ctx.uow() as uow:
        return (await uow.staff.by_email(f"{prefix}@svyazservice.example")).id


async def test_queue_my_tickets_stats_and_staff_identity(demo_services, clock) -> None:
    ctx = demo_services.ctx
    ivanov = await identify_by_phone(ctx, IVANOV)
    async with ctx.uow() as uow:
        await uow.session.execute(update(Staff).where(Staff.email == "support1@svyazservice.example")
                                  .values(telegram_id=9001))
        await uow.session.execute(update(Staff).where(Staff.email == "support2@svyazservice.example")
                                  .values(on_duty=False))
        await uow.commit()
    low = await T.open_ticket(ctx, channel="telegram", text="Медленно", language="ru", client=ivanov,
                              topic="slow_connection")
    clock.advance(minutes=1)
    urgent = await T.open_ticket(ctx, channel="telegram", text="Нет интернета", language="ru", client=ivanov,
                                 topic="no_connection", urgent=True)
    me = await identify_staff(ctx, 9001)
    assert me is not None and me.department_code == "tech_support"
    assert await identify_staff(ctx, 123) is None
    queue = await T.staff_queue(ctx, me.actor)
    assert [t.id for t in queue] == [urgent.id, low.id]  # most urgent first
    assert urgent.priority == "urgent"
    assert {t.id for t in await T.staff_tickets(ctx, me.actor)} == {low.id, urgent.id}
    clock.advance(minutes=1)
    await T.reply_to_ticket(ctx, me.actor, urgent.id, "Смотрим")
    clock.advance(minutes=30)
    await T.resolve_ticket(ctx, me.actor, urgent.id)
    await T.rate_ticket(ctx, ivanov, urgent.id, 4)
    lead = await staff_actor(ctx, "support.lead@svyazservice.example")
    stats = await T.staff_statistics(ctx, lead, since=clock.now - timedelta(days=1), until=clock.now + timedelta(1))
    assert stats.created == 2 and stats.resolved == 1 and stats.open_total == 1
    assert stats.first_response_median_seconds == pytest.approx(60.0)
    assert stats.resolution_median_seconds == pytest.approx(31 * 60.0)
    assert stats.csat_average == 4 and stats.csat_count == 1
    assert stats.open_by_department[0].key == "tech_support"
    assert (await T.list_client_tickets(ctx, ivanov))[0].id == low.id  # open first
    assert (await T.client_open_ticket(ctx, ivanov)).id == low.id


async def test_card_is_escaped_and_fits_telegram(demo_services, clock) -> None:
    ctx = demo_services.ctx
    romashka = await identify_by_phone(ctx, ROMASHKA)
    text = "<script>alert(1)</script> & " + "очень длинное описание проблемы " * 2000  # ~64 KB
    ticket = await T.open_ticket(ctx, channel="telegram", text=text, language="ru", client=romashka,
                                 topic="slow_connection")
    assert len((await T.get_client_ticket(ctx, romashka, ticket.id)).text) == len(text)  # kept whole
    rendered, buttons = await T.render_ticket_alert(ctx, ticket.id, {"event": "opened"}, "ru")
    assert len(rendered) <= 4096
    assert "<script>" not in rendered and "&lt;script&gt;" in rendered
    assert "ООО «Ромашка»" in rendered and "Анна Петрова" in rendered and "100001" in rendered
    assert rendered.count("<blockquote>") == 1 and rendered.count("</blockquote>") == 1
    assert buttons[0][0]["callback_data"] == f"t:take:{ticket.id}"
    card = await T.render_customer_card(ctx, ticket.id, "en")
    assert "Corporate" in card and "Personal manager" in card


async def test_callback_request_and_department_hours(demo_services, clock) -> None:
    ctx = demo_services.ctx
    romashka = await identify_by_phone(ctx, ROMASHKA)
    ticket = await T.open_callback_request(ctx, romashka, "8 (495) 111-22-33", "ru", message_key="ivr:CA1:cb")
    assert ticket.topic == "human" and ticket.assignee_name == "Анна Петрова"
    again = await T.open_callback_request(ctx, romashka, "84951112233", "ru", message_key="ivr:CA1:cb")
    assert again.id == ticket.id
    stranger = await T.open_callback_request(ctx, None, "+79990001122", "en", channel="ivr")
    assert stranger.customer_id is None and stranger.department_code == "call_center"
    saturday = datetime(2026, 11, 14, 9, 0, tzinfo=UTC)
    assert not await T.department_is_open(ctx, "subscriber_service", saturday)
    assert await T.department_is_open(ctx, "call_center", saturday)
    assert await T.next_opening(ctx, "subscriber_service", saturday) == datetime(2026, 11, 16, 6, 0, tzinfo=UTC)
    with pytest.raises(InvalidRequest):
        await T.department_is_open(ctx, "nowhere", saturday)


async def test_sla_watcher_warns_then_breaches_once_with_two_watchers(demo_services, clock) -> None:
    ctx = demo_services.ctx
    ivanov = await identify_by_phone(ctx, IVANOV)
    ticket = await T.open_ticket(ctx, channel="telegram", text="Нет интернета", language="ru", client=ivanov,
                                 topic="no_connection")  # first response due in 15 min (24x7)
    watchers = [SlaWatcher(ctx), SlaWatcher(ctx)]
    clock.advance(minutes=11)
    assert sum(await asyncio.gather(*(w.run_once() for w in watchers))) == 0
    clock.advance(minutes=1)  # 12 of 15 minutes = 80 %
    assert sum(await asyncio.gather(*(w.run_once() for w in watchers))) == 1
    assert sum(await asyncio.gather(*(w.run_once() for w in watchers))) == 0
    clock.advance(minutes=4)
    assert sum(await asyncio.gather(*(w.run_once() for w in watchers))) == 1
    assert sum(await asyncio.gather(*(w.run_once() for w in watchers))) == 0
    async with ctx.uow() as uow:
        row = await uow.tickets.get(ticket.id)
        assert row.first_response_warned_at is not None and row.first_response_breached_at is not None
        kinds = [e.kind for e, _ in await uow.tickets.events(ticket.id)]
        assert kinds.count("sla_warning") == 1 and kinds.count("sla_breach") == 1
        alerts = list(await uow.session.scalars(select(Notification).where(Notification.kind == "sla_breach")))
        supervisor = await uow.staff.by_email("support.lead@svyazservice.example")
    assert supervisor.id in {a.staff_id for a in alerts}  # no group chat configured: supervisors directly
    # Waiting for the client pauses the watch.
    agent = await staff_actor(ctx, "support1@svyazservice.example")
    other = await T.open_ticket(ctx, channel="telegram", text="Медленно", language="ru", client=ivanov,
                                topic="slow_connection")
    await T.set_waiting_client(ctx, await staff_actor(ctx, "support.lead@svyazservice.example"), other.id)
    clock.advance(days=3)
    await watchers[0].run_once()
    async with ctx.uow() as uow:
        assert (await uow.tickets.get(other.id)).resolution_breached_at is None
    assert agent.kind == "staff"


async def test_unidentified_telegram_sender_gets_answers_in_their_chat(demo_services, clock) -> None:
    ctx = demo_services.ctx
    result = await handle_inbound(ctx, channel="telegram", text="Оборван кабель во дворе", language="ru",
                                  client=None, sender="880055", message_key="tg:prospect")
    assert result.outcome == "ticket_opened" and result.ticket.customer_id is None
    field = await staff_actor(ctx, "field1@svyazservice.example")
    await T.reply_to_ticket(ctx, field, result.ticket.id, "Приедем завтра")
    async with ctx.uow() as uow:
        [row] = list(await uow.session.scalars(select(Notification).where(Notification.recipient_kind == "chat")))
    assert row.chat_id == 880055 and "Приедем завтра" in row.payload["text"]
