"""Builds every shared dependency once, from settings and the business configuration."""

from __future__ import annotations

import asyncio
import inspect
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import func, select, text
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncEngine

from config import BusinessConfig, Settings
from handlers.context import AppContext
from handlers.i18n import Translator
from service.errors import StartupError
from storage.db import create_engine, create_read_session_factory, create_session_factory
from storage.kv import KeyValueBackends
from storage.migrate import current_revision, head_revision, upgrade_if_behind
from storage.models import Customer
from storage.seed import seed_demo, sync_departments
from storage.uow import SqlAlchemyUnitOfWork, UnitOfWork

log = logging.getLogger(__name__)


def _utcnow() -> datetime:
    return datetime.now(UTC)


@dataclass
class Services:
    settings: Settings
    config: BusinessConfig
    engine: AsyncEngine
    kv: KeyValueBackends
    translator: Translator
    clock: Callable[[], datetime] = _utcnow
    # Filled by features as they are wired (classifier, billing source, bot sender...).
    extras: dict[str, Any] = field(default_factory=dict)
    _write_lock: asyncio.Lock | None = None

    def __post_init__(self) -> None:
        self._session_factory = create_session_factory(self.engine)
        self._read_session_factory = create_read_session_factory(self.engine)
        if self.engine.dialect.name == "sqlite":
            self._write_lock = asyncio.Lock()
        # The use cases' view of these services; adapters get it, not the container.
        self.ctx = AppContext(config=self.config, uow=self.uow, t=self.translator, clock=self.clock, kv=self.kv,
                              data_dir=str(self.settings.data_dir), reader=self.read_uow)

    def uow(self) -> UnitOfWork:
        return SqlAlchemyUnitOfWork(self._session_factory, self._write_lock)

    def read_uow(self) -> UnitOfWork:
        # No write lock: a read-only unit of work never becomes a SQLite write transaction.
        return SqlAlchemyUnitOfWork(self._read_session_factory, read_only=True)

    async def check_database(self, timeout: float = 3.0) -> None:
        async def probe() -> None:
            async with self.engine.connect() as conn:
                await conn.execute(text("SELECT 1"))

        await asyncio.wait_for(probe(), timeout)

    async def check_redis(self, timeout: float = 3.0) -> None:
        await asyncio.wait_for(self.kv.ping(), timeout)

    async def close(self) -> None:
        for port in [self.ctx.billing, *self.ctx.extras.values()]:
            try:
                await _close_port(port)
            except Exception:
                log.exception("closing %s failed", type(port).__name__)
        await self.kv.close()
        await self.engine.dispose()


async def _close_port(port: Any) -> None:
    """Release a port's connections. Ports that hold connections (HTTP clients) expose `async close()`,
    except aiogram's Bot, whose `close()` is the Bot API method that logs the bot out of the server:
    for it only the HTTP session is closed."""
    if type(port).__module__.startswith("aiogram"):
        session = getattr(port, "session", None)
        if session is not None:
            await session.close()
        return
    closer = getattr(port, "close", None)
    if closer is not None and inspect.iscoroutinefunction(closer):
        await closer()


def _describe_db_error(exc: BaseException) -> str:
    text_ = str(getattr(exc, "orig", None) or exc).strip().splitlines()
    return text_[0] if text_ else type(exc).__name__


async def build_services(settings: Settings, config: BusinessConfig, *, prepare_database: bool = True,
                         defer_demo_seed: bool = False) -> Services:
    """Connect to the database and Redis, failing with one clear line when either is unusable."""
    engine = create_engine(settings.database_url)
    kv = (KeyValueBackends.from_url(settings.redis_url, prefix=settings.redis_prefix) if settings.redis_url
          else KeyValueBackends.in_process())
    services = Services(settings=settings, config=config, engine=engine, kv=kv, translator=Translator(config))
    try:
        try:
            await services.check_database()
        except (SQLAlchemyError, OSError, TimeoutError, ConnectionError) as exc:
            raise StartupError(f"database unreachable ({engine.url.render_as_string()}): "
                               f"{_describe_db_error(exc)}") from None
        if settings.redis_url:
            try:
                await services.check_redis()
            except Exception as exc:  # redis raises several unrelated types here
                raise StartupError(f"redis unreachable ({settings.redis_url_safe}): {exc}") from None
        if prepare_database:
            await _prepare_database(services, seed=not defer_demo_seed)
        from service.wiring import connect_ports  # wiring imports this module

        connect_ports(services)
    except BaseException:
        await services.close()
        raise
    return services


async def _prepare_database(services: Services, *, seed: bool = True) -> None:
    settings = services.settings
    try:
        if settings.is_sqlite:
            await upgrade_if_behind(services.engine, settings.database_url)
        elif await current_revision(services.engine) != head_revision():
            log.warning("PostgreSQL schema is behind the code; upgrading now (python main.py db upgrade)")
            await upgrade_if_behind(services.engine, settings.database_url)
        await sync_departments(services.uow, services.config)
        if seed:
            await seed_first_run(services)
    except SQLAlchemyError as exc:
        raise StartupError(f"database not usable: {_describe_db_error(exc)}") from None


async def seed_first_run(services: Services) -> None:
    """Demo data on the first run of the embedded default (SQLite, SEED_DEMO on, no customers yet).
    `serve` runs it once it is listening, so a fresh start answers /health without waiting for it."""
    if services.settings.is_sqlite and services.settings.seed_demo and await _is_empty(services):
        added = await seed_demo(services.uow, services.config)
        log.info("first run: demo data seeded (%s)", ", ".join(f"{v} {k}" for k, v in added.items()))


async def _is_empty(services: Services) -> bool:
    async with services.uow() as uow:
        return (await uow.session.scalar(select(func.count()).select_from(Customer))) == 0
