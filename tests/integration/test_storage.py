from datetime import UTC, date, datetime, timedelta, timezone
from decimal import Decimal

import pytest
from sqlalchemy import func, select

from storage.models import Account, Customer, CustomerPhone, Document, Payment
from storage.seed import DEMO_CUSTOMERS, seed_demo


async def add_customer(services, number="500001", phone="+79160000001", balance="10.00"):
    async with services.uow() as uow:
        customer = Customer(name="Тест Тестович", phones=[CustomerPhone(phone=phone)])
        uow.customers.add(customer)
        await uow.session.flush()
        uow.accounts.add(Account(customer_id=customer.id, number=number, balance=Decimal(balance)))
        await uow.commit()
        return customer.id


async def test_unit_of_work_rolls_back_unless_committed(services):
    async with services.uow() as uow:
        uow.customers.add(Customer(name="forgotten"))
        await uow.session.flush()
    async with services.uow() as uow:
        assert await uow.session.scalar(select(func.count()).select_from(Customer)) == 0


async def test_unit_of_work_rolls_back_on_error(services):
    with pytest.raises(RuntimeError):
        async with services.uow() as uow:
            uow.customers.add(Customer(name="half-done"))
            await uow.session.flush()
            raise RuntimeError("boom")
    async with services.uow() as uow:
        assert await uow.session.scalar(select(func.count()).select_from(Customer)) == 0


async def test_commit_persists_and_lookups_work(services):
    customer_id = await add_customer(services)
    async with services.uow() as uow:
        found = await uow.customers.by_phone("+79160000001")
        assert [c.id for c in found] == [customer_id]
        account = await uow.accounts.by_number(" 500001 ")
        assert account is not None and account.customer_id == customer_id
        assert await uow.customers.by_phone("+79160000002") == []


async def test_read_only_unit_of_work_sees_committed_data_and_refuses_to_commit(services):
    customer_id = await add_customer(services)
    async with services.ctx.read() as uow:
        assert [c.id for c in await uow.customers.by_phone("+79160000001")] == [customer_id]
        with pytest.raises(RuntimeError, match="read-only"):
            await uow.commit()


async def test_identification_profile_lists_every_phone_and_account_once(services):
    from handlers.identification import identify_by_phone, identify_by_telegram

    customer_id = await add_customer(services)
    async with services.uow() as uow:
        customer = await uow.session.get(Customer, customer_id)
        customer.telegram_user_id = 4242
        uow.customers.add(CustomerPhone(customer_id=customer_id, phone="+79160000009"))
        uow.accounts.add(Account(customer_id=customer_id, number="500002", balance=Decimal("1")))
        await uow.commit()
    by_phone = await identify_by_phone(services.ctx, "+7 916 000-00-09")
    by_telegram = await identify_by_telegram(services.ctx, 4242)
    assert by_phone == by_telegram
    assert by_phone is not None and by_phone.customer_id == customer_id
    # Two phones x two accounts come back as four joined rows; the profile has each once, in creation order.
    assert by_phone.phones == ("+79160000001", "+79160000009")
    assert by_phone.account_numbers == ("500001", "500002")
    assert await identify_by_telegram(services.ctx, 4343) is None


async def test_money_is_exact_and_comparable_in_sql(services):
    await add_customer(services, balance="0.10")
    async with services.uow() as uow:
        account = await uow.accounts.by_number("500001")
        account.balance += Decimal("0.20")
        await uow.commit()
    async with services.uow() as uow:
        account = await uow.accounts.by_number("500001")
        assert account.balance == Decimal("0.30") and isinstance(account.balance, Decimal)
        low = await uow.session.scalars(select(Account).where(Account.balance < Decimal("0.31")))
        assert [a.number for a in low] == ["500001"]
        assert list(await uow.session.scalars(select(Account).where(Account.balance < Decimal("0.30")))) == []


async def test_datetimes_come_back_aware_utc(services):
    await add_customer(services)
    moscow = timezone(timedelta(hours=3))
    async with services.uow() as uow:
        account = await uow.accounts.by_number("500001")
        uow.payments.add(Payment(account_id=account.id, amount=Decimal("5"), paid_at=datetime(2026, 5, 1, 12, tzinfo=moscow)))
        await uow.commit()
    async with services.uow() as uow:
        account = await uow.accounts.by_number("500001")
        [payment] = await uow.payments.recent(account.id)
        assert payment.paid_at == datetime(2026, 5, 1, 9, tzinfo=UTC)
        assert payment.paid_at.tzinfo is not None


async def test_naive_datetime_is_refused(services):
    await add_customer(services)
    async with services.uow() as uow:
        account = await uow.accounts.by_number("500001")
        uow.payments.add(Payment(account_id=account.id, amount=Decimal("1"), paid_at=datetime(2026, 5, 1)))
        with pytest.raises(Exception, match="naive datetime"):
            await uow.session.flush()


async def test_documents_by_kind_and_overlapping_period(services):
    await add_customer(services)
    async with services.uow() as uow:
        account = await uow.accounts.by_number("500001")
        for month in (7, 8, 9, 10):
            uow.documents.add(Document(account_id=account.id, kind="act", number=f"A-{month}",
                                       issued_on=date(2026, month, 28), period_start=date(2026, month, 1),
                                       period_end=date(2026, month, 28)))
        uow.documents.add(Document(account_id=account.id, kind="invoice", number="I-9", issued_on=date(2026, 9, 1),
                                   period_start=date(2026, 9, 1), period_end=date(2026, 9, 30)))
        await uow.commit()
    async with services.uow() as uow:
        account = await uow.accounts.by_number("500001")
        q3 = await uow.documents.find(account.id, "act", date(2026, 7, 1), date(2026, 9, 30))
        assert [d.number for d in q3] == ["A-9", "A-8", "A-7"]
        assert len(await uow.documents.find(account.id)) == 5


async def test_demo_seed_is_idempotent(services):
    first = await seed_demo(services.uow, services.config)
    second = await seed_demo(services.uow, services.config)
    assert first["customers"] == len(DEMO_CUSTOMERS) and first["payments"] > 100 and first["documents"] > 100
    assert second == {"staff": 0, "customers": 0, "payments": 0, "documents": 0}
    async with services.uow() as uow:
        kinds = {c.kind for c in await uow.session.scalars(select(Customer))}
        languages = {c.language for c in await uow.session.scalars(select(Customer))}
        assert kinds == {"person", "company"} and languages == {"ru", "en"}
        months = await uow.session.scalar(select(func.count(func.distinct(Payment.external_id))))
        assert months == 6 * len(DEMO_CUSTOMERS)
