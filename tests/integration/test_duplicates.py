"""Duplicate customers: found by phones, e-mails and fuzzy names; merge moves everything and loses nothing."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import func, select

from handlers.dto import InvalidRequest
from handlers.duplicates import CustomerRecord, find_duplicate_pairs, find_duplicates, merge_customers
from handlers.identification import client_profile, identify_by_phone, link_telegram, record_consent
from handlers.imports import import_customers
from storage.models import (
    Account,
    Call,
    Customer,
    CustomerPhone,
    Department,
    Interaction,
    Notification,
    Subscription,
    Ticket,
)


def test_pure_matching() -> None:
    records = [
        CustomerRecord(1, "Иванов Иван Иванович", ("+79160000001",), "ivanov@mail.example"),
        CustomerRecord(2, "Иваноф Иван Иванович", ("+79160000001",), None),  # typo, same phone
        CustomerRecord(3, "ООО «Ромашка»", ("+74950000001",), "office@romashka.example"),
        CustomerRecord(4, "Ромашка ООО", ("+74950000002",), "office@romashka.example"),  # same e-mail
        CustomerRecord(5, "Петрова Мария", ("+79160000005",), None),
        CustomerRecord(6, "Петров Сергей", ("+79160000005",), None),  # family phone: uncertain
        CustomerRecord(7, "Сидоров Алексей", ("+79160000007",), None),
        CustomerRecord(8, "Сидоров Алексей", ("+79160000008",), None),  # namesake: uncertain
        CustomerRecord(9, "Completely Different", ("+79160000009",), None),
    ]
    pairs = {(p.a, p.b): p for p in find_duplicate_pairs(records)}
    assert pairs[(1, 2)].sure and "same phone" in pairs[(1, 2)].reasons
    assert pairs[(3, 4)].sure and "same e-mail" in pairs[(3, 4)].reasons
    assert not pairs[(5, 6)].sure
    assert not pairs[(7, 8)].sure
    assert not any(9 in key for key in pairs)


async def test_found_after_import_and_merged(demo_services, tmp_path: Path) -> None:
    ctx = demo_services.ctx
    csv = tmp_path / "c.csv"
    # The same client recorded again by another office: typo in the name, phone in another format.
    csv.write_text("account,name,phone,email\n"
                   "200101,Иванов Иван Иваныч,8 916 123-45-67,ivan.new@mail.example\n", encoding="utf-8")
    await import_customers(ctx, csv)
    pairs = await find_duplicates(ctx)
    async with ctx.uow() as uow:
        original = await uow.session.scalar(select(Account.customer_id).where(Account.number == "200001"))
        copy = await uow.session.scalar(select(Account.customer_id).where(Account.number == "200101"))
    match = next(p for p in pairs if {p.a, p.b} == {original, copy})
    assert match.sure
    # While both exist the phone is ambiguous: nobody is identified by it.
    assert await identify_by_phone(ctx, "+79161234567") is None

    # History on both records.
    async with ctx.uow() as uow:
        dept = await uow.session.scalar(select(Department.id).limit(1))
        for cid, n in ((original, 1), (copy, 2)):
            uow.session.add(Ticket(number=f"T-{n}", customer_id=cid, channel="telegram", topic="other",
                                   department_id=dept, subject="s"))
            uow.session.add(Interaction(channel="telegram", customer_id=cid, text="hi"))
            uow.session.add(Call(call_sid=f"CA{n}", customer_id=cid))
            uow.session.add(Notification(kind="x", recipient_kind="customer", customer_id=cid, payload={}))
        uow.session.add(Subscription(customer_id=copy, kind="low_balance", enabled=True))
        uow.session.add(Subscription(customer_id=copy, kind="payment_received", enabled=True))
        uow.session.add(Subscription(customer_id=original, kind="payment_received", enabled=False))
        await uow.commit()
    await record_consent(ctx, copy)
    await link_telegram(ctx, copy, 31337)

    result = await merge_customers(ctx, original, copy)
    assert result.moved["accounts"] == 1 and result.moved["tickets"] == 1 and result.moved["calls"] == 1
    async with ctx.uow() as uow:
        s = uow.session
        for model in (Ticket, Interaction, Call, Notification):
            assert await s.scalar(select(func.count()).select_from(model).where(model.customer_id == copy)) == 0
            assert await s.scalar(select(func.count()).select_from(model).where(model.customer_id == original)) == 2
        kinds = dict((await s.execute(select(Subscription.kind, Subscription.enabled)
                                      .where(Subscription.customer_id == original))).all())
        assert kinds == {"low_balance": True, "payment_received": False}  # the survivor's own choice kept
        merged = await s.get(Customer, copy)
        assert merged.merged_into_id == original
        assert await s.scalar(select(func.count()).select_from(CustomerPhone)
                              .where(CustomerPhone.customer_id == copy)) == 0

    survivor = await client_profile(ctx, copy)  # the old id resolves to the survivor
    assert survivor.customer_id == original
    assert set(survivor.account_numbers) == {"200001", "200101"}
    assert survivor.telegram_user_id == 31337 and survivor.has_consent
    assert survivor.email == "ivanov@mail.example"  # the survivor's own e-mail is kept
    assert (await identify_by_phone(ctx, "+79161234567")).customer_id == original
    assert not any({p.a, p.b} == {original, copy} for p in await find_duplicates(ctx))

    with pytest.raises(InvalidRequest):
        await merge_customers(ctx, original, copy)
    with pytest.raises(InvalidRequest):
        await merge_customers(ctx, original, original)
