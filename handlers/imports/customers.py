"""Customers import: one row per account with its customer.

Columns: `account,name,phone` required; `email,kind,segment,manager,balance,currency,tariff,status,paid_until,
pin,language` optional. Keyed by account number: re-running updates the account and its customer, never
duplicates them; phones are added (E.164, several separated by `;`), never dropped. Rows are written in
batches with bulk statements (a million rows in minutes on PostgreSQL); each batch is one transaction, so an
interrupted import can simply be run again.

PINs: stored as salted scrypt hashes like every PIN (handlers/pin.py). Hashing costs ~50 ms of CPU per PIN
on purpose, so only rows that carry a `pin` pay it, spread over a thread pool; a file of a million PINs
takes long by design (the alternative, a cheaper hash, would make stolen hashes cheap to crack).
"""

from __future__ import annotations

import asyncio
import os
import re
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import date
from decimal import Decimal
from pathlib import Path

from sqlalchemy import ARRAY, any_, bindparam, insert, select, text, update
from sqlalchemy.exc import IntegrityError

from handlers.context import AppContext
from handlers.imports.common import (
    ImportReport,
    Progress,
    RowError,
    count_rows,
    need,
    parse_date,
    parse_decimal,
    parse_email,
    read_rows,
)
from handlers.phones import normalize_phone
from handlers.pin import hash_pin, verify_pin
from storage.models import Account, Customer, CustomerPhone, Staff

REQUIRED = ("account", "name", "phone")
OPTIONAL = ("email", "kind", "segment", "manager", "balance", "currency", "tariff", "status", "paid_until", "pin",
            "language")
STATUSES = ("active", "paused", "terminated")
BATCH = 2000


@dataclass
class CustomerRow:
    line: int
    account: str
    name: str
    phones: list[str]
    email: str | None
    kind: str | None
    segment: str | None
    manager_id: int | None
    balance: Decimal | None
    currency: str | None
    tariff: str | None
    status: str | None
    paid_until: date | None
    pin: str | None
    language: str | None
    pin_hash: str | None = None


_PLAIN_RU = re.compile(r"^(?:\+7|8|7)(\d{10})$")


def _fast_phone(raw: str, region: str) -> str | None:
    """normalize_phone, short-cut for the plain Russian forms that make up most files (same result)."""
    if region == "RU" and (m := _PLAIN_RU.match(raw)):
        return "+7" + m.group(1)
    return normalize_phone(raw, region)


def _parse(ctx: AppContext, line: int, row: dict[str, str], managers: dict[str, int],
           report: ImportReport) -> CustomerRow:
    if "__error__" in row:
        raise RowError(row["__error__"])
    account = need(row, "account", 40)
    name = need(row, "name", 300)
    raw_phones = [p for p in need(row, "phone", 500).replace(",", ";").split(";") if p.strip()]
    phones: list[str] = []
    for raw in raw_phones:
        phone = _fast_phone(raw.strip(), ctx.config.default_region)
        if phone is None:
            report.warn(line, f"phone {raw.strip()!r} is not a phone number; left out")
        elif phone not in phones:
            phones.append(phone)
    if not phones:
        raise RowError(f"no valid phone number in {row['phone']!r}")
    kind = row.get("kind") or None
    if kind is not None and kind not in ("person", "company"):
        raise RowError(f"kind {kind!r} must be person or company")
    segment = row.get("segment") or None
    if segment is not None and ctx.config.segments and segment not in ctx.config.segments:
        raise RowError(f"segment {segment!r} is not configured ({', '.join(ctx.config.segments)})")
    manager_id = None
    if row.get("manager"):
        manager_id = managers.get(row["manager"].strip().lower())
        if manager_id is None:
            raise RowError(f"manager {row['manager']!r} is not a staff e-mail (import staff first)")
    status = row.get("status") or None
    if status is not None and status not in STATUSES:
        raise RowError(f"status {status!r} must be one of {', '.join(STATUSES)}")
    currency = (row.get("currency") or "").upper() or None
    if currency is not None and (len(currency) != 3 or not currency.isalpha()):
        raise RowError(f"currency {row['currency']!r} is not a 3-letter code")
    pin = row.get("pin") or None
    if pin is not None and not (pin.isdigit() and 4 <= len(pin) <= 8):
        raise RowError("pin must be 4 to 8 digits")
    language = (row.get("language") or "").lower() or None
    if language is not None and language not in ("ru", "en"):
        raise RowError(f"language {row['language']!r} must be ru or en")
    return CustomerRow(
        line=line, account=account, name=name, phones=phones,
        email=parse_email(row["email"]) if row.get("email") else None,
        kind=kind, segment=segment, manager_id=manager_id,
        balance=parse_decimal(row["balance"], "balance") if row.get("balance") else None,
        currency=currency, tariff=(row.get("tariff") or None), status=status,
        paid_until=parse_date(row["paid_until"], "paid_until") if row.get("paid_until") else None,
        pin=pin, language=language,
    )


