"""The outbox dispatcher against the fake Telegram Bot API: delivery, 429/5xx/403, fallbacks, crash between
send and mark, several dispatchers at once, no sender configured. Both backends."""

from __future__ import annotations

import asyncio
from collections import Counter
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import select, update

from bot.sender import AiogramSender, make_bot
from handlers import tickets as T
from handlers.identification import identify_by_phone
from handlers.notifications.dispatcher import NotificationDispatcher, split_message
from handlers.notifications.limits import TelegramLimits
from handlers.ports import MessageSender, SentMessage
from handlers.staff import identify_staff, staff_profile
from service.container import Services
from storage.db import create_engine
from storage.models import Department, Notification, Staff

IVANOV = "+79161234567"
FAST = TelegramLimits(messages_per_second=2000, chat_interval=0.01, group_interval=0.01)


class OffsetClock:
    """Real time plus an offset that tests move forward (leases and backoffs are wall-clock data)."""

    def __init__(self) -> None:
        self.offset = timedelta(0)

    def __call__(self) -> datetime:
        return datetime.now(UTC) + self.offset

    def advance(self, **kwargs: float) -> None:
        self.offset += timedelta(**kwargs)


@pytest.fixture
async def env(demo_services, fake_bot_api):  # type: ignore[no-untyped-def]
    ctx = demo_services.ctx
    ctx.clock = OffsetClock()
    ctx.classifier = None
    bot = make_bot(fake_bot_api.token, fake_bot_api.base_url)
    ctx.sender = AiogramSender(bot)
    async with ctx.uow() as uow:  # tech support agents and their lead use Telegram
        for email, tg in (("support1", 501), ("support2", 502), ("support.lead", 503)):
            await uow.session.execute(update(Staff).where(Staff.email == f"{email}@svyazservice.example")
                                      .values(telegram_id=tg))
        await uow.commit()
    try:
        yield demo_services, fake_bot_api
    finally:
        await bot.session.close()


async def open_no_connection(ctx, key: str | None = None):  # type: ignore[no-untyped-def]
    client = await identify_by_phone(ctx, IVANOV)
    return await T.open_ticket(ctx, channel="telegram", text="Нет интернета <дома>", language="ru", client=client,
                               topic="no_connection", message_key=key)


async def rows(ctx, *where):  # type: ignore[no-untyped-def]
    async with ctx.uow() as uow:
        return list(await uow.session.scalars(select(Notification).where(*where).order_by(Notification.id)))


async def test_alert_is_delivered_with_card_buttons_and_reply_lookup(env) -> None:
    services, api = env
    ctx = services.ctx
    ticket = await open_no_connection(ctx)
    assert await NotificationDispatcher(ctx, limits=FAST).run_once() == 1
    chat = 501 if ticket.assignee_name == "Алексей Морозов" else 502
    sent = api.sent("sendMessage", chat_id=chat)
    assert len(sent) == 1
    assert ticket.number in sent[0]["text"] and "&lt;дома&gt;" in sent[0]["text"]
    assert sent[0]["parse_mode"] == "HTML"
    callbacks = [b["callback_data"] for row in sent[0]["reply_markup"]["inline_keyboard"] for b in row]
    assert f"t:take:{ticket.id}" in callbacks and f"t:history:{ticket.id}" in callbacks
    [row] = await rows(ctx)
    assert row.status == "sent" and row.telegram_message_id is not None and row.chat_id == chat
    assert await T.ticket_for_alert_reply(ctx, chat, row.telegram_message_id) == ticket.id
    assert await T.ticket_for_alert_reply(ctx, chat, 999999) is None
    assert await NotificationDispatcher(ctx, limits=FAST).run_once() == 0  # nothing twice


