"""Calls through the IVR with the real use cases (identification, billing, documents, tickets) on both
backends: what the caller hears must match what the database then holds."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from typing import Any

import pytest
from aiohttp import web
from pydantic import SecretStr
from sqlalchemy import select

from ivr.routes import setup
from ivr.speech import say_digits
from ivr.usecases import UseCases
from storage.billing_embedded import EmbeddedBilling
from storage.models import Call, Notification, Staff, Ticket, TicketAttachment
from tests.helpers import http_client
from tests.integration.test_ivr_calls import BASE, KNOWN, TOKEN, Phone, spoken

# Monday 23 Nov 2026, 11:00 in Moscow: every department is open.
OPEN_HOURS = datetime(2026, 11, 23, 8, 0, tzinfo=UTC)
# Saturday 28 Nov 2026, 12:00 in Moscow: the subscriber service (managers) is closed until Monday 09:00.
WEEKEND = datetime(2026, 11, 28, 9, 0, tzinfo=UTC)


@pytest.fixture
async def real_ivr(demo_services):  # type: ignore[no-untyped-def]
    svc = demo_services
    svc.ctx.clock = lambda: OPEN_HOURS
    settings = svc.settings.model_copy(update={"twilio_auth_token": SecretStr(TOKEN), "public_base_url": BASE})
    use_cases = UseCases.real()
    assert use_cases.missing() == []
    app = web.Application()
    setup(app, svc.ctx, settings, use_cases=use_cases)
    async with http_client(app) as client:
        yield svc, client


async def _ticket_of_call(svc: Any) -> Ticket:
    async with svc.ctx.uow() as uow:
        tickets = list(await uow.session.scalars(select(Ticket).order_by(Ticket.id.desc())))
        assert tickets
        return tickets[0]


async def test_balance_from_the_embedded_billing(real_ivr):  # type: ignore[no-untyped-def]
    svc, client = real_ivr
    phone = Phone(client, KNOWN, "CA" + "1" * 31 + "a")
    await phone.dial_in()
    root = await phone.press("1")
    text = spoken(root)
    assert "два ноль ноль ноль ноль один" in text and "рубл" in text and "Последний платёж" in text


async def test_pin_identification_with_the_real_use_case(real_ivr):  # type: ignore[no-untyped-def]
    svc, client = real_ivr
    phone = Phone(client, "+79990001122", "CA" + "2" * 31 + "a")
    await phone.dial_in()
    await phone.press("200001#")
    root = await phone.press("0001#")
    assert "Иван Иванович" in spoken(root)
    async with svc.ctx.uow() as uow:
        call = await uow.session.scalar(select(Call).where(Call.call_sid == phone.sid))
        assert call is not None and call.customer_id is not None


async def test_spoken_problem_opens_a_ticket_read_digit_by_digit(real_ivr):  # type: ignore[no-untyped-def]
    svc, client = real_ivr
    phone = Phone(client, KNOWN, "CA" + "3" * 31 + "a")
    await phone.dial_in()
    await phone.press("3")
    root = await phone.say_words("пропал интернет, роутер мигает красным")
    ticket = await _ticket_of_call(svc)
    assert ticket.channel == "ivr" and ticket.topic == "no_connection" and ticket.contact_phone == KNOWN
    assert "пропал интернет" in ticket.text
    assert say_digits(ticket.number, "ru") in spoken(root)
    # The department was alerted through the outbox.
    async with svc.ctx.uow() as uow:
        alerts = list(await uow.session.scalars(select(Notification).where(Notification.ticket_id == ticket.id)))
        assert alerts


async def test_voicemail_ticket_keeps_the_recording(real_ivr):  # type: ignore[no-untyped-def]
    svc, client = real_ivr
    phone = Phone(client, KNOWN, "CA" + "4" * 31 + "a")
    await phone.dial_in()
    await phone.press("3")
    await phone.press("1")
    url = "https://api.twilio.com/2010-04-01/Accounts/AC0/Recordings/RE42"
    await phone.post(phone.action("Record"), {"RecordingUrl": url, "RecordingDuration": "9"})
    ticket = await _ticket_of_call(svc)
    async with svc.ctx.uow() as uow:
        refs = list(await uow.session.scalars(select(TicketAttachment.ref)
                                              .where(TicketAttachment.ticket_id == ticket.id)))
    assert refs == [url]


async def test_documents_go_to_the_email_on_file_or_nowhere(real_ivr):  # type: ignore[no-untyped-def]
    svc, client = real_ivr
    phone = Phone(client, KNOWN, "CA" + "5" * 31 + "a")  # Иванов: e-mail on file, no Telegram
    await phone.dial_in()
    await phone.press("2")
    await phone.press("1")  # invoices
    root = await phone.press("1")  # last month
    assert "электронную почту" in spoken(root)
    # Sent at once, or (files being prepared on a busy machine) a little later: either way it arrives.
    for _ in range(300):
        async with svc.ctx.uow() as uow:
            sent = list(await uow.session.scalars(select(Notification).where(Notification.kind == "document")))
        if sent:
            break
        await asyncio.sleep(0.1)
    assert sent and all(n.payload.get("email") == "ivanov@mail.example" for n in sent)
    no_contact = Phone(client, "+79154567890", "CA" + "6" * 31 + "a")  # Кузнецова: neither
    await no_contact.dial_in()
    await no_contact.press("2")
    await no_contact.press("1")
    root = await no_contact.press("1")
    assert "некуда" in spoken(root)


async def test_out_of_hours_manager_callback_is_assigned_to_the_manager(real_ivr):  # type: ignore[no-untyped-def]
    svc, client = real_ivr
    svc.ctx.clock = lambda: WEEKEND
    phone = Phone(client, "+74951112233", "CA" + "7" * 31 + "a")  # ООО «Ромашка», manager Анна Петрова
    await phone.dial_in()
    root = await phone.press("4")
    assert root.find("Dial") is None
    text = spoken(root)
    assert "обратный звонок" in text and "тридцатого ноября" in text and "9:00" in text
    ticket = await _ticket_of_call(svc)
    async with svc.ctx.uow() as uow:
        manager = await uow.session.scalar(select(Staff).where(Staff.email == "manager1@svyazservice.example"))
    assert ticket.assignee_id == manager.id and ticket.contact_phone == "+74951112233"
    assert say_digits(ticket.number, "ru") in text


async def test_manager_in_hours_is_dialled(real_ivr):  # type: ignore[no-untyped-def]
    svc, client = real_ivr
    phone = Phone(client, "+74951112233", "CA" + "8" * 31 + "a")
    await phone.dial_in()
    root = await phone.press("4")
    assert root.find("Dial/Number").text == "+74950000201"  # type: ignore[union-attr]


class SlowBilling(EmbeddedBilling):
    async def account_balance(self, number: str):  # type: ignore[no-untyped-def]
        await asyncio.sleep(30)
        return await super().account_balance(number)


async def test_slow_billing_is_reported_within_the_budget(real_ivr):  # type: ignore[no-untyped-def]
    svc, client = real_ivr
    svc.ctx.billing = SlowBilling(svc.ctx)
    phone = Phone(client, KNOWN, "CA" + "9" * 31 + "a")
    await phone.dial_in()
    loop = asyncio.get_running_loop()
    started = loop.time()
    root = await phone.press("1")
    assert loop.time() - started < 8  # 2 s budget; generous for a loaded CI machine
    assert "недоступны" in spoken(root)
