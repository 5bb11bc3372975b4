"""Client notices: low balance, payment received, service end; once per event; the billing webhook."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
from aiohttp import web
from pydantic import SecretStr
from sqlalchemy import func, select

from handlers.dto import InvalidRequest
from handlers.identification import identify_by_phone, link_telegram, record_consent
from handlers.subscriptions import (
    apply_balance_change,
    check_service_end,
    get_subscriptions,
    record_payment,
    set_subscription,
)
from service.billing_webhook import setup as setup_billing
from service.billing_webhook import signature
from storage.models import Account, Notification, Payment
from tests.helpers import free_port


async def subscribed_client(ctx, phone="+79161234567", telegram=9001):  # type: ignore[no-untyped-def]
    client = await identify_by_phone(ctx, phone)
    await record_consent(ctx, client.customer_id)
    client = await link_telegram(ctx, client.customer_id, telegram)
    await set_subscription(ctx, client, "low_balance", enabled=True, threshold=Decimal("100"))
    await set_subscription(ctx, client, "payment_received", enabled=True)
    await set_subscription(ctx, client, "service_end", enabled=True, days_before=5)
    return client


async def notices(ctx) -> list[Notification]:  # type: ignore[no-untyped-def]
    async with ctx.uow() as uow:
        return list(await uow.session.scalars(select(Notification).order_by(Notification.id)))


async def test_settings_round_trip(demo_services) -> None:
    ctx = demo_services.ctx
    client = await identify_by_phone(ctx, "+79161234567")
    subs = await get_subscriptions(ctx, client)
    assert [(s.kind, s.enabled) for s in subs] == [("low_balance", False), ("payment_received", False),
                                                   ("service_end", False)]
    with pytest.raises(InvalidRequest):  # no consent yet
        await set_subscription(ctx, client, "low_balance", enabled=True)
    client = await subscribed_client(ctx)
    subs = {s.kind: s for s in await get_subscriptions(ctx, client)}
    assert subs["low_balance"].enabled and subs["low_balance"].threshold == Decimal("100.00")
    assert subs["service_end"].days_before == 5
    await set_subscription(ctx, client, "low_balance", enabled=False)
    subs = {s.kind: s for s in await get_subscriptions(ctx, client)}
    assert not subs["low_balance"].enabled and subs["low_balance"].threshold == Decimal("100.00")
    for bad in ({"kind": "spam"}, {"kind": "service_end", "days_before": 0},
                {"kind": "low_balance", "threshold": Decimal("-1")}):
        with pytest.raises(InvalidRequest):
            await set_subscription(ctx, client, bad.pop("kind"), enabled=True, **bad)


async def test_payment_notifies_once(demo_services) -> None:
    ctx = demo_services.ctx
    client = await subscribed_client(ctx)
    paid_at = datetime(2026, 11, 20, 10, tzinfo=UTC)
    assert await record_payment(ctx, "200001", Decimal("500"), paid_at, "P-1", "card")
    assert not await record_payment(ctx, "200001", Decimal("500"), paid_at, "P-1", "card")
    rows = await notices(ctx)
    assert len(rows) == 1 and rows[0].kind == "payment_received" and rows[0].customer_id == client.customer_id
    assert rows[0].recipient_kind == "customer" and "500,00" in rows[0].payload["text"]
    async with ctx.uow() as uow:
        assert await uow.session.scalar(select(func.count()).select_from(Payment).where(
            Payment.external_id == "P-1")) == 1


async def test_low_balance_on_crossing_only(demo_services) -> None:
    ctx = demo_services.ctx
    await subscribed_client(ctx)
    await apply_balance_change(ctx, "200001", Decimal("500"), event_id="e1")
    assert await notices(ctx) == []
    assert await apply_balance_change(ctx, "200001", Decimal("50"), event_id="e2")
    assert not await apply_balance_change(ctx, "200001", Decimal("50"), event_id="e2")  # replayed
    assert not await apply_balance_change(ctx, "200001", Decimal("20"), event_id="e3")  # still low
    rows = await notices(ctx)
    assert [r.kind for r in rows] == ["low_balance"] and "50,00" in rows[0].payload["text"]
    await apply_balance_change(ctx, "200001", Decimal("300"), event_id="e4")
    assert await apply_balance_change(ctx, "200001", Decimal("10"), event_id="e5")  # a new crossing
    assert len(await notices(ctx)) == 2


async def test_english_client_and_email_only_client(demo_services) -> None:
    ctx = demo_services.ctx
    en = await identify_by_phone(ctx, "+79161230001")  # John Smith, e-mail on file, no Telegram
    await record_consent(ctx, en.customer_id)
    await set_subscription(ctx, en, "payment_received", enabled=True)
    await record_payment(ctx, "200011", Decimal("850"), datetime.now(UTC), "P-EN")
    (row,) = await notices(ctx)
    assert row.recipient_kind == "email" and row.payload["email"] == "john.smith@mail.example"
    assert "Payment of 850.00" in row.payload["text"]


async def test_unsubscribed_or_no_consent_gets_nothing(demo_services) -> None:
    ctx = demo_services.ctx
    await record_payment(ctx, "200002", Decimal("1"), datetime.now(UTC), "P-X")
    await apply_balance_change(ctx, "200002", Decimal("-100"), event_id="x")
    assert await notices(ctx) == []


async def test_service_end_once_per_date(demo_services) -> None:
    ctx = demo_services.ctx
    await subscribed_client(ctx)
    today = ctx.clock().date()
    async with ctx.uow() as uow:
        account = await uow.session.scalar(select(Account).where(Account.number == "200001"))
        account.paid_until = today + timedelta(days=10)
        await uow.commit()
    assert await check_service_end(ctx, today) == 0  # 10 days left, the client asked for 5
    assert await check_service_end(ctx, today + timedelta(days=6)) == 1
    assert await check_service_end(ctx, today + timedelta(days=7)) == 0
    rows = await notices(ctx)
    assert len(rows) == 1 and rows[0].kind == "service_end" and "4" in rows[0].payload["text"]


@pytest.fixture
async def webhook(demo_services):  # type: ignore[no-untyped-def]
    demo_services.settings.billing_webhook_secret = SecretStr("hook-secret")
    app = web.Application()
    setup_billing(app, demo_services.ctx, demo_services.settings)
    runner = web.AppRunner(app)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    yield f"http://127.0.0.1:{port}"
    await runner.cleanup()


async def post(url: str, body: bytes, sig: str | None) -> tuple[int, dict]:  # type: ignore[type-arg]
    import aiohttp

    headers = {"Content-Type": "application/json"}
    if sig is not None:
        headers["X-Billing-Signature"] = sig
    async with aiohttp.ClientSession() as session, session.post(url + "/billing/events", data=body,
                                                                 headers=headers) as response:
        return response.status, await response.json()


async def test_webhook(demo_services, webhook: str) -> None:
    ctx = demo_services.ctx
    await subscribed_client(ctx)
    event = {"id": "evt-1", "type": "payment", "account": "200001", "amount": "650.00",
             "paid_at": "2026-11-20T10:00:00Z", "payment_id": "BILL-77", "method": "sbp", "balance": "700.00"}
    body = json.dumps(event).encode()
    assert (await post(webhook, body, None))[0] == 401
    assert (await post(webhook, body, "sha256=" + "0" * 64))[0] == 401
    status, answer = await post(webhook, body, signature("hook-secret", body))
    assert status == 200 and answer["results"] == [{"id": "evt-1", "status": "recorded"}]
    status, answer = await post(webhook, body, signature("hook-secret", body))
    assert status == 200 and answer["results"][0]["status"] == "duplicate"
    assert [n.kind for n in await notices(ctx)] == ["payment_received"]
    async with ctx.uow() as uow:
        assert (await uow.accounts.by_number("200001")).balance == Decimal("700.00")

    low = json.dumps({"events": [{"id": "evt-2", "type": "balance", "account": "200001", "balance": "-5",
                                  "paid_until": "2026-12-01"}]}).encode()
    status, _ = await post(webhook, low, signature("hook-secret", low))
    assert status == 200 and [n.kind for n in await notices(ctx)] == ["payment_received", "low_balance"]

    for bad in (b"not json", b'{"id": "x", "type": "refund", "account": "1"}',
                b'{"id": "x", "type": "payment", "account": "200001", "amount": "NaN", "paid_at": "2026-01-01"}',
                b'{"events": []}'):
        assert (await post(webhook, bad, signature("hook-secret", bad)))[0] == 400
    unknown = json.dumps({"id": "evt-3", "type": "balance", "account": "000", "balance": "1"}).encode()
    assert (await post(webhook, unknown, signature("hook-secret", unknown)))[0] == 422
