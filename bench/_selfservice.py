"""Shared parts of the self-service benchmarks: a private PostgreSQL database and synthetic customers."""

from __future__ import annotations

import csv
import os
import random
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

DEFAULT_DB = os.environ.get("BENCH_DATABASE_URL") or os.environ.get("TEST_DATABASE_URL") \
    or "postgresql+asyncpg://postgres@127.0.0.1:5432/postgres"

SURNAMES = ("Иванов", "Смирнов", "Кузнецов", "Попов", "Васильев", "Петров", "Соколов", "Михайлов", "Новиков",
            "Фёдоров", "Морозов", "Волков", "Алексеев", "Лебедев", "Семёнов", "Егоров", "Павлов", "Козлов",
            "Степанов", "Николаев", "Орлов", "Андреев", "Макаров", "Никитин", "Захаров", "Зайцев", "Соловьёв",
            "Борисов", "Яковлев", "Григорьев", "Романов", "Воробьёв", "Сергеев", "Кузьмин", "Фролов",
            "Александров", "Дмитриев", "Королёв", "Гусев", "Киселёв", "Ильин", "Максимов", "Поляков", "Сорокин",
            "Виноградов", "Ковалёв", "Белов", "Медведев", "Антонов", "Тарасов", "Жуков", "Баранов", "Филиппов",
            "Комаров", "Давыдов", "Беляев", "Герасимов", "Богданов", "Осипов", "Сидоров", "Матвеев", "Титов",
            "Марков", "Миронов", "Крылов", "Куликов", "Карпов", "Власов", "Мельников", "Денисов")
FIRST = ("Александр", "Дмитрий", "Максим", "Сергей", "Андрей", "Алексей", "Артём", "Илья", "Кирилл", "Михаил",
         "Никита", "Матвей", "Роман", "Егор", "Арсений", "Иван", "Денис", "Евгений", "Даниил", "Тимофей",
         "Владислав", "Игорь", "Владимир", "Павел", "Руслан", "Марк", "Константин", "Тимур", "Олег", "Ярослав")
PATRONYMIC = ("Александрович", "Дмитриевич", "Сергеевич", "Андреевич", "Алексеевич", "Иванович", "Михайлович",
              "Владимирович", "Николаевич", "Петрович", "Викторович", "Юрьевич", "Олегович", "Павлович")


def phone_of(i: int) -> str:
    return f"+79{100000000 + i:09d}"


# Real surname variety is in the tens of thousands; 70 stems x 12 endings keeps namesakes plausible
# (tens of thousands of pairs per 100,000 people would be an artefact of a tiny name list).
_ENDINGS = ("ов", "ев", "ин", "ский", "цкий", "енко", "ук", "ович", "ых", "ской", "аев", "инов")
SURNAME_VARIANTS = tuple(sorted({s[:-2] + e for s in SURNAMES for e in _ENDINGS}))


def person_name(rng: random.Random) -> str:
    return f"{rng.choice(SURNAME_VARIANTS)} {rng.choice(FIRST)} {rng.choice(PATRONYMIC)}"


def write_customers_csv(path: Path, rows: int, seed: int = 1) -> None:
    rng = random.Random(seed)
    with path.open("w", encoding="utf-8", newline="") as fh:
        out = csv.writer(fh)
        out.writerow(["account", "name", "phone", "email", "balance", "tariff", "status", "paid_until"])
        for i in range(rows):
            out.writerow([f"{5_000_000 + i}", person_name(rng), phone_of(i),
                          f"client{i}@mail.example" if i % 3 else "", f"{rng.randint(-500, 5000)}.00",
                          "Домашний 100", "active", "2026-12-31"])


async def server_sql(url: str, sql: str) -> None:
    """Run one statement (CREATE/DROP DATABASE) on the server's maintenance database, outside a transaction."""
    from sqlalchemy import text
    from sqlalchemy.engine import make_url

    from storage.db import create_engine

    engine = create_engine(make_url(url).set(database="postgres").render_as_string(hide_password=False))
    try:
        async with engine.connect() as conn:
            conn = await conn.execution_options(isolation_level="AUTOCOMMIT")
            await conn.execute(text(sql))
    finally:
        await engine.dispose()


@asynccontextmanager
async def private_services(server_url: str, data_dir: Path, keep: bool = False) -> AsyncIterator[Any]:
    """Services on a fresh, migrated PostgreSQL database (dropped afterwards unless `keep`)."""
    from sqlalchemy.engine import make_url

    from config import Settings, load_business_config
    from service.container import build_services
    from service.wiring import connect_ports

    name = f"fo_bench_{uuid.uuid4().hex[:8]}"
    await server_sql(server_url, f'CREATE DATABASE "{name}"')
    url = make_url(server_url).set(database=name).render_as_string(hide_password=False)
    services = None
    try:
        settings = Settings(_env_file=None, database_url=url, data_dir=data_dir, seed_demo=False)  # type: ignore[call-arg]
        services = await build_services(settings, load_business_config())
        connect_ports(services)
        yield services
    finally:
        if services is not None:
            await services.close()
        if keep:
            print(f"kept database {url}")
        else:
            await server_sql(server_url, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