async def import_customers(ctx: AppContext, path: Path | str, *, progress: Progress | None = None,
                           batch_size: int = BATCH, writers: int | None = None) -> ImportReport:
    path = Path(path)
    report = ImportReport(kind="customers")
    total = count_rows(path)
    async with ctx.uow() as uow:
        managers = {email: sid for email, sid in (await uow.session.execute(select(Staff.email, Staff.id))).all()}
    pool = ThreadPoolExecutor(max_workers=min(8, os.cpu_count() or 2))
    # Parsing (CPU, here) overlaps with writing, which is mostly the database's time; PostgreSQL takes
    # several batches at once (each its own connection), SQLite one.
    if writers is None:
        writers = 3 if await _is_postgres(ctx) else 1
    pending: dict[asyncio.Task[None], set[str]] = {}  # batch being written -> its account numbers

    async def settle(limit: int) -> None:
        while len(pending) > limit:
            done, _ = await asyncio.wait(pending, return_when=asyncio.FIRST_COMPLETED)
            for task in done:
                pending.pop(task)
                task.result()  # a failed batch fails the import (after the rows before it went in)

    async def flush(rows: list[CustomerRow]) -> None:
        numbers = {r.account for r in rows}
        # An account repeated further down the file waits for its earlier batch: the later row must win.
        await settle(0 if any(numbers & other for other in pending.values()) else writers - 1)
        pending[asyncio.create_task(_write_with_retry(ctx, rows, report, pool))] = numbers

    try:
        batch: dict[str, CustomerRow] = {}
        for line, row in read_rows(path, REQUIRED, OPTIONAL):
            report.rows += 1
            try:
                parsed = _parse(ctx, line, row, managers, report)
            except RowError as exc:
                report.error(line, str(exc))
                continue
            if parsed.account in batch:
                report.warn(line, f"account {parsed.account} appears again in the file; this row wins")
            batch[parsed.account] = parsed
            if len(batch) >= batch_size:
                await flush(list(batch.values()))
                batch = {}
                if progress:
                    progress(report.rows, total)
                await asyncio.sleep(0)  # let the write start before parsing on
        if batch:
            await flush(list(batch.values()))
        await settle(0)
        if report.created >= 10_000 and await _is_postgres(ctx):
            # Fresh statistics, or the planner keeps treating the grown tables as small (slow look-ups).
            async with ctx.uow() as uow:
                await uow.session.execute(text("ANALYZE customers, customer_phones, accounts"))
                await uow.commit()
        if progress:
            progress(report.rows, total)
    finally:
        for task in pending:
            task.cancel()
        await asyncio.gather(*pending, return_exceptions=True)
        pool.shutdown(wait=False, cancel_futures=True)
    report.errors.sort()
    report.warnings.sort()
    return report


def _pin_hash(pin: str, current: str | None) -> str | None:
    """A new salted hash, or None when the stored hash already matches (a re-run changes nothing)."""
    if current and verify_pin(pin, current):
        return None
    return hash_pin(pin)


