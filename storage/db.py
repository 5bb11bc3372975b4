"""Engine and session factory for SQLite (embedded default) and PostgreSQL."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from sqlalchemy import event
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker, create_async_engine
from sqlalchemy.pool import NullPool


def ensure_sqlite_folder(database_url: str) -> None:
    """`sqlite:///./data/x.db` fails when ./data does not exist yet; make it on first run."""
    url = make_url(database_url)
    if url.get_backend_name() == "sqlite" and url.database and url.database != ":memory:":
        Path(url.database).expanduser().resolve().parent.mkdir(parents=True, exist_ok=True)


# Enough kept connections for what one process runs at once (bot/webhook.py: 10 updates in flight, each up to
# two look-ups side by side; the IVR's batched statements; the outbox dispatcher and the SLA watcher). Past
# `pool_size` the pool opens an overflow connection per unit of work and closes it afterwards: connect, TLS
# probe, type introspection and every statement prepared again, measured at ~5% of the bot's CPU under load.
POOL_SIZE = 20
POOL_OVERFLOW = 10


def create_engine(database_url: str, *, pool_size: int = POOL_SIZE, echo: bool = False) -> AsyncEngine:
    url = make_url(database_url)
    kwargs: dict[str, Any] = {"echo": echo}
    if url.get_backend_name() == "sqlite":
        ensure_sqlite_folder(database_url)
        # One writer at a time is SQLite's nature; a generous busy timeout queues writers instead of failing.
        kwargs["connect_args"] = {"timeout": 30}
        if url.database in (None, "", ":memory:"):
            kwargs["poolclass"] = NullPool
    else:
        # No pool pre-ping: it costs a round trip on every checkout, i.e. on every unit of work. A connection
        # that died with the server fails its first statement instead; SQLAlchemy recognises the disconnect
        # and invalidates the whole pool, the request answers 503 (Telegram and Twilio retry it) and the next
        # one connects afresh (tests/e2e/test_outage.py shows nothing is lost).
        kwargs.update(pool_size=pool_size, max_overflow=POOL_OVERFLOW, pool_recycle=1800)
        # Fail fast when the server is unreachable instead of hanging a request.
        kwargs["connect_args"] = {"timeout": 5, "command_timeout": 30}
        if url.get_driver_name() == "asyncpg" and "prepared_statement_cache_size" not in url.query:
            # The product runs a few hundred distinct statements; asyncpg's default cache of 100 per connection
            # would keep re-preparing them (one extra round trip each time).
            url = url.update_query_dict({"prepared_statement_cache_size": "500"})
    engine = create_async_engine(url, **kwargs)
    if url.get_backend_name() == "sqlite":
        event.listen(engine.sync_engine, "connect", _sqlite_pragmas)
    return engine


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA busy_timeout=30000")
    cursor.close()


def create_session_factory(engine: AsyncEngine) -> async_sessionmaker[AsyncSession]:
    # expire_on_commit=False: use cases return loaded objects after committing.
    return async_sessionmaker(engine, expire_on_commit=False, autoflush=False)


def create_read_session_factory(engine: AsyncEngine) -> async_sessionmaker[AsyncSession]:
    """Sessions for read-only units of work. On PostgreSQL they run in autocommit mode: no BEGIN and no
    ROLLBACK round trips around a look-up (each statement sees its own snapshot, which is all a one-query
    read needs). SQLite transactions are local calls, so it keeps the ordinary sessions there."""
    if engine.dialect.name == "sqlite":
        return create_session_factory(engine)
    return async_sessionmaker(engine.execution_options(isolation_level="AUTOCOMMIT"),
                              expire_on_commit=False, autoflush=False)
