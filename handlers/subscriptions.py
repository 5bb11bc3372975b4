"""Notifications a client subscribed to: low balance, payment received, service end date approaching.

Billing events (the webhook, the embedded billing's imports) go through `record_payment` and
`apply_balance_change`; the subscriptions worker calls `check_service_end` periodically. Each notice is
written to the outbox in the same transaction as the change that causes it, with a dedupe key naming the
event, so a repeated event never notifies twice. Texts are in the client's language.
"""

from __future__ import annotations

import html
import logging
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from decimal import Decimal, InvalidOperation

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError

from handlers.billing import format_money
from handlers.context import AppContext
from handlers.dto import ClientProfile, InvalidRequest, NotFound
from storage.models import Account, Customer, Notification, Payment, Subscription

log = logging.getLogger(__name__)

KINDS = ("low_balance", "payment_received", "service_end")
DEFAULT_THRESHOLD = Decimal("100.00")
DEFAULT_DAYS_BEFORE = 3
MAX_DAYS_BEFORE = 60


@dataclass(frozen=True)
class SubscriptionInfo:
    kind: str
    enabled: bool
    threshold: Decimal | None = None
    days_before: int | None = None


@dataclass(frozen=True)
class BalanceChange:
    account_id: int
    old_balance: Decimal
    new_balance: Decimal


async def get_subscriptions(ctx: AppContext, client: ClientProfile) -> list[SubscriptionInfo]:
    """All three kinds, in a fixed order; kinds never set up are off (with their defaults shown)."""
    async with ctx.uow() as uow:
        rows = {s.kind: s for s in await uow.session.scalars(
            select(Subscription).where(Subscription.customer_id == client.customer_id))}
    out = []
    for kind in KINDS:
        row = rows.get(kind)
        out.append(SubscriptionInfo(
            kind=kind, enabled=bool(row and row.enabled),
            threshold=(row.threshold if row and row.threshold is not None else DEFAULT_THRESHOLD)
            if kind == "low_balance" else None,
            days_before=(row.days_before if row and row.days_before is not None else DEFAULT_DAYS_BEFORE)
            if kind == "service_end" else None,
        ))
    return out


async def set_subscription(
    ctx: AppContext,
    client: ClientProfile,
    kind: str,
    *,
    enabled: bool,
    threshold: Decimal | None = None,
    days_before: int | None = None,
) -> SubscriptionInfo:
    """Turn a notification on or off; a threshold or number of days given is kept for next time."""
    if kind not in KINDS:
        raise InvalidRequest(f"unknown notification kind {kind!r}")
    if threshold is not None:
        try:
            threshold = Decimal(str(threshold)).quantize(Decimal("0.01"))
        except (InvalidOperation, ValueError):
            raise InvalidRequest("threshold must be a number") from None
        if not threshold.is_finite() or threshold < 0 or threshold > Decimal("100000000"):
            raise InvalidRequest("threshold out of range")
    if days_before is not None and not 1 <= int(days_before) <= MAX_DAYS_BEFORE:
        raise InvalidRequest(f"days_before must be 1..{MAX_DAYS_BEFORE}")
    async with ctx.uow() as uow:
        customer = await uow.customers.get(client.customer_id)
        if customer is None or customer.merged_into_id is not None or customer.anonymised_at is not None:
            raise NotFound(f"customer {client.customer_id}")
        if enabled and customer.consent_at is None:
            raise InvalidRequest("notifications need consent to personal-data processing")
        row = await uow.session.scalar(select(Subscription).where(
            Subscription.customer_id == customer.id, Subscription.kind == kind))
        if row is None:
            row = Subscription(customer_id=customer.id, kind=kind)
            uow.session.add(row)
        row.enabled = enabled
        if kind == "low_balance":
            row.threshold = threshold if threshold is not None else (row.threshold or DEFAULT_THRESHOLD)
        if kind == "service_end":
            row.days_before = int(days_before) if days_before is not None else (row.days_before or DEFAULT_DAYS_BEFORE)
        info = SubscriptionInfo(kind=kind, enabled=enabled, threshold=row.threshold, days_before=row.days_before)
        await uow.commit()
    return info


