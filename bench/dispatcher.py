"""Benchmark: the outbox dispatcher's sustained rate against a Bot API that enforces Telegram's limits.

    python -m bench.dispatcher [--messages 600] [--dispatchers 2] [--database-url URL] [--redis-url URL]

Fills the outbox with one message for each of `--messages` different private chats, then runs
`--dispatchers` dispatcher instances side by side (each with its own database engine, like separate
processes; they share the key-value store, i.e. Redis when given) against the fake Bot API from
tests/fakes with `enforce_limits = True` (30 messages/s overall, 1/s per chat, 20/min per group; a send
over a limit is answered 429). Reports messages/s over the run and how many sends got a 429.
Target: 29–30 messages/s with no 429. Default storage: a temporary SQLite file and the in-process twins.
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing as mp
import sys
import tempfile
import time
import uuid
from typing import Any


def _serve_fake_api(conn: Any) -> None:
    """The fake Bot API in its own process, like Telegram: its clock and event loop are not ours."""
    asyncio.run(_fake_api_main(conn))


async def _fake_api_main(conn: Any) -> None:
    from tests.fakes.bot_api import FakeBotApi

    api = FakeBotApi()
    await api.start()
    api.enforce_limits = True
    conn.send((api.token, api.base_url))
    loop = asyncio.get_running_loop()
    await loop.run_in_executor(None, conn.recv)  # "stop"
    conn.send(([(c.method, c.data.get("chat_id"), c.at) for c in api.calls], [c.status for c in api.rejected]))
    await api.stop()


async def run(args: argparse.Namespace) -> dict[str, Any]:
    from sqlalchemy import func, select

    from bot.sender import AiogramSender, make_bot
    from config import Settings, load_business_config
    from handlers.i18n import Translator
    from handlers.notifications.dispatcher import NotificationDispatcher
    from service.container import Services
    from storage.db import create_engine
    from storage.kv import KeyValueBackends
    from storage.migrate import upgrade
    from storage.models import Notification

    database_url = args.database_url or f"sqlite+aiosqlite:///{tempfile.mkdtemp()}/bench.db"
    if not database_url.startswith("sqlite"):
        raise SystemExit("use a SQLite URL or omit --database-url (PostgreSQL: see bench.tickets for setup)")
    await upgrade(database_url)
    config = load_business_config()
    settings = Settings(_env_file=None, database_url=database_url, seed_demo=False)  # type: ignore[call-arg]
    prefix = f"fo_bench_disp_{uuid.uuid4().hex[:6]}:"
    kv = KeyValueBackends.from_url(args.redis_url, prefix=prefix) if args.redis_url else KeyValueBackends.in_process()
    parent, child = mp.Pipe()
    server = mp.get_context("spawn").Process(target=_serve_fake_api, args=(child,), daemon=True)
    server.start()
    token, base_url = parent.recv()
    bot = make_bot(token, base_url)
    instances = [Services(settings=settings, config=config, engine=create_engine(database_url), kv=kv,
                          translator=Translator(config)) for _ in range(args.dispatchers)]
    try:
        async with instances[0].uow() as uow:
            for chat in range(1, args.messages + 1):
                uow.outbox.enqueue(kind="bench", recipient_kind="chat", chat_id=100000 + chat,
                                   payload={"text": f"Уведомление <b>{chat}</b>"})
            await uow.commit()
        for services in instances:
            services.ctx.sender = AiogramSender(bot)
        stop = asyncio.Event()
        dispatchers = [NotificationDispatcher(s.ctx, poll_interval=0.2) for s in instances]
        started = time.perf_counter()
        tasks = [asyncio.create_task(d.run(stop)) for d in dispatchers]
        while time.perf_counter() - started < args.messages:
            async with instances[0].uow() as uow:
                pending = await uow.outbox.pending_count()
            if not pending:
                break
            await asyncio.sleep(0.2)
        elapsed = time.perf_counter() - started
        stop.set()
        await asyncio.gather(*tasks)
        parent.send("stop")
        calls, rejected = parent.recv()
        sent_at = sorted(at for method, _chat, at in calls if method == "sendMessage")
        # The steady rate: from the first to the last accepted send.
        steady = (len(sent_at) - 1) / (sent_at[-1] - sent_at[0]) if len(sent_at) > 1 else 0.0
        worst_second = max((sum(1 for t in sent_at if s <= t < s + 1.0) for s in sent_at), default=0)
        async with instances[0].uow() as uow:
            statuses = dict((await uow.session.execute(
                select(Notification.status, func.count()).group_by(Notification.status))).all())
        chats = [chat for method, chat, _at in calls if method == "sendMessage"]
        return {
            "messages": len(sent_at), "seconds": round(elapsed, 2), "messages_per_second": round(steady, 2),
            "max_in_any_second": worst_second, "http_429": sum(1 for status in rejected if status == 429),
            "duplicates": len(chats) - len(set(chats)), "dispatchers": args.dispatchers,
            "redis": bool(args.redis_url), "outbox": statuses,
        }
    finally:
        await bot.session.close()
        server.join(5)
        if server.is_alive():
            server.kill()
        for services in instances:
            await services.engine.dispose()
        if kv.redis is not None:
            keys = [k async for k in kv.redis.scan_iter(match=f"{prefix}*")]
            if keys:
                await kv.redis.delete(*keys)
        await kv.close()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.dispatcher", description=__doc__.split("\n\n")[0])
    parser.add_argument("--messages", type=int, default=600)
    parser.add_argument("--dispatchers", type=int, default=2)
    parser.add_argument("--database-url", default=None)
    parser.add_argument("--redis-url", default=None)
    args = parser.parse_args(argv)
    result = asyncio.run(run(args))
    for key, value in result.items():
        print(f"{key:>20}: {value}")
    ok = 29 <= result["messages_per_second"] <= 30.5 and result["http_429"] == 0 and result["duplicates"] == 0
    print(f"{'target':>20}: 29-30 msg/s, no 429, no duplicates -> {'OK' if ok else 'NOT MET'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