async def test_429_waits_retry_after_without_counting_an_attempt(env) -> None:
    services, api = env
    ctx = services.ctx
    await open_no_connection(ctx)
    api.fail_next("sendMessage", 429, retry_after=1)
    dispatcher = NotificationDispatcher(ctx, limits=FAST)
    await dispatcher.run_once()
    [row] = await rows(ctx)
    assert row.status == "pending" and row.attempts == 0 and "429" in row.last_error
    assert row.next_attempt_at > ctx.clock() + timedelta(seconds=0.5)
    assert await dispatcher.run_once() == 0  # not due yet
    ctx.clock.advance(seconds=1.1)
    assert await dispatcher.run_once() == 1
    [row] = await rows(ctx)
    assert row.status == "sent" and len(api.sent("sendMessage")) == 1


async def test_server_errors_back_off_and_then_deliver(env) -> None:
    services, api = env
    ctx = services.ctx
    await open_no_connection(ctx)
    api.fail_next("sendMessage", 502, times=2)
    dispatcher = NotificationDispatcher(ctx, limits=FAST)
    await dispatcher.run_once()
    [row] = await rows(ctx)
    assert row.status == "pending" and row.attempts == 1
    first_delay = row.next_attempt_at - ctx.clock()
    assert timedelta(seconds=1) < first_delay < timedelta(seconds=3)
    ctx.clock.advance(seconds=3)
    await dispatcher.run_once()
    [row] = await rows(ctx)
    assert row.attempts == 2 and row.next_attempt_at - ctx.clock() > first_delay  # growing backoff
    ctx.clock.advance(seconds=10)
    await dispatcher.run_once()
    [row] = await rows(ctx)
    assert row.status == "sent" and len(api.sent("sendMessage")) == 1


async def test_blocked_staff_member_falls_back_to_the_department_group(env) -> None:
    services, api = env
    ctx = services.ctx
    async with ctx.uow() as uow:
        await uow.session.execute(update(Department).where(Department.code == "tech_support")
                                  .values(telegram_chat_id=-100500))
        await uow.commit()
    ticket = await open_no_connection(ctx)
    api.fail_next("sendMessage", 403)
    dispatcher = NotificationDispatcher(ctx, limits=FAST)
    await dispatcher.run_once()
    async with ctx.uow() as uow:
        assignee = await uow.staff.get(ticket.assignee_id)
        assert assignee.telegram_unreachable
    original, fallback = await rows(ctx)
    assert original.status == "rerouted" and "unreachable" in original.last_error
    assert fallback.recipient_kind == "group" and fallback.chat_id == -100500
    await dispatcher.run_once()
    assert len(api.sent("sendMessage", chat_id=-100500)) == 1
    # The next alert for the same person goes to the group straight away.
    client = await identify_by_phone(ctx, IVANOV)
    await T.add_client_message(ctx, client, ticket.id, "Ещё фото")
    await dispatcher.run_once()
    await dispatcher.run_once()
    assert len(api.sent("sendMessage", chat_id=-100500)) == 2
    # Once they write to the bot again, alerts reach them directly again.
    async with ctx.uow() as uow:
        telegram_id = (await uow.staff.get(ticket.assignee_id)).telegram_id
    assert (await identify_staff(ctx, telegram_id)).staff_id == ticket.assignee_id
    async with ctx.uow() as uow:
        assert not (await uow.staff.get(ticket.assignee_id)).telegram_unreachable


async def test_blocked_staff_without_group_goes_to_colleagues(env) -> None:
    services, api = env
    ctx = services.ctx
    ticket = await open_no_connection(ctx)
    api.fail_next("sendMessage", 403)
    dispatcher = NotificationDispatcher(ctx, limits=FAST)
    await dispatcher.run_once()
    await dispatcher.run_once()
    colleague = 502 if ticket.assignee_name == "Алексей Морозов" else 501
    assert len(api.sent("sendMessage", chat_id=colleague)) == 1
    assert len(api.sent("sendMessage", chat_id=503)) == 1  # the lead is on duty too


