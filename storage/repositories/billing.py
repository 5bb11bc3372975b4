from __future__ import annotations

from datetime import date

from sqlalchemy import select

from storage.models import Document, Payment
from storage.repositories.base import Repository


class PaymentRepository(Repository):
    async def recent(self, account_id: int, limit: int = 5) -> list[Payment]:
        rows = await self.session.scalars(
            select(Payment).where(Payment.account_id == account_id).order_by(Payment.paid_at.desc()).limit(limit)
        )
        return list(rows)

    async def by_external_id(self, external_id: str) -> Payment | None:
        return await self.session.scalar(select(Payment).where(Payment.external_id == external_id))


class DocumentRepository(Repository):
    async def get(self, document_id: int) -> Document | None:
        return await self.session.get(Document, document_id)

    async def find(
        self,
        account_id: int,
        kind: str | None = None,
        period_from: date | None = None,
        period_to: date | None = None,
        limit: int = 50,
    ) -> list[Document]:
        """Documents of an account, newest first; a period matches documents that overlap it."""
        query = select(Document).where(Document.account_id == account_id)
        if kind is not None:
            query = query.where(Document.kind == kind)
        if period_from is not None:
            query = query.where((Document.period_end >= period_from) | (Document.period_end.is_(None)
                                                                        & (Document.issued_on >= period_from)))
        if period_to is not None:
            query = query.where((Document.period_start <= period_to) | (Document.period_start.is_(None)
                                                                        & (Document.issued_on <= period_to)))
        rows = await self.session.scalars(query.order_by(Document.issued_on.desc(), Document.id.desc()).limit(limit))
        return list(rows)
