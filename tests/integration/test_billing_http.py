"""The HTTP billing source against the reference billing server: contract, retries, timeouts, circuit breaker."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from datetime import UTC, date, datetime
from decimal import Decimal

import pytest

from handlers.billing import get_balance
from handlers.documents import get_document_file, list_documents
from handlers.dto import DocumentQuery, NotFound, ServiceUnavailable
from handlers.identification import identify_by_phone
from storage.billing_http import CircuitBreaker, HttpBilling
from tests.fakes.billing_server import BillingServer, FakeAccount


@pytest.fixture
async def billing_server() -> AsyncIterator[BillingServer]:
    server = BillingServer()
    server.accounts["200001"] = FakeAccount(
        number="200001", balance="1234.50", tariff="Домашний 100", paid_until="2026-12-31", phones=("+79161234567",),
        payments=[{"paid_at": f"2026-{m:02d}-05T10:00:00+00:00", "amount": "650.00", "currency": "RUB",
                   "method": "card"} for m in range(5, 11)],
    )
    server.documents[501] = {"id": 501, "account": "200001", "kind": "invoice", "number": "INV-501",
                             "issued_on": "2026-10-01", "period_start": "2026-10-01", "period_end": "2026-10-31",
                             "amount": "650.00"}
    server.documents[502] = {"id": 502, "account": "200001", "kind": "act", "number": "ACT-502",
                             "issued_on": "2026-10-31", "period_start": "2026-10-01", "period_end": "2026-10-31",
                             "amount": "650.00"}
    server.documents[503] = {"id": 503, "account": "100001", "kind": "invoice", "number": "INV-503",
                             "issued_on": "2026-10-01", "period_start": "2026-10-01", "period_end": "2026-10-31",
                             "amount": "12000.00"}
    server.files[501] = (b"%PDF-1.4 operator invoice", "application/pdf", "inv-501.pdf")
    await server.start()
    yield server
    await server.stop()


def make_source(ctx, server: BillingServer, **kwargs) -> HttpBilling:  # type: ignore[no-untyped-def]
    kwargs.setdefault("cache_seconds", 0)
    return HttpBilling(ctx, server.base_url, auth_header=server.auth_header, **kwargs)


async def test_contract(services, billing_server: BillingServer) -> None:
    source = make_source(services.ctx, billing_server)
    try:
        balance = await source.account_balance("200001")
        assert balance.balance == Decimal("1234.50") and balance.paid_until == date(2026, 12, 31)
        assert await source.account_balance("999") is None
        payments = await source.recent_payments("200001", 3)
        assert [p.paid_at.month for p in payments] == [10, 9, 8]
        between = await source.payments_between("200001", datetime(2026, 6, 1, tzinfo=UTC),
                                                datetime(2026, 8, 1, tzinfo=UTC))
        assert [p.paid_at.month for p in between] == [6, 7]
        docs = await source.documents("200001", kinds=("invoice",), period_start=date(2026, 10, 1))
        assert [d.number for d in docs] == ["INV-501"]
        assert (await source.document(502)).kind == "act"
        assert await source.document(999) is None
        file = await source.document_content(501)
        assert file.content == b"%PDF-1.4 operator invoice" and file.filename == "inv-501.pdf"
        assert await source.document_content(502) is None
        assert await source.accounts_by_phone("+79161234567") == ["200001"]
    finally:
        await source.close()


async def test_retries_a_500_then_answers(services, billing_server: BillingServer) -> None:
    source = make_source(services.ctx, billing_server)
    billing_server.fail_next(500, times=2)
    try:
        assert (await source.account_balance("200001")).balance == Decimal("1234.50")
        assert len(billing_server.requests) == 3 and source.breaker.state == "closed"
    finally:
        await source.close()


async def test_timeout_is_fast_and_clear(services, billing_server: BillingServer) -> None:
    source = make_source(services.ctx, billing_server, budget=0.5)
    billing_server.delay = 5
    started = time.monotonic()
    try:
        with pytest.raises(ServiceUnavailable):
            await source.account_balance("200001")
        assert time.monotonic() - started < 2.0  # the server would take 5 s
    finally:
        await source.close()


async def test_wrong_credentials_are_not_retried(services, billing_server: BillingServer) -> None:
    source = HttpBilling(services.ctx, billing_server.base_url, auth_header="Authorization: Bearer wrong",
                         cache_seconds=0)
    try:
        with pytest.raises(ServiceUnavailable):
            await source.account_balance("200001")
        assert len(billing_server.requests) == 1
    finally:
        await source.close()


async def test_circuit_opens_and_closes(services, billing_server: BillingServer) -> None:
    breaker = CircuitBreaker(failure_threshold=3, reset_after=0.3)
    source = make_source(services.ctx, billing_server, attempts=1, breaker=breaker)
    billing_server.fail_next(503, times=100)
    try:
        for _ in range(3):
            with pytest.raises(ServiceUnavailable):
                await source.account_balance("200001")
        assert breaker.state == "open"
        seen = len(billing_server.requests)
        started = time.monotonic()
        with pytest.raises(ServiceUnavailable):
            await source.account_balance("200001")
        assert len(billing_server.requests) == seen  # not even tried
        assert time.monotonic() - started < 0.5  # no network wait (generous for loaded CI machines)
        await asyncio.sleep(0.35)
        assert breaker.state == "half-open"
        with pytest.raises(ServiceUnavailable):  # the trial call fails: open again
            await source.account_balance("200001")
        assert breaker.state == "open" and len(billing_server.requests) == seen + 1
        billing_server._failures.clear()
        await asyncio.sleep(0.35)
        assert (await source.account_balance("200001")).balance == Decimal("1234.50")
        assert breaker.state == "closed"
    finally:
        await source.close()


async def test_use_cases_through_http_billing(demo_services, billing_server: BillingServer) -> None:
    ctx = demo_services.ctx
    ctx.billing = make_source(ctx, billing_server, cache_seconds=30)
    try:
        client = await identify_by_phone(ctx, "+79161234567")
        info = await get_balance(ctx, client)
        assert info.balance == Decimal("1234.50") and len(info.last_payments) == 3
        before = len(billing_server.requests)
        await get_balance(ctx, client)
        assert len(billing_server.requests) == before  # answered from the short cache
        docs = await list_documents(ctx, client, DocumentQuery(kinds=("invoice", "act")))
        assert [d.number for d in docs] == ["ACT-502", "INV-501"]
        file = await get_document_file(ctx, client, 501)
        assert file.content == b"%PDF-1.4 operator invoice" and file.path is not None
        with pytest.raises(NotFound):  # the operator's document of another client
            await get_document_file(ctx, client, 503)
        generated = await get_document_file(ctx, client, 502)  # no file at the operator: generated
        assert generated.content.startswith(b"%PDF") and generated.size > 1000
        ctx.billing.breaker.opened_at = time.monotonic()
        await ctx.kv.kv.delete("billing:balance:200001")
        with pytest.raises(ServiceUnavailable):
            await get_balance(ctx, client)
    finally:
        await ctx.billing.close()