async def test_client_without_telegram_is_dead_with_a_reason(env) -> None:
    services, api = env
    ctx = services.ctx
    ticket = await open_no_connection(ctx)
    async with ctx.uow() as uow:
        agent = await uow.staff.get(ticket.assignee_id)
    await T.reply_to_ticket(ctx, staff_profile(agent).actor, ticket.id, "Проверьте кабель")
    dispatcher = NotificationDispatcher(ctx, limits=FAST)
    await dispatcher.run_once()
    [reply] = await rows(ctx, Notification.recipient_kind == "customer")
    assert reply.status == "dead" and "no Telegram" in reply.last_error
    # Once the client links Telegram, answers reach them there.
    async with ctx.uow() as uow:
        customer = await uow.customers.get(ticket.customer_id)
        customer.telegram_user_id = 7777
        await uow.commit()
    await T.resolve_ticket(ctx, staff_profile(agent).actor, ticket.id, "Готово")
    await dispatcher.run_once()
    [message] = api.sent("sendMessage", chat_id=7777)
    assert "Готово" in message["text"]
    assert message["reply_markup"]["inline_keyboard"][0][0]["callback_data"] == f"c:rate:{ticket.id}_1"


async def test_crash_between_send_and_mark_does_not_resend(env) -> None:
    services, api = env
    ctx = services.ctx
    await open_no_connection(ctx)
    crashing = NotificationDispatcher(ctx, limits=FAST)

    async def crash(*_args: object, **_kwargs: object) -> None:
        raise ConnectionError("process died before marking the row sent")

    crashing._mark_sent = crash  # type: ignore[method-assign]
    await crashing.run_once()
    assert len(api.sent("sendMessage")) == 1
    [row] = await rows(ctx)
    assert row.status == "pending" and row.locked_until is not None  # still leased to the dead process
    survivor = NotificationDispatcher(ctx, limits=FAST)
    assert await survivor.run_once() == 0  # the lease protects the row
    ctx.clock.advance(seconds=120)  # the lease ran out
    assert await survivor.run_once() == 1
    [row] = await rows(ctx)
    assert row.status == "sent" and row.telegram_message_id is not None
    assert len(api.sent("sendMessage")) == 1  # marked from the sent marker, not sent again


async def test_two_dispatchers_never_send_the_same_row_twice(env, settings, business_config) -> None:
    services, api = env
    ctx = services.ctx
    async with ctx.uow() as uow:
        for chat in range(1, 121):
            uow.outbox.enqueue(kind="test", recipient_kind="chat", chat_id=chat, payload={"text": f"hello {chat}"})
        await uow.commit()
    # A second "process": its own engine, its own session factory and write lock, the same database and Redis.
    other = Services(settings=settings, config=business_config, engine=create_engine(settings.database_url),
                     kv=services.kv, translator=services.translator)
    other.ctx.clock, other.ctx.sender = ctx.clock, ctx.sender
    try:
        first = NotificationDispatcher(ctx, limits=FAST, batch_size=7)
        second = NotificationDispatcher(other.ctx, limits=FAST, batch_size=7)

        async def drain(dispatcher: NotificationDispatcher) -> None:
            while await dispatcher.run_once():
                pass

        await asyncio.gather(drain(first), drain(second), drain(first), drain(second))
    finally:
        await other.engine.dispose()
    counts = Counter(call["chat_id"] for call in api.sent("sendMessage"))
    assert len(counts) == 120 and set(counts.values()) == {1}
    assert {r.status for r in await rows(ctx)} == {"sent"}