async def _hash_pins(rows: list[CustomerRow], current: dict[str, str | None], pool: ThreadPoolExecutor) -> None:
    with_pin = [r for r in rows if r.pin]
    if not with_pin:
        return
    loop = asyncio.get_running_loop()
    hashes = await asyncio.gather(*(loop.run_in_executor(pool, _pin_hash, r.pin, current.get(r.account))
                                    for r in with_pin))
    for row, hashed in zip(with_pin, hashes, strict=True):
        row.pin_hash = hashed


def _among(s, column, values: list):  # type: ignore[no-untyped-def]
    """column IN values; one array parameter on PostgreSQL instead of thousands of bind parameters."""
    if s.bind.dialect.name == "postgresql":
        return column == any_(bindparam(None, list(values), type_=ARRAY(column.type)))
    return column.in_(values)


async def _customer_ids(s, rows: list[dict[str, object]]) -> list[int]:  # type: ignore[no-untyped-def]
    """Insert customers and return their ids in row order.

    PostgreSQL: ids are taken from the table's sequence first and the rows are COPYed with them (RETURNING
    over a multi-row insert does not promise row order). SQLite: one insert per row, which is cheap there.
    """
    table = Customer.__table__
    if s.bind.dialect.name == "postgresql":
        ids = list((await s.execute(text(
            "SELECT nextval(pg_get_serial_sequence('customers', 'id')) FROM generate_series(1, :n)"),
            {"n": len(rows)})).scalars())
        await _copy(s, table, [{"id": cid, **row} for cid, row in zip(ids, rows, strict=True)])
        return ids
    out = []
    for row in rows:
        out.append((await s.execute(insert(table).values(**row))).inserted_primary_key[0])
    return out


async def _copy(s, table, rows: list[dict[str, object]]) -> None:  # type: ignore[no-untyped-def]
    """Bulk insert: COPY on PostgreSQL (the fastest way in), executemany elsewhere."""
    if not rows:
        return
    if s.bind.dialect.name != "postgresql":
        await s.execute(insert(table), rows)
        return
    columns = list(rows[0])
    conn = await s.connection()
    raw = await conn.get_raw_connection()
    await raw.driver_connection.copy_records_to_table(
        table.name, records=[tuple(row[c] for c in columns) for row in rows], columns=columns)


async def _is_postgres(ctx: AppContext) -> bool:
    async with ctx.uow() as uow:
        return uow.session.bind.dialect.name == "postgresql"


try:  # COPY goes through the driver directly, so its errors arrive unwrapped
    from asyncpg.exceptions import IntegrityConstraintViolationError

    _COLLISIONS: tuple[type[BaseException], ...] = (IntegrityError, IntegrityConstraintViolationError)
except ImportError:  # pragma: no cover - asyncpg is a dependency, but SQLite-only installs work without it
    _COLLISIONS = (IntegrityError,)


async def _write_with_retry(ctx: AppContext, rows: list[CustomerRow], report: ImportReport,
                            pool: ThreadPoolExecutor) -> None:
    """Write a batch; counts reach the report only once it is committed. A batch that collides with a
    concurrent one (the same account further down the file) is simply written again: it then updates."""
    for attempt in range(4):
        local = ImportReport(kind=report.kind)
        try:
            await _write_batch(ctx, rows, local, pool)
        except _COLLISIONS:
            if attempt == 3:
                raise
            await asyncio.sleep(0.1 * (attempt + 1))
            continue
        report.created += local.created
        report.updated += local.updated
        report.unchanged += local.unchanged
        report.warnings += local.warnings
        return


