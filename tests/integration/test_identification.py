"""Identification by Telegram id, phone (any format), account + PIN with lockout; consent and forgetting."""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import select

from handlers.dto import NotFound
from handlers.identification import (
    client_profile,
    forget_client,
    identify_by_account_pin,
    identify_by_phone,
    identify_by_telegram,
    link_telegram,
    record_consent,
)
from storage.models import Account, Customer, CustomerPhone, Subscription


@pytest.mark.parametrize("raw", ["+79161234567", "8 916 123-45-67", "79161234567", "+7 (916) 123 45 67",
                                 "89161234567", "0079161234567"])
async def test_phone_formats(demo_services, raw: str) -> None:
    client = await identify_by_phone(demo_services.ctx, raw)
    assert client is not None and client.account_numbers == ("200001",)
    assert client.name == "Иванов Иван Иванович"


@pytest.mark.parametrize("raw", [None, "", "hello", "+7916", "1" * 60, "+79990000000"])
async def test_unknown_or_unparsable_phone(demo_services, raw) -> None:
    assert await identify_by_phone(demo_services.ctx, raw) is None


async def test_phone_shared_by_two_customers_identifies_nobody(demo_services) -> None:
    ctx = demo_services.ctx
    async with ctx.uow() as uow:
        other = Customer(name="Иванова Мария", phones=[CustomerPhone(phone="+79161234567")])
        uow.customers.add(other)
        await uow.commit()
    assert await identify_by_phone(ctx, "+79161234567") is None
    async with ctx.uow() as uow:
        row = await uow.customers.get(other.id)
        row.merged_into_id = 1  # a merged duplicate no longer counts
        await uow.commit()
    found = await identify_by_phone(ctx, "+79161234567")
    assert found is not None and found.account_numbers == ("200001",)


async def test_concurrent_lookups_share_queries_and_each_caller_gets_its_own_answer(demo_services, monkeypatch) -> None:
    """Calls arriving together are identified in shared queries; each still gets the one customer with its
    number, nobody for a number two customers share, nobody for an unknown one."""
    import asyncio

    from handlers import identification

    ctx = demo_services.ctx
    async with ctx.uow() as uow:
        uow.customers.add(Customer(name="Петрова Анна", phones=[CustomerPhone(phone="+79262345678")]))
        await uow.commit()
    expected = [await identify_by_phone(ctx, phone) for phone in ("+79161234567", "+74951112233")]  # one by one
    assert expected[0] is not None and expected[0].name == "Иванов Иван Иванович"
    queries: list[list[str]] = []
    real = identification._profiles_by_phone

    async def counted(ctx_, phones):  # type: ignore[no-untyped-def]
        queries.append(phones)
        return await real(ctx_, phones)

    monkeypatch.setattr(identification, "_profiles_by_phone", counted)
    ctx.extras.pop("identification.phone_lookups", None)  # rebuilt around the counting fetch
    asked = ["+79161234567", "8 495 111-22-33", "+79262345678", "+79990000000"] * 10
    found = await asyncio.gather(*(identify_by_phone(ctx, phone) for phone in asked))
    assert len(queries) < len(asked) // 4
    for phone, client in zip(asked, found, strict=True):
        if phone == "+79161234567":
            assert client == expected[0]
        elif phone == "8 495 111-22-33":
            assert client == expected[1] and client is not None and client.kind == "company"
        else:  # shared by two customers now, or nobody's
            assert client is None


async def test_company_with_manager(demo_services) -> None:
    client = await identify_by_phone(demo_services.ctx, "+74951112233")
    assert client is not None and client.manager_name == "Анна Петрова" and client.kind == "company"


async def test_pin_right_and_wrong_and_lockout(demo_services) -> None:
    ctx = demo_services.ctx
    ok = await identify_by_account_pin(ctx, "200001", "0001")
    assert ok.ok and ok.client is not None and ok.client.account_numbers == ("200001",)
    for left in (4, 3, 2, 1):
        check = await identify_by_account_pin(ctx, "200001", "9999")
        assert not check.ok and check.attempts_left == left and check.client is None
    locked = await identify_by_account_pin(ctx, "200001", "9999")
    assert not locked.ok and locked.locked_until is not None
    # Locked: even the right PIN is refused until the lock expires.
    still = await identify_by_account_pin(ctx, "200001", "0001")
    assert not still.ok and still.locked_until == locked.locked_until
    async with ctx.uow() as uow:
        account = await uow.accounts.by_number("200001")
        assert account.pin_locked_until is not None
        account.pin_locked_until = ctx.clock() - timedelta(seconds=1)
        await uow.commit()
    assert (await identify_by_account_pin(ctx, "200001", "0001")).ok


async def test_success_resets_failure_count(demo_services) -> None:
    ctx = demo_services.ctx
    await identify_by_account_pin(ctx, "200002", "1111")
    await identify_by_account_pin(ctx, "200002", "1111")
    assert (await identify_by_account_pin(ctx, "200002", "0002")).ok
    async with ctx.uow() as uow:
        assert (await uow.session.scalar(select(Account.pin_failures).where(Account.number == "200002"))) == 0


async def test_unknown_account_answers_like_a_wrong_pin(demo_services) -> None:
    ctx = demo_services.ctx
    first = await identify_by_account_pin(ctx, "999999", "1234")
    assert not first.ok and first.attempts_left == 4 and first.client is None
    for _ in range(4):
        last = await identify_by_account_pin(ctx, "999999", "1234")
    assert last.locked_until is not None and last.attempts_left == 0
    empty = await identify_by_account_pin(ctx, "", "")
    assert not empty.ok


async def test_link_telegram_consent_and_profile(demo_services) -> None:
    ctx = demo_services.ctx
    client = await identify_by_phone(ctx, "+79161234567")
    assert client is not None and not client.has_consent
    await record_consent(ctx, client.customer_id)
    linked = await link_telegram(ctx, client.customer_id, 555001)
    assert linked.telegram_user_id == 555001 and linked.has_consent
    assert (await identify_by_telegram(ctx, 555001)).customer_id == client.customer_id
    # The same Telegram account identifying as another client moves the link.
    other = await identify_by_phone(ctx, "+79262345678")
    await link_telegram(ctx, other.customer_id, 555001)
    assert (await identify_by_telegram(ctx, 555001)).customer_id == other.customer_id
    assert (await client_profile(ctx, client.customer_id)).telegram_user_id is None
    with pytest.raises(NotFound):
        await client_profile(ctx, 10**9)


async def test_forget_client_erases_personal_data(demo_services) -> None:
    ctx = demo_services.ctx
    client = await identify_by_phone(ctx, "+79161234567")
    await record_consent(ctx, client.customer_id)
    await link_telegram(ctx, client.customer_id, 777)
    async with ctx.uow() as uow:
        uow.session.add(Subscription(customer_id=client.customer_id, kind="low_balance", enabled=True))
        await uow.commit()
    await forget_client(ctx, client.customer_id)
    assert await identify_by_phone(ctx, "+79161234567") is None
    assert await identify_by_telegram(ctx, 777) is None
    profile = await client_profile(ctx, client.customer_id)
    assert "Иван" not in profile.name and profile.phones == () and profile.email is None
    assert not profile.has_consent and profile.account_numbers == ("200001",)
    async with ctx.uow() as uow:
        sub = await uow.session.scalar(select(Subscription).where(Subscription.customer_id == client.customer_id))
        assert sub.enabled is False
    # Forgotten clients cannot be identified by PIN either (they must register again with the operator).
    assert not (await identify_by_account_pin(ctx, "200001", "0001")).ok
