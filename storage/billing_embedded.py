"""Billing kept in our own database (the default): accounts, payments and documents tables."""

from __future__ import annotations

from datetime import date, datetime
from pathlib import Path

from sqlalchemy import select
from sqlalchemy.exc import SQLAlchemyError

from handlers.billing import BillingSource
from handlers.context import AppContext
from handlers.dto import BalanceInfo, DocumentFile, DocumentInfo, PaymentInfo, ServiceUnavailable
from storage.models import Account, Document, Payment

# Telegram bots may upload files up to 50 MB; bigger ones are offered as a link.
MAX_UPLOAD_BYTES = 50 * 1024 * 1024


def payment_info(row: Payment) -> PaymentInfo:
    return PaymentInfo(paid_at=row.paid_at, amount=row.amount, currency=row.currency, method=row.method)


def document_info(row: Document, account_number: str) -> DocumentInfo:
    return DocumentInfo(
        id=row.id, account_number=account_number, kind=row.kind, number=row.number, issued_on=row.issued_on,
        period_start=row.period_start, period_end=row.period_end, amount=row.amount,
    )


def resolve_stored_path(data_dir: str, file_path: str) -> Path:
    """Stored paths are relative to DATA_DIR (so the data folder can move) unless absolute."""
    path = Path(file_path)
    return path if path.is_absolute() else Path(data_dir) / path


class EmbeddedBilling(BillingSource):
    def __init__(self, ctx: AppContext) -> None:
        self._ctx = ctx

    async def _account(self, uow, number: str) -> Account | None:  # type: ignore[no-untyped-def]
        return await uow.accounts.by_number(number)

    async def account_balance(self, number: str) -> BalanceInfo | None:
        try:
            async with self._ctx.uow() as uow:
                account = await self._account(uow, number)
                if account is None:
                    return None
                payments = await uow.payments.recent(account.id, 3)
                return BalanceInfo(
                    account_number=account.number, balance=account.balance, currency=account.currency,
                    status=account.status, tariff=account.tariff, paid_until=account.paid_until,
                    last_payments=tuple(payment_info(p) for p in payments),
                )
        except (SQLAlchemyError, OSError) as exc:
            raise ServiceUnavailable(f"database: {exc}") from exc

    async def recent_payments(self, number: str, limit: int = 5) -> list[PaymentInfo]:
        try:
            async with self._ctx.uow() as uow:
                account = await self._account(uow, number)
                if account is None:
                    return []
                return [payment_info(p) for p in await uow.payments.recent(account.id, limit)]
        except (SQLAlchemyError, OSError) as exc:
            raise ServiceUnavailable(f"database: {exc}") from exc

    async def payments_between(self, number: str, start: datetime, end: datetime) -> list[PaymentInfo]:
        try:
            async with self._ctx.uow() as uow:
                account = await self._account(uow, number)
                if account is None:
                    return []
                rows = await uow.session.scalars(
                    select(Payment).where(Payment.account_id == account.id, Payment.paid_at >= start,
                                          Payment.paid_at < end).order_by(Payment.paid_at, Payment.id)
                )
                return [payment_info(p) for p in rows]
        except (SQLAlchemyError, OSError) as exc:
            raise ServiceUnavailable(f"database: {exc}") from exc

    async def documents(
        self,
        number: str,
        *,
        kinds: tuple[str, ...] = (),
        period_start: date | None = None,
        period_end: date | None = None,
        limit: int = 50,
    ) -> list[DocumentInfo]:
        try:
            async with self._ctx.uow() as uow:
                account = await self._account(uow, number)
                if account is None:
                    return []
                found: list[Document] = []
                for kind in kinds or (None,):
                    found += await uow.documents.find(account.id, kind, period_start, period_end, limit)
                found.sort(key=lambda d: (d.issued_on, d.id), reverse=True)
                return [document_info(d, account.number) for d in found[:limit]]
        except (SQLAlchemyError, OSError) as exc:
            raise ServiceUnavailable(f"database: {exc}") from exc

    async def document(self, document_id: int) -> DocumentInfo | None:
        try:
            async with self._ctx.uow() as uow:
                row = await uow.documents.get(document_id)
                if row is None:
                    return None
                account = await uow.accounts.get(row.account_id)
                return document_info(row, account.number if account else "")
        except (SQLAlchemyError, OSError) as exc:
            raise ServiceUnavailable(f"database: {exc}") from exc

    async def document_content(self, document_id: int) -> DocumentFile | None:
        try:
            async with self._ctx.uow() as uow:
                row = await uow.documents.get(document_id)
                if row is None or not row.file_path:
                    return None
                file_path, content_type = row.file_path, row.content_type
        except (SQLAlchemyError, OSError) as exc:
            raise ServiceUnavailable(f"database: {exc}") from exc
        path = resolve_stored_path(self._ctx.data_dir, file_path)
        try:
            size = path.stat().st_size
        except OSError:
            return None  # the record names a file that is gone: regenerate from the data if possible
        if size > MAX_UPLOAD_BYTES:
            return DocumentFile(filename=path.name, content_type=content_type, size=size, content=None,
                                path=str(path))
        return DocumentFile(filename=path.name, content_type=content_type, size=size, content=path.read_bytes(),
                            path=str(path))

    async def accounts_by_phone(self, phone_e164: str) -> list[str]:
        async with self._ctx.uow() as uow:
            customers = await uow.customers.by_phone(phone_e164)
            return [a.number for c in customers for a in c.accounts]
