"""Unit of work: one transaction, committed explicitly, rolled back by default.

    async with uow_factory() as uow:
        customer = await uow.customers.by_phone(phone)
        ...
        await uow.commit()      # forget this and nothing is written

Use cases depend on `UnitOfWork`; the composition root hands them a factory of `SqlAlchemyUnitOfWork`.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from types import TracebackType
from typing import Self

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from storage import repositories as r


class UnitOfWork:
    customers: r.CustomerRepository
    accounts: r.AccountRepository
    payments: r.PaymentRepository
    documents: r.DocumentRepository
    departments: r.DepartmentRepository
    staff: r.StaffRepository
    interactions: r.InteractionRepository
    calls: r.CallRepository
    processed_updates: r.ProcessedUpdateRepository
    tickets: r.TicketRepository
    outbox: r.OutboxRepository
    session: AsyncSession

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.rollback()

    async def commit(self) -> None:
        raise NotImplementedError

    async def rollback(self) -> None:
        raise NotImplementedError


class SqlAlchemyUnitOfWork(UnitOfWork):
    def __init__(self, session_factory: async_sessionmaker[AsyncSession], write_lock: asyncio.Lock | None = None,
                 *, read_only: bool = False):
        self._session_factory = session_factory
        # A read-only unit of work (see storage.db.create_read_session_factory) refuses to commit: on
        # PostgreSQL its statements autocommit, so a write through it would not be atomic.
        self._read_only = read_only
        # SQLite has a single writer; serialising our own transactions avoids "database is locked"
        # errors when a read transaction tries to become a write one. None on PostgreSQL.
        self._write_lock = write_lock
        self._locked = False

    async def __aenter__(self) -> Self:
        if self._write_lock is not None:
            await self._write_lock.acquire()
            self._locked = True
        self.session = self._session_factory()
        s = self.session
        self.customers = r.CustomerRepository(s)
        self.accounts = r.AccountRepository(s)
        self.payments = r.PaymentRepository(s)
        self.documents = r.DocumentRepository(s)
        self.departments = r.DepartmentRepository(s)
        self.staff = r.StaffRepository(s)
        self.interactions = r.InteractionRepository(s)
        self.calls = r.CallRepository(s)
        self.processed_updates = r.ProcessedUpdateRepository(s)
        self.tickets = r.TicketRepository(s)
        self.outbox = r.OutboxRepository(s)
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        try:
            # close() rolls back whatever was not committed, like rollback(), but leaves the objects'
            # loaded attributes readable (rollback() would expire them), so results can be used after the block.
            await self.session.close()
        finally:
            if self._locked and self._write_lock is not None:
                self._locked = False
                self._write_lock.release()

    async def commit(self) -> None:
        if self._read_only:
            raise RuntimeError("a read-only unit of work cannot commit; use ctx.uow() for writes")
        await self.session.commit()

    async def rollback(self) -> None:
        await self.session.rollback()


UnitOfWorkFactory = Callable[[], UnitOfWork]
