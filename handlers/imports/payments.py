"""Payments import: `account,date,amount` required; `method,id,currency` optional.

Keyed by the billing's payment id (`id`); without it, by account + date + amount + method, so re-running
the same file never records a payment twice (two genuinely identical payments on one day need an `id`).
The balance is not changed: in the embedded billing the balance comes from the customers file. Payments
dated within the last two days raise the "payment received" notice for subscribed clients, like a billing
event; older ones are history and notify nobody.
"""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime, time, timedelta
from pathlib import Path

from sqlalchemy import insert, select

from handlers.context import AppContext
from handlers.imports.common import (
    ImportReport,
    Progress,
    RowError,
    count_rows,
    need,
    parse_date,
    parse_decimal,
    read_rows,
)
from storage.models import Account, Payment

REQUIRED = ("account", "date", "amount")
OPTIONAL = ("method", "id", "currency")
BATCH = 5000
FRESH = timedelta(days=2)


def _paid_at(value: str) -> datetime:
    try:
        moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
        return moment if moment.tzinfo else moment.replace(tzinfo=UTC)
    except ValueError:
        return datetime.combine(parse_date(value, "date"), time(12, 0), UTC)


async def import_payments(ctx: AppContext, path: Path | str, *, progress: Progress | None = None) -> ImportReport:
    path = Path(path)
    report = ImportReport(kind="payments")
    total = count_rows(path)
    batch: list[dict] = []  # type: ignore[type-arg]
    for line, row in read_rows(path, REQUIRED, OPTIONAL):
        report.rows += 1
        try:
            if "__error__" in row:
                raise RowError(row["__error__"])
            account = need(row, "account", 40)
            paid_at = _paid_at(need(row, "date", 40))
            amount = parse_decimal(need(row, "amount", 40), "amount")
            if amount <= 0:
                raise RowError("amount must be positive")
            method = (row.get("method") or None)
            if method and len(method) > 40:
                raise RowError("method is longer than 40 characters")
            external = row.get("id") or "import:" + hashlib.sha256(
                f"{account}|{paid_at.isoformat()}|{amount}|{method or ''}".encode()).hexdigest()[:32]
            if len(external) > 100:
                raise RowError("id is longer than 100 characters")
            currency = (row.get("currency") or "").upper() or None
        except RowError as exc:
            report.error(line, str(exc))
            continue
        batch.append({"line": line, "account": account, "paid_at": paid_at, "amount": amount, "method": method,
                      "external_id": external, "currency": currency})
        if len(batch) >= BATCH:
            await _write(ctx, batch, report)
            batch = []
            if progress:
                progress(report.rows, total)
    if batch:
        await _write(ctx, batch, report)
    if progress:
        progress(report.rows, total)
    report.errors.sort()
    return report


async def _write(ctx: AppContext, batch: list[dict], report: ImportReport) -> None:  # type: ignore[type-arg]
    from handlers.subscriptions import record_payment

    async with ctx.uow() as uow:
        s = uow.session
        accounts = {n: (i, c) for n, i, c in (await s.execute(select(Account.number, Account.id, Account.currency)
                                                               .where(Account.number.in_({b["account"] for b in batch}))))}
        known = set((await s.scalars(select(Payment.external_id).where(
            Payment.external_id.in_([b["external_id"] for b in batch])))).all())
        rows, fresh = [], []
        now = ctx.clock()
        for b in batch:
            if b["account"] not in accounts:
                report.error(b["line"], f"account {b['account']} is unknown (import customers first)")
                continue
            if b["external_id"] in known:
                report.unchanged += 1
                continue
            known.add(b["external_id"])
            if now - b["paid_at"] <= FRESH:
                fresh.append(b)
                continue
            account_id, currency = accounts[b["account"]]
            rows.append({"account_id": account_id, "paid_at": b["paid_at"], "amount": b["amount"],
                         "currency": b["currency"] or currency, "method": b["method"],
                         "external_id": b["external_id"], "created_at": now})
        if rows:
            await s.execute(insert(Payment), rows)
            report.created += len(rows)
        await uow.commit()
    for b in fresh:  # recent payments are events: recorded one by one, with their notices
        if await record_payment(ctx, b["account"], b["amount"], b["paid_at"], b["external_id"], b["method"],
                                currency=b["currency"], keep_balance=True):
            report.created += 1
        else:
            report.unchanged += 1