async def test_worker_wakes_up_on_new_work_and_without_sender_keeps_rows(env) -> None:
    services, api = env
    ctx = services.ctx
    stop = asyncio.Event()
    dispatcher = NotificationDispatcher(ctx, limits=FAST, poll_interval=30)  # only a wake-up can be this fast
    task = asyncio.create_task(dispatcher.run(stop))
    await asyncio.sleep(0.2)
    await open_no_connection(ctx)
    await api.wait_for(lambda calls: any(c.method == "sendMessage" for c in calls), timeout=5)
    stop.set()
    await asyncio.wait_for(task, 5)

    ctx.sender = None
    await open_no_connection(ctx, key="second")
    stop = asyncio.Event()
    task = asyncio.create_task(NotificationDispatcher(ctx, limits=FAST, poll_interval=0.05).run(stop))
    await asyncio.sleep(0.3)
    stop.set()
    await asyncio.wait_for(task, 5)
    assert [r.status for r in await rows(ctx)] == ["sent", "pending"]


class RecordingSender(MessageSender):
    def __init__(self) -> None:
        self.messages: list[tuple[int, str, object]] = []

    async def send_message(self, chat_id, text, *, buttons=None, parse_mode="HTML",  # type: ignore[no-untyped-def]
                           reply_to_message_id=None) -> SentMessage:
        self.messages.append((chat_id, text, buttons))
        return SentMessage(chat_id, len(self.messages))

    async def send_document(self, chat_id, filename, content, *, caption=None) -> SentMessage:  # type: ignore
        self.messages.append((chat_id, filename, content))
        return SentMessage(chat_id, len(self.messages))


async def test_long_texts_are_split_and_documents_sent(env, tmp_path) -> None:
    services, _api = env
    ctx = services.ctx
    sender = RecordingSender()
    ctx.sender = sender
    path = tmp_path / "act.pdf"
    path.write_bytes(b"%PDF-1.4 test")
    long_text = "\n".join(f"строка {i} " + "x" * 80 for i in range(100))  # ~9 KB
    async with ctx.uow() as uow:
        uow.outbox.enqueue(kind="test", recipient_kind="chat", chat_id=42, payload={
            "text": long_text, "buttons": [[{"text": "ok", "callback_data": "c:ok:1"}]]})
        uow.outbox.enqueue(kind="document", recipient_kind="chat", chat_id=43, payload={
            "document": {"path": str(path), "filename": "act.pdf", "caption": "Акт"}})
        await uow.commit()
    await NotificationDispatcher(ctx, limits=FAST).run_once()
    texts = [m for m in sender.messages if m[0] == 42]
    assert len(texts) == 3 and all(len(t[1]) <= 4096 for t in texts)
    assert "".join(t[1] for t in texts) == long_text
    assert texts[-1][2] is not None and texts[0][2] is None  # buttons on the last part only
    assert [m for m in sender.messages if m[0] == 43] == [(43, "act.pdf", b"%PDF-1.4 test")]
    assert split_message("a" * 10000)[0] == "a" * 4096


class DatabaseOutage:
    """Makes `ctx.uow()` fail like an unreachable database, after `allow` more units of work succeed."""

    def __init__(self, ctx) -> None:  # type: ignore[no-untyped-def]
        self._uow, self.down, self.allow = ctx.uow, False, 0
        ctx.uow = self

    def __call__(self):  # type: ignore[no-untyped-def]
        if self.down:
            if self.allow <= 0:
                raise ConnectionRefusedError(111, "Connect call failed (test outage)")
            self.allow -= 1
        return self._uow()


async def test_rows_leased_before_a_database_outage_go_out_right_after_it(env) -> None:
    """The database goes away between claiming a batch and delivering it: the rows stay leased (90 s) to
    this dispatcher, which takes them back as soon as the database answers, not when the lease runs out."""
    services, api = env
    ctx = services.ctx
    await open_no_connection(ctx)
    outage = DatabaseOutage(ctx)
    dispatcher = NotificationDispatcher(ctx, limits=FAST)
    outage.down, outage.allow = True, 1  # the claim gets through, resolving the recipient does not
    with pytest.raises(ConnectionRefusedError):
        await dispatcher.run_once()
    with pytest.raises(ConnectionRefusedError):  # still down: nothing changes
        await dispatcher.run_once()
    outage.down = False
    [row] = await rows(ctx)
    assert row.status == "pending" and row.locked_until > ctx.clock() + timedelta(seconds=60)
    assert api.sent("sendMessage") == []
    assert await NotificationDispatcher(ctx, limits=FAST).run_once() == 0  # the lease keeps others out...
    assert await dispatcher.run_once() == 1  # ...and its holder delivers at once, clock not moved
    [row] = await rows(ctx)
    assert row.status == "sent" and len(api.sent("sendMessage")) == 1
    assert await dispatcher.run_once() == 0