# ------------------------------------------------------------------ events


async def record_payment(
    ctx: AppContext,
    account_number: str,
    amount: Decimal,
    paid_at: datetime,
    external_id: str,
    method: str | None = None,
    *,
    balance_after: Decimal | None = None,
    currency: str | None = None,
    notify: bool = True,
    keep_balance: bool = False,
) -> bool:
    """Record a payment once (by billing's external id) and raise its notices. False when already known.

    The balance becomes `balance_after` when billing tells it, otherwise it grows by the amount (unless
    `keep_balance`: imports whose balance comes from elsewhere).
    """
    if not external_id:
        raise InvalidRequest("a payment needs the billing's id")
    amount = Decimal(str(amount))
    async with ctx.uow() as uow:
        account = await _locked_account(uow, account_number)
        if await uow.payments.by_external_id(external_id) is not None:
            return False
        uow.payments.add(Payment(account_id=account.id, paid_at=paid_at, amount=amount,
                                 currency=currency or account.currency, method=method, external_id=external_id))
        old = account.balance
        if balance_after is not None:
            account.balance = Decimal(str(balance_after))
        elif not keep_balance:
            account.balance = old + amount
        queued = 0
        if notify:
            customer = await uow.customers.get(account.customer_id)
            if await _subscribed(uow, customer, "payment_received"):
                lang = customer.language
                text = ctx.t("notify_payment_received", lang, account=account.number,
                             amount=format_money(amount, account.currency, lang),
                             balance=format_money(account.balance, account.currency, lang))
                queued += await _notify(uow, ctx, customer, "payment_received", text, f"payment:{external_id}")
            queued += await notify_balance_changes(
                uow, ctx, [BalanceChange(account.id, old, account.balance)], event_key=f"payment:{external_id}")
        try:
            await uow.commit()
        except IntegrityError:
            return False  # the same payment recorded concurrently by another delivery
    if queued:
        await ctx.wake_dispatcher()
    return True


async def apply_balance_change(
    ctx: AppContext,
    account_number: str,
    new_balance: Decimal,
    *,
    event_id: str,
    paid_until: date | None = None,
    status: str | None = None,
) -> bool:
    """Billing says the balance is now `new_balance` (a charge, a correction...). Notifies a subscribed
    client when the balance falls below their threshold; True when a notice was queued."""
    async with ctx.uow() as uow:
        account = await _locked_account(uow, account_number)
        old = account.balance
        account.balance = Decimal(str(new_balance))
        if paid_until is not None:
            account.paid_until = paid_until
        if status in ("active", "paused", "terminated"):
            account.status = status
        queued = await notify_balance_changes(uow, ctx, [BalanceChange(account.id, old, account.balance)],
                                              event_key=f"balance:{event_id}")
        await uow.commit()
    if queued:
        await ctx.wake_dispatcher()
    return queued > 0


async def notify_balance_changes(uow, ctx: AppContext, changes: list[BalanceChange], *,  # type: ignore[no-untyped-def]
                                 event_key: str) -> int:
    """Within the caller's transaction: low-balance notices for accounts that just fell below their owner's
    threshold (crossing it, so a balance that stays low is not announced again). Returns how many."""
    falling = [c for c in changes if c.new_balance < c.old_balance]
    if not falling:
        return 0
    by_account = {c.account_id: c for c in falling}
    rows = (await uow.session.execute(
        select(Account, Subscription)
        .join(Subscription, Subscription.customer_id == Account.customer_id)
        .where(Account.id.in_(list(by_account)), Subscription.kind == "low_balance",
               Subscription.enabled.is_(True))
    )).all()
    queued = 0
    for account, sub in rows:
        change = by_account[account.id]
        threshold = sub.threshold if sub.threshold is not None else DEFAULT_THRESHOLD
        if not (change.new_balance < threshold <= change.old_balance):
            continue
        customer = await uow.customers.get(account.customer_id)
        if not _reachable(customer):
            continue
        lang = customer.language
        text = ctx.t("notify_low_balance", lang, account=account.number,
                     balance=format_money(change.new_balance, account.currency, lang),
                     threshold=format_money(threshold, account.currency, lang),
                     payment_methods=ctx.config.company.payment_methods.get(lang))
        queued += await _notify(uow, ctx, customer, "low_balance", text,
                                f"low_balance:{account.number}:{event_key}")
    return queued


