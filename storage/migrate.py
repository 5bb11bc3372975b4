"""Alembic, driven from code: `python main.py db upgrade` and the automatic upgrade on start."""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy.ext.asyncio import AsyncEngine

log = logging.getLogger(__name__)
MIGRATIONS_DIR = Path(__file__).resolve().parent / "migrations"


def alembic_config(database_url: str) -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS_DIR))
    cfg.set_main_option("sqlalchemy.url", database_url.replace("%", "%%"))
    return cfg


def head_revision() -> str | None:
    return ScriptDirectory.from_config(alembic_config("sqlite://")).get_current_head()


async def current_revision(engine: AsyncEngine) -> str | None:
    async with engine.connect() as conn:
        return await conn.run_sync(lambda sync: MigrationContext.configure(sync).get_current_revision())


async def upgrade(database_url: str) -> None:
    # Alembic's env.py runs its own event loop for the async engine, so run it in a thread.
    await asyncio.to_thread(command.upgrade, alembic_config(database_url), "head")


async def upgrade_if_behind(engine: AsyncEngine, database_url: str) -> bool:
    current, head = await current_revision(engine), head_revision()
    if current == head:
        return False
    log.info("database schema is at %s, upgrading to %s", current or "empty", head)
    await upgrade(database_url)
    return True
