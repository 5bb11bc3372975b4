"""identify_telegram_sender: staff, client, both or neither, and the redelivery flag, in one statement; the
answers must equal the separate look-ups it replaced on the bot's hot path."""

from __future__ import annotations

from sqlalchemy import select

from handlers.identification import (
    identify_by_phone,
    identify_by_telegram,
    identify_telegram_sender,
    link_telegram,
)
from handlers.staff import identify_staff
from storage.models import Account, CustomerPhone, ProcessedUpdate, Staff


async def _staff(ctx, email: str) -> Staff:
    async with ctx.uow() as uow:
        return await uow.session.scalar(select(Staff).where(Staff.email == email))


async def _set_staff(ctx, staff_id: int, **values) -> None:
    async with ctx.uow() as uow:
        staff = await uow.staff.get(staff_id)
        for name, value in values.items():
            setattr(staff, name, value)
        await uow.commit()


async def test_nobody(demo_services) -> None:
    sender = await identify_telegram_sender(demo_services.ctx, 987_654_321, update_key="1")
    assert sender.staff is None and sender.client is None
    assert not sender.already_handled and not sender.staff_unreachable


async def test_client_with_several_phones_and_accounts_equals_the_plain_look_up(demo_services) -> None:
    ctx = demo_services.ctx
    client = await identify_by_phone(ctx, "+79161234567")
    await link_telegram(ctx, client.customer_id, 700_001)
    async with ctx.uow() as uow:
        uow.session.add(CustomerPhone(customer_id=client.customer_id, phone="+79160000001"))
        uow.session.add(Account(customer_id=client.customer_id, number="299999", pin_hash="x"))
        await uow.commit()
    sender = await identify_telegram_sender(ctx, 700_001)
    expected = await identify_by_telegram(ctx, 700_001)
    assert sender.staff is None
    assert sender.client == expected
    assert len(expected.phones) == 2 and len(expected.account_numbers) == 2


async def test_company_client_keeps_its_manager_name(demo_services) -> None:
    ctx = demo_services.ctx
    company = await identify_by_phone(ctx, "+74951112233")
    await link_telegram(ctx, company.customer_id, 700_002)
    sender = await identify_telegram_sender(ctx, 700_002)
    assert sender.client is not None and sender.client.manager_name == "Анна Петрова"


async def test_staff_equals_identify_staff_and_inactive_staff_is_nobody(demo_services) -> None:
    ctx = demo_services.ctx
    staff = await _staff(ctx, "support1@svyazservice.example")
    await _set_staff(ctx, staff.id, telegram_id=700_003)
    sender = await identify_telegram_sender(ctx, 700_003)
    assert sender.staff == await identify_staff(ctx, 700_003)
    assert sender.staff.department_code == "tech_support" and sender.client is None
    await _set_staff(ctx, staff.id, is_active=False)
    assert (await identify_telegram_sender(ctx, 700_003)).staff is None


async def test_staff_who_is_also_a_customer_gets_both_and_the_unreachable_flag(demo_services) -> None:
    ctx = demo_services.ctx
    staff = await _staff(ctx, "manager2@svyazservice.example")
    await _set_staff(ctx, staff.id, telegram_id=700_004, telegram_unreachable=True)
    client = await identify_by_phone(ctx, "+79262345678")
    await link_telegram(ctx, client.customer_id, 700_004)
    sender = await identify_telegram_sender(ctx, 700_004)
    assert sender.staff is not None and sender.staff.staff_id == staff.id and sender.staff_unreachable
    assert sender.client is not None and sender.client.customer_id == client.customer_id


async def test_already_handled_only_for_this_update_of_telegram(demo_services) -> None:
    ctx = demo_services.ctx
    async with ctx.uow() as uow:
        uow.session.add(ProcessedUpdate(source="telegram", key="4242", status="done"))
        uow.session.add(ProcessedUpdate(source="billing", key="4243", status="done"))
        await uow.commit()
    assert (await identify_telegram_sender(ctx, 1, update_key="4242")).already_handled
    assert not (await identify_telegram_sender(ctx, 1, update_key="4243")).already_handled
    assert not (await identify_telegram_sender(ctx, 1, update_key=None)).already_handled


async def test_status_of_the_clients_current_ticket(demo_services) -> None:
    from handlers.intake import handle_inbound
    from handlers.tickets import client_open_ticket

    ctx = demo_services.ctx
    client = await identify_by_phone(ctx, "+79161234567")
    client = await link_telegram(ctx, client.customer_id, 700_005)
    assert (await identify_telegram_sender(ctx, 700_005)).client_ticket_status is None
    result = await handle_inbound(ctx, channel="telegram", text="Интернет не работает второй день, помогите",
                                  language="ru", client=client, message_key="tg:sender-1", forced_topic="equipment")
    assert result.ticket is not None
    for status in ("in_progress", "waiting_client", "resolved"):
        async with ctx.uow() as uow:
            (await uow.tickets.get(result.ticket.id)).status = status
            await uow.commit()
        sender = await identify_telegram_sender(ctx, 700_005)
        assert sender.client_ticket_status == status == (await client_open_ticket(ctx, client)).status
    async with ctx.uow() as uow:
        (await uow.tickets.get(result.ticket.id)).status = "closed"
        await uow.commit()
    assert (await identify_telegram_sender(ctx, 700_005)).client_ticket_status is None
