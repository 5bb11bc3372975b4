"""The webhook's record of handled Telegram updates (processed_updates, source "telegram").

Asked twice per update, so each is one statement and, on PostgreSQL, one round trip:
- `already_processed`: a look-up through a read-only unit of work (autocommit there: no BEGIN, no ROLLBACK);
- `mark_processed`: one `INSERT ... ON CONFLICT DO NOTHING`. A single statement is atomic on its own, so on
  PostgreSQL it runs in autocommit mode instead of BEGIN, INSERT, COMMIT (three round trips, plus the ORM
  flush that an `add()` costs). A concurrent delivery of the same update that marked it first wins, as the
  unique (source, key) constraint always made it. SQLite keeps an ordinary unit of work: its transactions
  are local calls, and going through it keeps SQLite's one-writer-at-a-time lock (storage/uow.py).
"""

from __future__ import annotations

import weakref
from typing import Any

from sqlalchemy import Insert, bindparam
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert

from handlers.context import AppContext
from storage.models import ProcessedUpdate

SOURCE = "telegram"
# Per unit-of-work factory (weakly held: a context's factory lives as long as its services).
_READERS: weakref.WeakKeyDictionary[Any, tuple[bool, str]] = weakref.WeakKeyDictionary()


async def already_processed(ctx: AppContext, key: str) -> bool:
    async with ctx.read() as uow:
        return await uow.processed_updates.get(SOURCE, key) is not None


_MARK_COLUMNS = ("source", "key", "status", "error", "attempts")
_MARKS: dict[str, Insert] = {}


def _mark_statement(dialect: str) -> Insert:
    """Built once per dialect (building an insert costs more CPU than sending it); values are parameters.
    A Core insert on the table: no ORM bookkeeping for a row nobody reads back."""
    statement = _MARKS.get(dialect)
    if statement is None:
        insert = pg_insert if dialect == "postgresql" else sqlite_insert
        table = ProcessedUpdate.__table__
        # processed_at takes its column default, as with the ORM.
        statement = insert(table).values({name: bindparam(name) for name in _MARK_COLUMNS}).on_conflict_do_nothing(
            index_elements=[table.c.source, table.c.key])
        _MARKS[dialect] = statement
    return statement


async def autocommit_reads(ctx: AppContext) -> bool:
    """Whether ctx.read() runs in autocommit mode (PostgreSQL, storage.db): a look-up through it is then one
    round trip, and one statement through it is its own transaction. Asked once per reader factory."""
    return (await _reader_traits(ctx))[0]


async def _reader_traits(ctx: AppContext) -> tuple[bool, str]:
    factory = ctx.reader or ctx.uow
    known = _READERS.get(factory)
    if known is None:
        async with ctx.read() as reader:
            bind = reader.session.get_bind()
            known = _READERS[factory] = (bind.get_execution_options().get("isolation_level") == "AUTOCOMMIT",
                                         bind.dialect.name)
    return known


async def mark_processed(ctx: AppContext, key: str, status: str, error: str | None, attempts: int) -> None:
    values = {"source": SOURCE, "key": key, "status": status, "error": error, "attempts": attempts}
    autocommit, dialect = await _reader_traits(ctx)
    # With autocommit reads this one statement is its own transaction; otherwise (SQLite, a context without
    # a reader) an ordinary unit of work commits it.
    async with (ctx.read() if autocommit else ctx.uow()) as uow:
        connection = await uow.session.connection()
        await connection.execute(_mark_statement(dialect), values)
        if not autocommit:
            await uow.commit()
