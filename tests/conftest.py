"""Shared fixtures.

Backends: every storage and Redis test runs on the embedded default (SQLite + in-process twins) and, when
TEST_DATABASE_URL and TEST_REDIS_URL are set, also on PostgreSQL + Redis. When they are set but cannot be
reached, the tests fail: they never skip.

Isolation: SQLite gets a fresh copy of a migrated template file per test. PostgreSQL gets one database per
test session (so parallel runs on the same server do not meet), migrated once and truncated per test.
Redis keys carry a per-test prefix and are deleted afterwards.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
from sqlalchemy import text
from sqlalchemy.engine import make_url

from config import BusinessConfig, Settings, load_business_config
from service.container import Services
from storage.db import create_engine
from storage.kv import KeyValueBackends, MemoryKeyValue, MemoryLocks, MemoryPubSub
from storage.migrate import upgrade
from storage.models import Base
from storage.seed import sync_departments
from tests.fakes.bot_api import FakeBotApi

TEST_DATABASE_URL = os.environ.get("TEST_DATABASE_URL") or None
TEST_REDIS_URL = os.environ.get("TEST_REDIS_URL") or None

BACKENDS = ["embedded"] + (["server"] if TEST_DATABASE_URL else [])
KV_BACKENDS = ["memory"] + (["redis"] if TEST_REDIS_URL else [])


# ------------------------------------------------------------------ databases


def run_blocking(coro) -> object:  # type: ignore[no-untyped-def]
    """Run a coroutine to completion from sync code, even when called while an event loop runs
    (session fixtures are first requested from inside async tests)."""
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(1) as pool:
        return pool.submit(asyncio.run, coro).result()


@pytest.fixture(scope="session")
def sqlite_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("template") / "template.db"
    run_blocking(upgrade(f"sqlite+aiosqlite:///{path}"))
    return path


@pytest.fixture(scope="session")
def postgres_url() -> Iterator[str]:
    """A private database on the TEST_DATABASE_URL server, migrated once, dropped at the end."""
    assert TEST_DATABASE_URL, "postgres_url used without TEST_DATABASE_URL"
    server = make_url(TEST_DATABASE_URL)
    name = f"fo_test_{os.getpid()}_{uuid.uuid4().hex[:6]}"

    async def admin(sql: str) -> None:
        engine = create_engine(server.render_as_string(hide_password=False))
        try:
            async with engine.connect() as conn:
                conn = await conn.execution_options(isolation_level="AUTOCOMMIT")
                await conn.execute(text(sql))
        finally:
            await engine.dispose()

    run_blocking(admin(f'CREATE DATABASE "{name}"'))
    url = server.set(database=name).render_as_string(hide_password=False)
    try:
        run_blocking(upgrade(url))
        yield url
    finally:
        run_blocking(admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


async def _truncate_postgres(url: str) -> None:
    tables = ", ".join(f'"{t.name}"' for t in Base.metadata.sorted_tables)
    engine = create_engine(url, pool_size=1)
    try:
        async with engine.begin() as conn:
            await conn.execute(text(f"TRUNCATE {tables} RESTART IDENTITY CASCADE"))
    finally:
        await engine.dispose()


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest) -> str:
    return request.param


@pytest.fixture
async def database_url(backend: str, request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if backend == "embedded":
        path = tmp_path / "test.db"
        shutil.copy(request.getfixturevalue("sqlite_template"), path)
        return f"sqlite+aiosqlite:///{path}"
    url = request.getfixturevalue("postgres_url")
    await _truncate_postgres(url)
    return url


# ------------------------------------------------------------------ redis and twins


async def _drop_prefix(client, prefix: str) -> None:  # type: ignore[no-untyped-def]
    keys = [key async for key in client.scan_iter(match=f"{prefix}*", count=500)]
    if keys:
        await client.delete(*keys)


@pytest.fixture
async def kv_backends(backend: str) -> AsyncIterator[KeyValueBackends]:
    """Redis (per-test prefix) on the server backend, the in-process twins on the embedded one."""
    if backend == "embedded":
        yield KeyValueBackends(MemoryKeyValue(), MemoryLocks(), MemoryPubSub())
        return
    assert TEST_REDIS_URL, "TEST_DATABASE_URL is set but TEST_REDIS_URL is not: set both"
    prefix = f"fotest:{uuid.uuid4().hex[:8]}:"
    backends = KeyValueBackends.from_url(TEST_REDIS_URL, prefix=prefix)
    await backends.redis.ping()  # unreachable Redis fails the test here
    try:
        yield backends
    finally:
        await _drop_prefix(backends.redis, prefix)
        await backends.close()


# ------------------------------------------------------------------ the service


@pytest.fixture(scope="session")
def business_config() -> BusinessConfig:
    return load_business_config()


@pytest.fixture
def settings(database_url: str, backend: str, tmp_path: Path) -> Settings:
    return Settings(
        _env_file=None,  # type: ignore[call-arg]
        database_url=database_url,
        redis_url=TEST_REDIS_URL if backend == "server" else None,
        data_dir=tmp_path / "data",
        seed_demo=False,
    )


@pytest.fixture
async def services(
    settings: Settings, business_config: BusinessConfig, kv_backends: KeyValueBackends
) -> AsyncIterator[Services]:
    from handlers.i18n import Translator

    engine = create_engine(settings.database_url, pool_size=5)
    svc = Services(settings=settings, config=business_config, engine=engine, kv=kv_backends,
                   translator=Translator(business_config))
    await sync_departments(svc.uow, business_config)
    try:
        yield svc
    finally:
        await engine.dispose()


@pytest.fixture
async def fake_bot_api() -> AsyncIterator[FakeBotApi]:
    """A fake Telegram Bot API server on a free loopback port (see tests/fakes/bot_api.py)."""
    api = FakeBotApi()
    await api.start()
    try:
        yield api
    finally:
        await api.stop()


@pytest.fixture(scope="session")
def trained_data_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A data folder with the shipped topic model trained once; service processes load it from the cache."""
    from handlers.classification import load_or_train_default

    data_dir = tmp_path_factory.mktemp("trained-data")
    load_or_train_default(cache_dir=data_dir / "models")
    return data_dir


@pytest.fixture
async def demo_services(services: Services) -> Services:
    """Services with the demo data set loaded."""
    from storage.seed import seed_demo

    await seed_demo(services.uow, services.config)
    return services