async def _write_batch(ctx: AppContext, rows: list[CustomerRow], report: ImportReport,
                       pool: ThreadPoolExecutor) -> None:
    from handlers.subscriptions import BalanceChange, notify_balance_changes

    numbers = [r.account for r in rows]
    async with ctx.uow() as uow:
        s = uow.session
        a = Account.__table__.c
        existing = {row.number: row for row in (await s.execute(
            select(a.id, a.number, a.customer_id, a.balance, a.currency, a.tariff, a.status, a.paid_until,
                   a.pin_hash).where(_among(s, a.number, numbers)))).all()}
        await _hash_pins(rows, {n: row.pin_hash for n, row in existing.items()}, pool)
        new_rows = [r for r in rows if r.account not in existing]
        old_rows = [r for r in rows if r.account in existing]
        now = ctx.clock()
        default_lang = ctx.config.default_language
        if new_rows:
            ids = await _customer_ids(s, [
                {"kind": r.kind or "person", "name": r.name, "email": r.email, "language": r.language or default_lang,
                 "segment": r.segment or "mass", "manager_id": r.manager_id, "created_at": now, "updated_at": now}
                for r in new_rows])
            await _copy(s, Account.__table__, [
                {"customer_id": cid, "number": r.account, "balance": r.balance or Decimal("0"),
                 "currency": r.currency or "RUB", "tariff": r.tariff, "status": r.status or "active",
                 "paid_until": r.paid_until, "pin_hash": r.pin_hash, "pin_failures": 0, "created_at": now}
                for cid, r in zip(ids, new_rows, strict=True)
            ])
            await _copy(s, CustomerPhone.__table__, [
                {"customer_id": cid, "phone": phone} for cid, r in zip(ids, new_rows, strict=True) for phone in r.phones
            ])
            report.created += len(new_rows)
        changes: list[BalanceChange] = []
        if old_rows:
            customer_ids = [existing[r.account].customer_id for r in old_rows]
            c = Customer.__table__.c
            current = {row.id: row for row in (await s.execute(
                select(c.id, c.name, c.email, c.kind, c.segment, c.manager_id, c.language, c.anonymised_at)
                .where(_among(s, c.id, customer_ids)))).all()}
            have_phones = {(cid, phone) for cid, phone in (await s.execute(
                select(CustomerPhone.customer_id, CustomerPhone.phone)
                .where(_among(s, CustomerPhone.customer_id, customer_ids)))).all()}
            customer_updates, account_updates, phone_inserts = [], [], []
            for r in old_rows:
                account = existing[r.account]
                customer = current[account.customer_id]
                c_changed: dict[str, object] = {}
                new_phones: list[dict[str, object]] = []
                if customer.anonymised_at is not None:
                    report.warn(r.line, f"account {r.account}: the client asked to be forgotten; personal data "
                                        "not re-imported")
                else:
                    for key, value in (("name", r.name), ("email", r.email), ("kind", r.kind),
                                       ("segment", r.segment), ("manager_id", r.manager_id),
                                       ("language", r.language)):
                        if value is not None and getattr(customer, key) != value:
                            c_changed[key] = value
                    for phone in r.phones:
                        if (customer.id, phone) not in have_phones:
                            new_phones.append({"customer_id": customer.id, "phone": phone})
                            have_phones.add((customer.id, phone))
                a_changed: dict[str, object] = {}
                for key, value in (("balance", r.balance), ("currency", r.currency), ("tariff", r.tariff),
                                   ("status", r.status), ("paid_until", r.paid_until), ("pin_hash", r.pin_hash)):
                    if value is not None and getattr(account, key) != value:
                        a_changed[key] = value
                if c_changed:
                    customer_updates.append({"id": customer.id, **c_changed, "updated_at": now})
                if a_changed:
                    account_updates.append({"id": account.id, **a_changed})
                if "balance" in a_changed:
                    changes.append(BalanceChange(account.id, account.balance, r.balance))  # type: ignore[arg-type]
                phone_inserts += new_phones
                if c_changed or a_changed or new_phones:
                    report.updated += 1
                else:
                    report.unchanged += 1
            if customer_updates:
                await s.execute(update(Customer), customer_updates)
            if account_updates:
                await s.execute(update(Account), account_updates)
            if phone_inserts:
                await s.execute(insert(CustomerPhone), phone_inserts)
        queued = await notify_balance_changes(uow, ctx, changes, event_key=f"import:{now.isoformat()}") if changes \
            else 0
        await uow.commit()
    if queued:
        await ctx.wake_dispatcher()