async def test_sent_during_the_outage_is_marked_after_it_not_sent_again(env) -> None:
    """Telegram accepted the alert, then the database went away before the row was marked sent: after the
    outage the same dispatcher marks it from the "sent" marker and does not send it twice."""
    services, api = env
    ctx = services.ctx
    await open_no_connection(ctx)
    outage = DatabaseOutage(ctx)
    dispatcher = NotificationDispatcher(ctx, limits=FAST)
    original_mark = dispatcher._mark_sent

    async def mark_during_outage(*args, **kwargs):  # type: ignore[no-untyped-def]
        outage.down = True
        return await original_mark(*args, **kwargs)

    dispatcher._mark_sent = mark_during_outage  # type: ignore[method-assign]
    assert await dispatcher.run_once() == 1  # the failure is contained to the row
    assert len(api.sent("sendMessage")) == 1
    outage.down = False
    [row] = await rows(ctx)
    assert row.status == "pending"
    dispatcher._mark_sent = original_mark  # type: ignore[method-assign]
    assert await dispatcher.run_once() == 1
    [row] = await rows(ctx)
    assert row.status == "sent" and row.telegram_message_id is not None
    assert len(api.sent("sendMessage")) == 1


async def test_a_row_claimed_by_another_dispatcher_meanwhile_is_not_taken_back(env) -> None:
    """Taking back is a compare-and-set on our lease: when it ran out and another dispatcher delivered the
    row, the first one leaves it alone."""
    services, api = env
    ctx = services.ctx
    await open_no_connection(ctx)
    outage = DatabaseOutage(ctx)
    first = NotificationDispatcher(ctx, limits=FAST)
    outage.down, outage.allow = True, 1
    with pytest.raises(ConnectionRefusedError):
        await first.run_once()
    outage.down = False
    ctx.clock.advance(seconds=120)  # the first one stayed away longer than its lease
    assert await NotificationDispatcher(ctx, limits=FAST).run_once() == 1
    assert await first.run_once() == 0
    assert len(api.sent("sendMessage")) == 1
    [row] = await rows(ctx)
    assert row.status == "sent"


async def test_worker_loop_rides_out_a_database_outage_and_delivers_within_seconds(env, caplog) -> None:
    """The loop does not crash (which would hand it to the supervisor's growing pauses): it retries on its
    own and delivers as soon as the database is back."""
    services, api = env
    ctx = services.ctx
    outage = DatabaseOutage(ctx)
    outage.down = True
    stop = asyncio.Event()
    task = asyncio.create_task(NotificationDispatcher(ctx, limits=FAST, poll_interval=0.05).run(stop))
    await asyncio.sleep(3)  # several failed passes (0.5, 1, 2 s apart...)
    assert not task.done(), "the dispatcher crashed on a database outage"
    outage.down = False
    back = asyncio.get_running_loop().time()
    await open_no_connection(ctx)
    await api.wait_for(lambda calls: any(c.method == "sendMessage" for c in calls), timeout=10)
    # The loop's retry pause is capped at 5 s: recovery is noticed within it.
    assert asyncio.get_running_loop().time() - back < 6
    stop.set()
    await asyncio.wait_for(task, 5)
    assert "notification pass failed" in caplog.text and "dispatcher recovered" in caplog.text
