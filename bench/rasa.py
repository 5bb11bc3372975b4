"""Benchmark: Rasa action calls through POST /webhook, on PostgreSQL + Redis.

    python -m bench.rasa [--seconds 10] [--concurrency 20] [--database-url URL] [--redis-url URL]

Each request is a whole action call as Rasa 3 sends it (tracker with the conversation's events, the
domain, deflate-compressed): `action_check_balance` for a known caller on Rasa's Twilio voice channel
(identification by caller id + billing look-up), and `action_open_ticket` with a topic intent (identification
+ a routed ticket with its interaction, events and staff alert in one transaction). Measured next to a bare
aiohttp handler that inflates and parses the same body and returns a fixed response, in the same run, on
the same loopback; the load generator runs in a separate process. A private PostgreSQL database is created
for the run and dropped afterwards; Redis keys get a private prefix and are deleted.
The issue sets no speed target for the action server; these figures say what one process sustains.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing as mp
import os
import statistics
import sys
import time
import uuid
import zlib
from typing import Any

from bench._selfservice import server_sql

KNOWN_PHONES = (
    "+74951112233",
    "+74952223344",
    "+79035556677",
    "+74957778899",
    "+79161234567",
    "+79262345678",
    "+79033456789",
    "+79154567890",
    "+79675678901",
    "+79168901234",
    "+79031230987",
    "+79161230001",
    "+79161230002",
    "+79251112200",
)
SCENARIOS = {
    "balance": ("action_check_balance", "какой у меня баланс", "balance"),
    "ticket": ("action_open_ticket", "интернет очень медленный по вечерам", "slow_connection"),
}


# ---------------------------------------------------------------------- load generator (child process)


def _bodies(action: str, text: str, intent: str, count: int) -> list[bytes]:
    from tests.fakes.rasa_payloads import action_call

    # Bodies are built and compressed before the clock starts: the generator should measure, not build.
    return [
        zlib.compress(
            json.dumps(
                action_call(
                    action,
                    text,
                    intent=intent,
                    sender_id=KNOWN_PHONES[i % len(KNOWN_PHONES)],
                    input_channel="twilio_voice",
                    message_id=uuid.uuid4().hex,
                )
            ).encode()
        )
        for i in range(count)
    ]


def _generator(url: str, scenario: str, seconds: float, concurrency: int, out: Any) -> None:
    asyncio.run(_generate(url, scenario, seconds, concurrency, out))


async def _generate(url: str, scenario: str, seconds: float, concurrency: int, out: Any) -> None:
    import aiohttp

    action, text, intent = SCENARIOS[scenario]
    # Enough for the warm-up second too, at the fastest rate seen (the bare handler): running out during the
    # warm-up would leave nothing to measure.
    bodies = _bodies(action, text, intent, int((seconds + 1.0) * 6000) + concurrency * 4)
    headers = {"Content-Type": "application/json", "Content-Encoding": "deflate"}
    latencies: list[float] = []
    errors = 0
    warmup_until = time.perf_counter() + 1.0
    stop_at = warmup_until + seconds
    cursor = 0
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=concurrency)) as session:

        async def caller() -> None:
            nonlocal cursor, errors
            while time.perf_counter() < stop_at and cursor < len(bodies):
                body = bodies[cursor]
                cursor += 1
                started = time.perf_counter()
                try:
                    async with session.post(url + "/webhook", data=body, headers=headers) as resp:
                        payload = await resp.json()
                        ok = resp.status == 200 and bool(payload.get("responses"))
                except (aiohttp.ClientError, ValueError):
                    ok = False
                if started >= warmup_until:
                    if ok:
                        latencies.append(time.perf_counter() - started)
                    else:
                        errors += 1

        await asyncio.gather(*(caller() for _ in range(concurrency)))
    out.send({"latencies": latencies, "errors": errors, "seconds": seconds})
    out.close()


def measure(url: str, scenario: str, seconds: float, concurrency: int) -> dict[str, float]:
    ctx = mp.get_context("spawn")
    parent, child = ctx.Pipe(duplex=False)
    proc = ctx.Process(target=_generator, args=(url, scenario, seconds, concurrency, child), daemon=True)
    proc.start()
    child.close()
    if not parent.poll(seconds + 180):
        proc.kill()
        raise RuntimeError("load generator did not finish")
    result = parent.recv()
    proc.join(10)
    lat = sorted(result["latencies"])
    if not lat:
        raise RuntimeError(f"no successful requests ({result['errors']} errors)")

    def pct(p: float) -> float:
        return lat[min(len(lat) - 1, int(p * len(lat)))] * 1000

    return {
        "requests": len(lat),
        "errors": result["errors"],
        "rps": len(lat) / result["seconds"],
        "p50_ms": pct(0.50),
        "p90_ms": pct(0.90),
        "p99_ms": pct(0.99),
        "max_ms": lat[-1] * 1000,
        "mean_ms": statistics.fmean(lat) * 1000,
    }


# ---------------------------------------------------------------------- servers (this process)


async def _bare(request: Any) -> Any:
    """The floor: read, inflate (aiohttp does) and parse the same body, answer a fixed response."""
    from aiohttp import web

    call = json.loads(await request.read())
    return web.json_response({"events": [], "responses": [{"text": call["next_action"]}]})


async def run(args: argparse.Namespace) -> dict[str, Any]:
    from aiohttp import web
    from sqlalchemy import func, select
    from sqlalchemy.engine import make_url

    from actions.server import setup
    from config import Settings, load_business_config
    from service.container import build_services
    from service.http import create_app
    from service.wiring import connect_ports
    from storage.kv import KeyValueBackends
    from storage.migrate import upgrade
    from storage.models import Ticket
    from storage.seed import seed_demo

    name = f"fo_bench_rasa_{os.getpid()}_{uuid.uuid4().hex[:6]}"
    await server_sql(args.database_url, f'CREATE DATABASE "{name}"')
    db_url = make_url(args.database_url).set(database=name).render_as_string(hide_password=False)
    prefix = f"fobench:{uuid.uuid4().hex[:8]}:"
    runners: list[web.AppRunner] = []
    services = None
    try:
        await upgrade(db_url)
        settings = Settings(
            _env_file=None,
            database_url=db_url,
            redis_url=args.redis_url,  # type: ignore[call-arg]
            seed_demo=False,
        )
        config = load_business_config()
        services = await build_services(settings, config)
        await services.kv.close()
        services.kv = KeyValueBackends.from_url(args.redis_url, prefix=prefix)
        services.ctx.kv = services.kv
        await seed_demo(services.uow, config)
        connect_ports(services)
        app = create_app(services)
        setup(app, services.ctx, settings)
        bare = web.Application(client_max_size=16 * 1024 * 1024)
        bare.router.add_post("/webhook", _bare)
        ports = []
        for application in (bare, app):
            runner = web.AppRunner(application, access_log=None)
            await runner.setup()
            site = web.TCPSite(runner, "127.0.0.1", 0)
            await site.start()
            runners.append(runner)
            ports.append(site._server.sockets[0].getsockname()[1])  # type: ignore[union-attr]
        loop = asyncio.get_running_loop()
        results = {}
        for label, port, scenario in (
            ("bare aiohttp, parse + fixed answer", ports[0], "balance"),
            ("action_check_balance", ports[1], "balance"),
            ("action_open_ticket", ports[1], "ticket"),
        ):
            results[label] = await loop.run_in_executor(
                None, measure, f"http://127.0.0.1:{port}", scenario, args.seconds, args.concurrency
            )
        async with services.uow() as uow:
            tickets = await uow.session.scalar(select(func.count()).select_from(Ticket))
        return {
            "results": results,
            "tickets_opened": tickets,
            "concurrency": args.concurrency,
            "seconds": args.seconds,
            "cpus": os.cpu_count(),
        }
    finally:
        for runner in runners:
            await runner.cleanup()
        if services is not None:
            redis = services.kv.redis
            if redis is not None:
                keys = [k async for k in redis.scan_iter(match=f"{prefix}*", count=1000)]
                for i in range(0, len(keys), 1000):
                    await redis.delete(*keys[i : i + 1000])
            await services.close()
        await server_sql(args.database_url, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.rasa", description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--seconds", type=float, default=10.0, help="measured seconds per target (default 10)"
    )
    parser.add_argument("--concurrency", type=int, default=20, help="concurrent calls (default 20)")
    parser.add_argument(
        "--database-url",
        default=os.environ.get("BENCH_DATABASE_URL", "postgresql+asyncpg://postgres@127.0.0.1:5432/test"),
        help="a PostgreSQL server; a private database is created on it for the run",
    )
    parser.add_argument("--redis-url", default=os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/15"))
    parser.add_argument("--json", action="store_true", help="print the results as JSON")
    args = parser.parse_args(argv)
    if not 1 <= args.seconds <= 120 or not 1 <= args.concurrency <= 1000:
        parser.error("--seconds must be 1..120 and --concurrency 1..1000")
    import logging

    logging.basicConfig(level=logging.ERROR)
    report = asyncio.run(run(args))
    if args.json:
        print(json.dumps(report, indent=2))
        return 0
    print(
        f"Rasa action calls, {args.concurrency} concurrent, {args.seconds:.0f} s per target, "
        f"{report['cpus']} CPUs, deflated bodies with the domain, load generator in a separate process"
    )
    print(
        f"{'target':36} {'calls/s':>9} {'p50 ms':>8} {'p90 ms':>8} {'p99 ms':>8} {'max ms':>8} {'errors':>7}"
    )
    for label, r in report["results"].items():
        print(
            f"{label:36} {r['rps']:9.0f} {r['p50_ms']:8.2f} {r['p90_ms']:8.2f} {r['p99_ms']:8.2f} "
            f"{r['max_ms']:8.1f} {r['errors']:7d}"
        )
    print(f"tickets opened: {report['tickets_opened']}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