async def check_service_end(ctx: AppContext, today: date | None = None) -> int:
    """Notices for subscribed clients whose paid-until date is within their chosen number of days.
    One notice per account and paid-until date, however often this runs."""
    today = today or ctx.clock().date()
    queued = 0
    async with ctx.uow() as uow:
        rows = (await uow.session.execute(
            select(Account, Subscription)
            .join(Subscription, Subscription.customer_id == Account.customer_id)
            .where(Subscription.kind == "service_end", Subscription.enabled.is_(True),
                   Account.status == "active", Account.paid_until.is_not(None),
                   Account.paid_until >= today, Account.paid_until <= today + timedelta(days=MAX_DAYS_BEFORE))
        )).all()
        for account, sub in rows:
            days_left = (account.paid_until - today).days
            if days_left > (sub.days_before or DEFAULT_DAYS_BEFORE):
                continue
            customer = await uow.customers.get(account.customer_id)
            if not _reachable(customer):
                continue
            lang = customer.language
            text = ctx.t("notify_service_end", lang, account=account.number, days=days_left,
                         date=account.paid_until.strftime("%d.%m.%Y") if lang == "ru"
                         else account.paid_until.isoformat(),
                         payment_methods=ctx.config.company.payment_methods.get(lang))
            queued += await _notify(uow, ctx, customer, "service_end", text,
                                    f"service_end:{account.number}:{account.paid_until.isoformat()}")
        await uow.commit()
    if queued:
        await ctx.wake_dispatcher()
    return queued


# ------------------------------------------------------------------ helpers


async def _locked_account(uow, number: str) -> Account:  # type: ignore[no-untyped-def]
    account = await uow.session.scalar(
        select(Account).where(Account.number == (number or "").strip()).with_for_update())
    if account is None:
        raise NotFound(f"account {number}")
    return account


def _reachable(customer: Customer | None) -> bool:
    return (customer is not None and customer.merged_into_id is None and customer.anonymised_at is None
            and customer.consent_at is not None and (customer.telegram_user_id is not None or bool(customer.email)))


async def _subscribed(uow, customer: Customer | None, kind: str) -> bool:  # type: ignore[no-untyped-def]
    if not _reachable(customer):
        return False
    row = await uow.session.scalar(select(Subscription).where(
        Subscription.customer_id == customer.id, Subscription.kind == kind))  # type: ignore[union-attr]
    return bool(row and row.enabled)


async def _notify(uow, ctx: AppContext, customer: Customer, kind: str, text: str,  # type: ignore[no-untyped-def]
                  dedupe_key: str) -> int:
    """Queue one notice on the client's registered channel unless this event was already announced."""
    dedupe_key = dedupe_key[:200]
    if await uow.session.scalar(select(Notification.id).where(Notification.dedupe_key == dedupe_key)):
        return 0
    if customer.telegram_user_id is not None:
        payload = {"text": html.escape(text)}
        recipient = "customer"
    else:
        payload = {"email": customer.email, "subject": ctx.t("notify_email_subject", customer.language,
                                                             company=ctx.config.company.name.get(customer.language)),
                   "text": text, "attachments": []}
        recipient = "email"
    uow.session.add(Notification(kind=kind, recipient_kind=recipient, customer_id=customer.id, payload=payload,
                                 dedupe_key=dedupe_key))
    await uow.session.flush()
    return 1
