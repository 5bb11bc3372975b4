"""Balance and payments: the billing port and the client-facing use cases on top of it.

`BillingSource` is what the operator's billing must answer. Two implementations: `storage.billing_embedded`
(our own database, the default) and `storage.billing_http` (the operator's JSON API). Use cases never know
which one is wired; they only rely on `ServiceUnavailable` meaning "billing cannot answer now".
"""

from __future__ import annotations

import asyncio
from abc import ABC, abstractmethod
from datetime import date, datetime
from decimal import Decimal

from handlers.context import AppContext
from handlers.dto import (
    BalanceInfo,
    ClientProfile,
    DocumentFile,
    DocumentInfo,
    NotFound,
    PaymentInfo,
    ServiceUnavailable,
)

# The IVR must answer within its webhook deadline: a look-up that takes longer is treated as an outage.
LOOKUP_BUDGET_SECONDS = 2.0


class BillingSource(ABC):
    """Read access to the operator's billing. Every method raises `ServiceUnavailable` when billing
    cannot answer; "no such account/document" is `None` or an empty list, never an exception."""

    @abstractmethod
    async def account_balance(self, number: str) -> BalanceInfo | None: ...

    @abstractmethod
    async def recent_payments(self, number: str, limit: int = 5) -> list[PaymentInfo]: ...

    @abstractmethod
    async def payments_between(self, number: str, start: datetime, end: datetime) -> list[PaymentInfo]:
        """Payments with start <= paid_at < end, oldest first (statements, reconciliation acts)."""

    @abstractmethod
    async def documents(
        self,
        number: str,
        *,
        kinds: tuple[str, ...] = (),
        period_start: date | None = None,
        period_end: date | None = None,
        limit: int = 50,
    ) -> list[DocumentInfo]:
        """Documents of an account, newest first; a period matches documents that overlap it."""

    @abstractmethod
    async def document(self, document_id: int) -> DocumentInfo | None: ...

    @abstractmethod
    async def document_content(self, document_id: int) -> DocumentFile | None:
        """The stored file of a document; None when billing has the document's data but no file."""

    async def accounts_by_phone(self, phone_e164: str) -> list[str]:
        """Account numbers billing knows for a phone (used when our own records do not know it)."""
        return []

    async def close(self) -> None:  # noqa: B027 - most sources hold nothing to release
        """Release connections."""


def format_money(value: object, currency: str, lang: str) -> str:
    """"1 234,50 ₽" in Russian, "1,234.50 ₽" in English."""
    amount = Decimal(str(value or 0)).quantize(Decimal("0.01"))
    text = f"{amount:,.2f}"
    if lang == "ru":
        text = text.replace(",", "\u00a0").replace(".", ",")
    sign = {"RUB": "₽", "USD": "$", "EUR": "€"}.get(currency, currency)
    return f"{text} {sign}"


def billing_of(ctx: AppContext) -> BillingSource:
    """The wired billing source; the embedded one when nothing was wired (tests, CLI tools)."""
    if ctx.billing is None:
        from storage.billing_embedded import EmbeddedBilling

        ctx.billing = EmbeddedBilling(ctx)
    return ctx.billing


async def within_budget(coro, what: str):  # type: ignore[no-untyped-def]
    """Await a billing call, turning a slow answer into ServiceUnavailable instead of hanging."""
    try:
        return await asyncio.wait_for(coro, LOOKUP_BUDGET_SECONDS)
    except TimeoutError:
        raise ServiceUnavailable(f"billing did not answer {what} in {LOOKUP_BUDGET_SECONDS}s") from None


def own_account(client: ClientProfile, account_number: str | None) -> str:
    """The account a client asks about: theirs only. NotFound for anyone else's (or when they have none)."""
    if account_number is None:
        if not client.account_numbers:
            raise NotFound("the client has no accounts")
        return client.account_numbers[0]
    number = account_number.strip()
    if number not in client.account_numbers:
        raise NotFound(f"account {number} is not the client's")
    return number


async def get_balance(ctx: AppContext, client: ClientProfile, account_number: str | None = None) -> BalanceInfo:
    """Balance, status, paid-until date and the last three payments of one of the client's accounts."""
    number = own_account(client, account_number)
    billing = billing_of(ctx)
    info = await within_budget(billing.account_balance(number), "balance")
    if info is None:
        raise NotFound(f"billing does not know account {number}")
    if not info.last_payments:
        payments = await within_budget(billing.recent_payments(number, 3), "payments")
        info = BalanceInfo(
            account_number=info.account_number, balance=info.balance, currency=info.currency, status=info.status,
            tariff=info.tariff, paid_until=info.paid_until, last_payments=tuple(payments),
        )
    return info


async def get_balances(ctx: AppContext, client: ClientProfile) -> list[BalanceInfo]:
    """Every account of the client (companies often have several)."""
    return [await get_balance(ctx, client, number) for number in client.account_numbers]


async def get_payments(
    ctx: AppContext, client: ClientProfile, account_number: str | None = None, limit: int = 5
) -> list[PaymentInfo]:
    number = own_account(client, account_number)
    return await within_budget(billing_of(ctx).recent_payments(number, max(1, min(limit, 50))), "payments")
