"""Benchmark: opening tickets end to end on PostgreSQL, from one process.

    python -m bench.tickets [--seconds 10] [--concurrency 20] [--customers 60000] [--database-url URL]
                            [--redis-url URL]

Each operation is `handlers.intake.handle_inbound` for an identified client with a new message: the
duplicate check, the follow-up check, routing (on-duty agents and their open load), priority and SLA
deadlines in business hours, the ticket number from the per-year counter, and the interaction, ticket,
"opened"/"assigned" events and the staff-alert outbox row written in ONE transaction. Clients are distinct
so every message opens a ticket (no follow-up appends). A private database is created on the server and
dropped afterwards. Target: >= 1,000 tickets/s on the project's 2-core machine.

On PostgreSQL concurrent openings share a read, a write statement and a commit (handlers.tickets.group_open),
so with `--concurrency 1` this measures one ticket per transaction. Besides this process's CPU per ticket it
reports the server's (`server_cpu_ms_per_ticket`: the backends serving the benchmark's database, read from
/proc when the server runs on this machine, else None): the server shares the machine's two cores, so its CPU
bounds the throughput as much as ours.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import sys
import time
import uuid
from pathlib import Path
from typing import Any

from bench._selfservice import server_sql

TOPICS = ("no_connection", "slow_connection", "line_damage", "complaint", "new_connection", "feedback",
          "tariff_change", "pause_service", "human", "out_of_scope")


async def _customers(services: Any, count: int) -> list[Any]:
    """Bulk-insert `count` residential customers and return their profiles (built without queries)."""
    from sqlalchemy import insert

    from handlers.dto import ClientProfile
    from storage.models import Customer

    async with services.uow() as uow:
        rows = [{"kind": "person", "name": f"Клиент {i}", "language": "ru", "segment": "mass"} for i in range(count)]
        result = await uow.session.execute(insert(Customer).returning(Customer.id), rows)
        ids = list(result.scalars())
        await uow.commit()
    return [ClientProfile(customer_id=i, name=f"Клиент {n}", kind="person", segment="mass", language="ru",
                          phones=(), email=None, telegram_user_id=None, account_numbers=(), manager_id=None,
                          manager_name=None, has_consent=True) for n, i in enumerate(ids)]


async def _backend_pids(services: Any) -> list[int]:
    """The server processes serving this benchmark's private database (its pool's connections)."""
    from sqlalchemy import text

    async with services.uow() as uow:
        return [int(pid) for pid in await uow.session.scalars(
            text("SELECT pid FROM pg_stat_activity WHERE datname = current_database()"))]


def _backend_cpu(pids: list[int]) -> dict[int, float]:
    """CPU seconds used so far by each of `pids` that is a local PostgreSQL process (empty for a remote server).

    The server shares this machine's cores, so its CPU per ticket bounds the throughput as much as ours does.
    Only the backends of the benchmark's database are counted: not the WAL writer or checkpointer, and not
    other clients of the same server.
    """
    tick = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100
    used: dict[int, float] = {}
    for pid in pids:
        try:
            if not Path(f"/proc/{pid}/comm").read_text().startswith("postgres"):
                continue
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        used[pid] = (int(fields[11]) + int(fields[12])) / tick  # utime + stime
    return used


async def run(args: argparse.Namespace) -> dict[str, Any]:
    from sqlalchemy import func, select
    from sqlalchemy.engine import make_url

    from config import Settings, load_business_config
    from handlers.intake import handle_inbound
    from service.container import Services
    from storage.db import create_engine
    from storage.kv import KeyValueBackends
    from storage.migrate import upgrade
    from storage.models import Interaction, Notification, Ticket, TicketEvent
    from storage.seed import seed_demo, sync_departments

    name = f"fo_bench_tickets_{uuid.uuid4().hex[:8]}"
    await server_sql(args.database_url, f'CREATE DATABASE "{name}"')
    db_url = make_url(args.database_url).set(database=name).render_as_string(hide_password=False)
    try:
        await upgrade(db_url)
        config = load_business_config()
        settings = Settings(_env_file=None, database_url=db_url, redis_url=args.redis_url,  # type: ignore[call-arg]
                            seed_demo=False)
        kv = KeyValueBackends.from_url(args.redis_url, prefix=f"{name}:") if args.redis_url \
            else KeyValueBackends.in_process()
        from handlers.i18n import Translator

        services = Services(settings=settings, config=config, engine=create_engine(db_url, pool_size=args.concurrency),
                            kv=kv, translator=Translator(config))
        try:
            await sync_departments(services.uow, config)
            await seed_demo(services.uow, config)
            clients = await _customers(services, args.customers)
            ctx = services.ctx
            latencies: list[float] = []
            done = 0
            cursor = 0

            async def client_task(stop_at: float, record: bool) -> None:
                nonlocal done, cursor
                while time.perf_counter() < stop_at and cursor < len(clients):
                    index = cursor
                    cursor += 1
                    started = time.perf_counter()
                    result = await handle_inbound(
                        ctx, channel="telegram", text=f"Обращение {index}: помогите, пожалуйста", language="ru",
                        client=clients[index], sender=str(10_000_000 + index), message_key=f"bench:{index}",
                        forced_topic=TOPICS[index % len(TOPICS)])
                    if result.outcome != "ticket_opened":
                        raise AssertionError(f"expected a new ticket, got {result.outcome}")
                    if record:
                        latencies.append(time.perf_counter() - started)
                        done += 1

            # Warm-up (connections, statement caches), then the measured run.
            await asyncio.gather(*(client_task(time.perf_counter() + 1.0, False) for _ in range(args.concurrency)))
            backends_started = _backend_cpu(await _backend_pids(services))
            started, cpu_started, times_started = time.perf_counter(), time.process_time(), os.times()
            await asyncio.gather(*(client_task(started + args.seconds, True) for _ in range(args.concurrency)))
            elapsed, cpu = time.perf_counter() - started, time.process_time() - cpu_started
            user_cpu = os.times().user - times_started.user
            backends_ended = _backend_cpu(await _backend_pids(services))
            server_cpu = (sum(end - backends_started.get(pid, 0.0) for pid, end in backends_ended.items())
                          if backends_ended else None)
            async with services.uow() as uow:
                counts = {model.__tablename__: int(await uow.session.scalar(select(func.count()).select_from(model)))
                          for model in (Ticket, Interaction, TicketEvent, Notification)}
            if counts["tickets"] != cursor or counts["interactions"] != cursor:
                raise AssertionError(f"row counts do not match the operations: {counts} vs {cursor}")
            latencies.sort()
            return {
                "tickets": done, "seconds": round(elapsed, 2), "tickets_per_second": round(done / elapsed, 1),
                "p50_ms": round(statistics.median(latencies) * 1000, 2),
                "p99_ms": round(latencies[int(len(latencies) * 0.99) - 1] * 1000, 2),
                "python_cpu_ms_per_ticket": round(cpu / max(done, 1) * 1000, 3),
                "python_user_cpu_ms_per_ticket": round(user_cpu / max(done, 1) * 1000, 3),
                "server_cpu_ms_per_ticket": None if server_cpu is None else round(server_cpu / max(done, 1) * 1000, 3),
                "concurrency": args.concurrency, "rows": counts, "redis": bool(args.redis_url),
            }
        finally:
            await services.close()
    finally:
        await server_sql(args.database_url, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.tickets", description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--concurrency", type=int, default=20)
    parser.add_argument("--customers", type=int, default=60000)
    parser.add_argument("--database-url", default="postgresql+asyncpg://postgres@127.0.0.1:5432/test",
                        help="a PostgreSQL server where a private database may be created")
    parser.add_argument("--redis-url", default=None, help="Redis for the wake-up pub/sub (default in-process)")
    args = parser.parse_args(argv)
    result = asyncio.run(run(args))
    for key, value in result.items():
        print(f"{key:>20}: {value}")
    target = 1000
    print(f"{'target':>20}: >= {target}/s -> {'OK' if result['tickets_per_second'] >= target else 'BELOW TARGET'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
