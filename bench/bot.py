"""Benchmark: ticket-opening Telegram messages from 5,000 different users through the webhook.

    python -m bench.bot [--users 5000] [--concurrency 50] [--database-url URL] [--redis-url URL]

Three kinds of processes on loopback: the fake Bot API server (tests/fakes/bot_api.py), the bot under test,
and the load generator posting real update JSON with the secret header. Two bots are measured in the same
run, one after the other, against the same fake Bot API:

- echo: a bare aiogram echo bot (Dispatcher + one handler doing `message.answer(text)`, aiogram's own
  SimpleRequestHandler, awaiting the handler before answering the webhook);
- product: this service (`service.http.create_app` + `service.wiring.mount_adapters`) in webhook mode: secret
  check, redelivery check, flood limit, role resolution, FSM, intake (classification, ticket, events, outbox
  alert row) and the reply with the ticket number, the processed-update mark.

Every user is a distinct identified client (linked Telegram id, consent) sending one problem description.
Workers (outbox dispatcher) do not run in the server process, so alerts stay queued and only the bot's own
work is measured. Targets: product throughput >= 50% of echo; product p99 webhook latency < 100 ms at 50
concurrent connections. The embedded database (SQLite) is the default; `--database-url` takes PostgreSQL
(a private database is created and dropped).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing as mp
import os
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

from bench._selfservice import server_sql

TOKEN = "123456789:BENCH-token"
SECRET = "bench-webhook-secret"
PATH = "/telegram/webhook"
FIRST_USER = 500_000_000
PROBLEMS = (
    "Не работает интернет с утра, роутер мигает красным",
    "Нет связи, интернет пропал полностью",
    "Пропал интернет дома, ничего не открывается",
    "Не работает интернет второй день, помогите",
)


# ---------------------------------------------------------------------- helpers


def _free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _update(update_id: int, user_id: int, text: str) -> bytes:
    return json.dumps({"update_id": update_id, "message": {
        "message_id": 10 + update_id % 1000, "date": int(time.time()),
        "from": {"id": user_id, "is_bot": False, "first_name": "Bench", "language_code": "ru"},
        "chat": {"id": user_id, "type": "private", "first_name": "Bench"}, "text": text}},
        ensure_ascii=False).encode()


# ---------------------------------------------------------------------- fake Bot API (child process)


def _fake_api(port: int, stats_port: int, ready: Any) -> None:
    asyncio.run(_run_fake_api(port, stats_port, ready))


async def _run_fake_api(port: int, stats_port: int, ready: Any) -> None:
    from aiohttp import web

    from tests.fakes.bot_api import FakeBotApi

    api = FakeBotApi(token=TOKEN)
    await api.start(port=port)

    async def stats(_request: web.Request) -> web.Response:
        counts: dict[str, int] = {}
        for call in api.calls:
            counts[call.method] = counts.get(call.method, 0) + 1
        return web.json_response(counts)

    async def reset(_request: web.Request) -> web.Response:
        api.clear()
        return web.json_response({"ok": True})

    app = web.Application()
    app.router.add_get("/stats", stats)
    app.router.add_post("/reset", reset)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", stats_port).start()
    ready.put("ready")
    await asyncio.Event().wait()


# ---------------------------------------------------------------------- bots under test (child processes)


def _echo_bot(port: int, api_url: str, ready: Any) -> None:
    asyncio.run(_run_echo_bot(port, api_url, ready))


async def _run_echo_bot(port: int, api_url: str, ready: Any) -> None:
    from aiogram import Bot, Dispatcher
    from aiogram.client.session.aiohttp import AiohttpSession
    from aiogram.client.telegram import TelegramAPIServer
    from aiogram.types import Message
    from aiogram.webhook.aiohttp_server import SimpleRequestHandler
    from aiohttp import web

    bot = Bot(TOKEN, session=AiohttpSession(api=TelegramAPIServer.from_base(api_url)))
    dp = Dispatcher()

    @dp.message()
    async def echo(message: Message) -> None:
        await message.answer(message.text or "")

    app = web.Application()
    SimpleRequestHandler(dp, bot, handle_in_background=False, secret_token=SECRET).register(app, path=PATH)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    ready.put("ready")
    await asyncio.Event().wait()


def _product_bot(port: int, env: dict[str, str], ready: Any) -> None:
    os.environ.update(env)
    asyncio.run(_run_product_bot(port, ready))


async def _run_product_bot(port: int, ready: Any) -> None:
    import logging

    from aiohttp import web

    from config import load_business_config, load_settings
    from service.container import build_services
    from service.http import create_app
    from service.wiring import mount_adapters, warm_up

    logging.basicConfig(level=logging.WARNING)
    settings = load_settings()
    services = await build_services(settings, load_business_config())
    app = create_app(services)
    await mount_adapters(app, services)
    await warm_up(services)  # what the service does in the background right after start
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    ready.put(f"ready classifier={type(services.ctx.classifier).__name__}")
    await asyncio.Event().wait()


# ---------------------------------------------------------------------- load generator (child process)


def _process_cpu_seconds(pid: int | None) -> float | None:
    """User + system CPU seconds used so far by process `pid` (all its threads), from /proc; None elsewhere.

    The machine's cores are shared with the generator, the fake Bot API and the database, so throughput alone
    is noisy: the bot's own CPU per update is the figure that says what the bot's code costs."""
    if pid is None:
        return None
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    except OSError:
        return None
    # After the command name: state is field 3, utime and stime are fields 14 and 15 (proc(5)).
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _generator(url: str, bodies: list[bytes], warmup: int, concurrency: int, server_pid: int | None,
               out: Any) -> None:
    asyncio.run(_generate(url, bodies, warmup, concurrency, server_pid, out))


async def _generate(url: str, bodies: list[bytes], warmup: int, concurrency: int, server_pid: int | None,
                    out: Any) -> None:
    import aiohttp

    headers = {"X-Telegram-Bot-Api-Secret-Token": SECRET, "Content-Type": "application/json"}
    latencies: list[float] = []
    statuses: dict[int, int] = {}
    cursor = 0
    timeout = aiohttp.ClientTimeout(total=60)
    connector = aiohttp.TCPConnector(limit=concurrency)
    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:

        async def post(body: bytes) -> tuple[int, float]:
            started = time.perf_counter()
            try:
                async with session.post(url, data=body, headers=headers) as resp:
                    await resp.read()
                    status = resp.status
            except (aiohttp.ClientError, TimeoutError):
                status = 0
            return status, time.perf_counter() - started

        async def worker(items: list[bytes], record: bool) -> None:
            nonlocal cursor
            while cursor < len(items):
                body = items[cursor]
                cursor += 1
                status, elapsed = await post(body)
                if record:
                    statuses[status] = statuses.get(status, 0) + 1
                    if status == 200:
                        latencies.append(elapsed)

        await asyncio.gather(*(worker(bodies[:warmup], False) for _ in range(concurrency)))
        cursor = 0
        measured = bodies[warmup:]
        cpu_started = _process_cpu_seconds(server_pid)
        started = time.perf_counter()
        await asyncio.gather(*(worker(measured, True) for _ in range(concurrency)))
        wall = time.perf_counter() - started
        cpu_ended = _process_cpu_seconds(server_pid)
    server_cpu = None if cpu_started is None or cpu_ended is None else cpu_ended - cpu_started
    out.send({"latencies": latencies, "statuses": statuses, "seconds": wall, "sent": len(measured),
              "server_cpu_seconds": server_cpu})
    out.close()


def measure(url: str, bodies: list[bytes], warmup: int, concurrency: int, limit_seconds: float,
            server_pid: int | None = None) -> dict[str, Any]:
    ctx = mp.get_context("spawn")
    parent, child = ctx.Pipe(duplex=False)
    proc = ctx.Process(target=_generator, args=(url, bodies, warmup, concurrency, server_pid, child), daemon=True)
    proc.start()
    child.close()
    if not parent.poll(limit_seconds):
        proc.kill()
        raise RuntimeError(f"load generator did not finish within {limit_seconds:.0f}s")
    result = parent.recv()
    proc.join(10)
    lat = sorted(result["latencies"])
    if not lat:
        raise RuntimeError(f"no successful requests: {result['statuses']}")

    def pct(p: float) -> float:
        return lat[min(len(lat) - 1, int(p * len(lat)))] * 1000

    return {"sent": result["sent"], "ok": len(lat), "statuses": result["statuses"],
            "seconds": result["seconds"], "rps": len(lat) / result["seconds"], "p50_ms": pct(0.50),
            "p90_ms": pct(0.90), "p99_ms": pct(0.99), "max_ms": lat[-1] * 1000,
            "mean_ms": statistics.fmean(lat) * 1000,
            "server_cpu_ms_per_update": None if result["server_cpu_seconds"] is None
            else round(result["server_cpu_seconds"] / len(lat) * 1000, 3)}


# ---------------------------------------------------------------------- orchestration


def _start(target: Any, args: tuple[Any, ...], what: str, timeout: float = 180.0) -> tuple[Any, str]:
    ctx = mp.get_context("spawn")
    ready = ctx.Queue()
    proc = ctx.Process(target=target, args=(*args, ready), daemon=True)
    proc.start()
    try:
        message = ready.get(timeout=timeout)
    except Exception:
        proc.kill()
        raise RuntimeError(f"{what} did not start within {timeout:.0f}s") from None
    return proc, str(message)


def _stop(proc: Any) -> None:
    proc.terminate()
    proc.join(10)
    if proc.is_alive():
        proc.kill()


async def _http(method: str, url: str) -> Any:
    import aiohttp

    async with aiohttp.ClientSession() as session, session.request(method, url) as resp:
        return await resp.json()


async def _prepare_database(database_url: str, users: int) -> None:
    """Migrate, sync departments and demo staff, and create one linked, consenting client per user."""
    from sqlalchemy import insert

    from config import Settings, load_business_config
    from service.container import build_services
    from storage.models import Customer
    from storage.seed import seed_demo

    settings = Settings(_env_file=None, database_url=database_url, seed_demo=False)  # type: ignore[call-arg]
    config = load_business_config()
    services = await build_services(settings, config)
    try:
        await seed_demo(services.uow, config)  # departments' staff, so tickets are routed as in production
        now = services.clock()
        async with services.uow() as uow:
            rows = [{"kind": "person", "name": f"Клиент {i}", "language": "ru", "segment": "mass",
                     "telegram_user_id": FIRST_USER + i, "consent_at": now} for i in range(users)]
            for start in range(0, len(rows), 1000):
                await uow.session.execute(insert(Customer), rows[start:start + 1000])
            await uow.commit()
    finally:
        await services.close()


async def _count_rows(database_url: str) -> dict[str, int]:
    from sqlalchemy import func, select

    from storage.db import create_engine
    from storage.models import Interaction, Notification, ProcessedUpdate, Ticket

    engine = create_engine(database_url)
    try:
        async with engine.connect() as conn:
            return {name: int(await conn.scalar(select(func.count()).select_from(model)) or 0)
                    for name, model in (("tickets", Ticket), ("interactions", Interaction),
                                        ("outbox_rows", Notification), ("processed_updates", ProcessedUpdate))}
    finally:
        await engine.dispose()


def run(args: argparse.Namespace) -> dict[str, Any]:
    from sqlalchemy.engine import make_url

    workdir = Path(tempfile.mkdtemp(prefix="bench-bot-"))
    private_db: str | None = None
    if args.database_url:
        server = make_url(args.database_url)
        private_db = f"fo_bench_bot_{uuid.uuid4().hex[:8]}"
        asyncio.run(server_sql(args.database_url, f'CREATE DATABASE "{private_db}"'))
        database_url = server.set(database=private_db).render_as_string(hide_password=False)
    else:
        database_url = f"sqlite+aiosqlite:///{workdir / 'bench.db'}"
    warmup = min(200, max(20, args.users // 25))
    try:
        asyncio.run(_prepare_database(database_url, args.users + warmup))
        api_port, stats_port = _free_port(), _free_port()
        api, _ = _start(_fake_api, (api_port, stats_port), "fake Bot API")
        api_url = f"http://127.0.0.1:{api_port}"
        results: dict[str, Any] = {"users": args.users, "concurrency": args.concurrency,
                                   "database": "postgresql" if private_db else "sqlite",
                                   "redis": bool(args.redis_url), "cpus": os.cpu_count()}
        try:
            # Warm-up users come after the measured ones, so every measured user is new to the bot.
            ids = list(range(args.users, args.users + warmup)) + list(range(args.users))
            bodies = [_update(1_000_000 + n, FIRST_USER + i, PROBLEMS[i % len(PROBLEMS)])
                      for n, i in enumerate(ids)]
            for mode in ("echo", "product"):
                port = _free_port()
                if mode == "echo":
                    server, banner = _start(_echo_bot, (port, api_url), "echo bot")
                else:
                    env = {"DATABASE_URL": database_url, "BOT_TOKEN": TOKEN, "TELEGRAM_API_SERVER": api_url,
                           "PUBLIC_BASE_URL": "https://bot.bench.example", "TELEGRAM_WEBHOOK_SECRET": SECRET,
                           "DATA_DIR": str(workdir / "data"), "SEED_DEMO": "false", "LOG_LEVEL": "WARNING",
                           "REDIS_URL": args.redis_url or "", "REDIS_PREFIX": f"bench{uuid.uuid4().hex[:6]}:"}
                    server, banner = _start(_product_bot, (port, env), "product bot")
                try:
                    asyncio.run(_http("POST", f"http://127.0.0.1:{stats_port}/reset"))
                    figures = measure(f"http://127.0.0.1:{port}{PATH}", bodies, warmup, args.concurrency,
                                      args.max_seconds, server.pid)
                    figures["bot_api_calls"] = asyncio.run(_http("GET", f"http://127.0.0.1:{stats_port}/stats"))
                    figures["server"] = banner
                    results[mode] = figures
                finally:
                    _stop(server)
            results["rows"] = asyncio.run(_count_rows(database_url))
        finally:
            _stop(api)
    finally:
        if private_db is not None:
            asyncio.run(server_sql(args.database_url, f'DROP DATABASE IF EXISTS "{private_db}" WITH (FORCE)'))
    echo, product = results["echo"], results["product"]
    results["throughput_ratio"] = product["rps"] / echo["rps"]
    results["targets_met"] = {"throughput >= 50% of echo": results["throughput_ratio"] >= 0.5,
                              "p99 < 100 ms": product["p99_ms"] < 100}
    return results


def _print(results: dict[str, Any]) -> None:
    print(f"bench.bot: {results['users']} users, {results['concurrency']} concurrent connections, "
          f"{results['database']}{' + redis' if results['redis'] else ''}, {results['cpus']} CPUs")
    for mode in ("echo", "product"):
        r = results[mode]
        print(f"  {mode:8} {r['rps']:8.1f} updates/s   p50 {r['p50_ms']:6.1f} ms   p90 {r['p90_ms']:6.1f} ms   "
              f"p99 {r['p99_ms']:6.1f} ms   max {r['max_ms']:6.1f} ms   ok {r['ok']}/{r['sent']}   "
              f"sendMessage {r['bot_api_calls'].get('sendMessage', 0)}")
        if r["server_cpu_ms_per_update"] is not None:
            print(f"  {'':8} bot process CPU {r['server_cpu_ms_per_update']:.2f} ms per update")
    print(f"  product server: {results['product']['server']}")
    print(f"  database after the run: {results['rows']}")
    print(f"  throughput ratio product/echo: {results['throughput_ratio']:.2f}")
    for target, met in results["targets_met"].items():
        print(f"  {'PASS' if met else 'FAIL'}  {target}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.bot", description=__doc__.split("\n\n")[0])
    parser.add_argument("--users", type=int, default=5000)
    parser.add_argument("--concurrency", type=int, default=50)
    parser.add_argument("--database-url", help="PostgreSQL server URL (a private database is created)")
    parser.add_argument("--redis-url")
    parser.add_argument("--max-seconds", type=float, default=600, help="give up on a run after this long")
    parser.add_argument("--json", action="store_true", help="print the figures as JSON")
    args = parser.parse_args(argv)
    results = run(args)
    if args.json:
        print(json.dumps(results, indent=2, default=str))
    else:
        _print(results)
    return 0 if all(results["targets_met"].values()) else 1


if __name__ == "__main__":
    sys.exit(main())
