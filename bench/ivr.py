"""Benchmark: the first step of a call for a known caller, on PostgreSQL + Redis.

    python -m bench.ivr [--seconds 10] [--concurrency 100] [--low-concurrency 10] [--rate 1000]
                        [--database-url URL] [--redis-url URL] [--json]

The first step is the whole entry webhook as Twilio sends it: signature check, per-call state in Redis,
identification by caller id, the call record (Call + Interaction rows), and the greeting-and-menu TwiML.
Each request is a new call (fresh CallSid) from one of the demo customers' phones.

Measured next to a bare aiohttp handler that returns a fixed TwiML document, in the same run, on the same
loopback, with the same load generator — which runs in a separate process so it does not steal the
server's event loop. A private PostgreSQL database is created for the run and dropped afterwards; Redis
keys get a private prefix and are deleted. Targets: >= 2,000 steps/s, p99 < 20 ms at 100 concurrent calls.

With 100 calls always in flight (a closed loop) latency is mostly queueing: 100 / throughput on average,
and even the bare handler's p99 is tens of milliseconds there. So two more rows show what a caller waits
when the line is not saturated: 10 concurrent calls, and an open loop in which calls arrive at a fixed rate
whatever the answers (latency counted from each call's scheduled arrival, so a stall is not hidden).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing as mp
import os
import secrets
import statistics
import sys
import time
import uuid
from typing import Any

from bench._selfservice import server_sql

TOKEN = "bench-auth-token"
PUBLIC_BASE = "https://ivr.bench.example"
FIXED_TWIML = ('<?xml version="1.0" encoding="UTF-8"?><Response><Gather input="dtmf speech" '
               'action="/ivr/twilio/gather?s=1" method="POST" timeout="6" language="ru-RU" '
               'actionOnEmptyResult="true"><Say voice="Polly.Tatyana" language="ru-RU">Здравствуйте! '
               'Баланс — нажмите 1.</Say></Gather></Response>')
IVR_LABEL = "IVR first step (PostgreSQL + Redis)"
KNOWN_PHONES = ("+74951112233", "+74952223344", "+79035556677", "+74957778899", "+74953334455",
                "+74956667788", "+79161234567", "+79262345678", "+79033456789", "+79154567890",
                "+79675678901", "+79856789012", "+79097890123", "+79168901234", "+79031230987",
                "+79161230001", "+79161230002", "+79251112200")


# ---------------------------------------------------------------------- load generator (child process)


def _generator(url: str, path: str, seconds: float, concurrency: int, sign: bool, rate: float, out: Any) -> None:
    asyncio.run(_generate(url, path, seconds, concurrency, sign, rate, out))


async def _generate(url: str, path: str, seconds: float, concurrency: int, sign: bool, rate: float,
                    out: Any) -> None:
    """Closed loop (`rate` 0): `concurrency` callers, each sending its next request when the last is answered.
    Open loop: requests start at `rate` per second whatever the answers, at most `concurrency` in flight on
    the wire (the others wait their turn, and that wait counts in their latency)."""
    import aiohttp
    from twilio.request_validator import RequestValidator

    validator = RequestValidator(TOKEN)
    # Forms and signatures are prepared before the clock starts: the generator should measure, not hash.
    prepared: list[tuple[dict[str, str], dict[str, str]]] = []
    for i in range(int((seconds + 1) * (rate or 6000)) + concurrency * 4):
        form = {"CallSid": "CA" + secrets.token_hex(16), "AccountSid": "AC" + "0" * 32,
                "From": KNOWN_PHONES[i % len(KNOWN_PHONES)], "To": "+74950000000", "CallStatus": "ringing",
                "Direction": "inbound", "ApiVersion": "2010-04-01"}
        headers = {"X-Twilio-Signature": validator.compute_signature(PUBLIC_BASE + path, form)} if sign else {}
        prepared.append((form, headers))
    latencies: list[float] = []
    errors = 0
    answered = 0  # every answer, warm-up included: what the server's CPU time is divided by
    warmup_until = time.perf_counter() + 1.0
    stop_at = warmup_until + seconds
    cursor = 0
    connector = aiohttp.TCPConnector(limit=concurrency)
    async with aiohttp.ClientSession(connector=connector) as session:

        async def call(form: dict[str, str], headers: dict[str, str], started: float) -> None:
            nonlocal errors, answered
            try:
                async with session.post(url + path, data=form, headers=headers) as resp:
                    body = await resp.read()
                    ok = resp.status == 200 and b"<Response>" in body
            except aiohttp.ClientError:
                ok = False
            answered += 1
            if started >= warmup_until:
                if ok:
                    latencies.append(time.perf_counter() - started)
                else:
                    errors += 1

        async def arrivals() -> None:
            calls: set[asyncio.Task[None]] = set()
            first = time.perf_counter()
            for i, (form, headers) in enumerate(prepared):
                due = first + i / rate
                if due >= stop_at:
                    break
                delay = due - time.perf_counter()
                if delay > 0:
                    await asyncio.sleep(delay)
                task = asyncio.create_task(call(form, headers, due))
                calls.add(task)
                task.add_done_callback(calls.discard)
            await asyncio.gather(*calls)

        async def caller() -> None:
            nonlocal cursor
            while True:
                now = time.perf_counter()
                if now >= stop_at or cursor >= len(prepared):
                    return
                form, headers = prepared[cursor]
                cursor += 1
                await call(form, headers, time.perf_counter())

        if rate:
            await arrivals()
        else:
            await asyncio.gather(*(caller() for _ in range(concurrency)))
    out.send({"latencies": latencies, "errors": errors, "seconds": seconds, "answered": answered})
    out.close()


def measure(url: str, path: str, seconds: float, concurrency: int, sign: bool, rate: float = 0.0
            ) -> dict[str, float]:
    ctx = mp.get_context("spawn")
    parent, child = ctx.Pipe(duplex=False)
    proc = ctx.Process(target=_generator, args=(url, path, seconds, concurrency, sign, rate, child), daemon=True)
    proc.start()
    child.close()
    if not parent.poll(seconds + 120):
        proc.kill()
        raise RuntimeError("load generator did not finish")
    result = parent.recv()
    proc.join(10)
    lat = sorted(result["latencies"])
    if not lat:
        raise RuntimeError(f"no successful requests ({result['errors']} errors)")

    def pct(p: float) -> float:
        return lat[min(len(lat) - 1, int(p * len(lat)))] * 1000

    return {"requests": len(lat), "errors": result["errors"], "rps": len(lat) / result["seconds"],
            "p50_ms": pct(0.50), "p90_ms": pct(0.90), "p99_ms": pct(0.99), "max_ms": lat[-1] * 1000,
            "mean_ms": statistics.fmean(lat) * 1000, "answered": result["answered"]}


# ---------------------------------------------------------------------- servers (this process)


async def run(args: argparse.Namespace) -> dict[str, Any]:
    from aiohttp import web
    from pydantic import SecretStr
    from sqlalchemy.engine import make_url

    from config import Settings, load_business_config
    from ivr.routes import setup
    from service.container import build_services
    from service.http import create_app
    from service.wiring import connect_ports, exempt_long_lived_objects_from_gc
    from storage.kv import KeyValueBackends
    from storage.migrate import upgrade
    from storage.seed import seed_demo

    server = make_url(args.database_url)
    name = f"fo_bench_ivr_{os.getpid()}_{uuid.uuid4().hex[:6]}"
    await server_sql(args.database_url, f'CREATE DATABASE "{name}"')
    db_url = server.set(database=name).render_as_string(hide_password=False)
    prefix = f"fobench:{uuid.uuid4().hex[:8]}:"
    runners: list[web.AppRunner] = []
    services = None
    try:
        await upgrade(db_url)
        settings = Settings(_env_file=None, database_url=db_url, redis_url=args.redis_url,  # type: ignore[call-arg]
                            twilio_auth_token=SecretStr(TOKEN), public_base_url=PUBLIC_BASE, seed_demo=False)
        config = load_business_config()
        services = await build_services(settings, config)
        await services.kv.close()
        services.kv = KeyValueBackends.from_url(args.redis_url, prefix=prefix)
        services.ctx.kv = services.kv
        await seed_demo(services.uow, config)
        connect_ports(services)

        app = create_app(services)
        setup(app, services.ctx, settings)
        # As `serve` does once start-up is over (service/wiring.py): the long-lived heap is kept out of the
        # garbage collector's passes.
        exempt_long_lived_objects_from_gc()

        async def fixed(_request: web.Request) -> web.Response:
            return web.Response(text=FIXED_TWIML, content_type="application/xml")

        bare = web.Application()
        bare.router.add_post("/ivr/twilio/voice", fixed)

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
        loads = [("bare aiohttp, fixed TwiML", ports[0], False, args.concurrency, 0.0),
                 (IVR_LABEL, ports[1], True, args.concurrency, 0.0)]
        if args.low_concurrency:
            loads.append((f"IVR first step, {args.low_concurrency} concurrent calls", ports[1], True,
                          args.low_concurrency, 0.0))
        if args.rate:
            # Up to 1,000 requests on the wire: an open loop must not be throttled by the generator itself.
            loads.append((f"IVR first step, open loop at {args.rate:,.0f} calls/s", ports[1], True, 1000, args.rate))
        for label, port, sign, concurrency, rate in loads:
            cpu_before = time.process_time()
            results[label] = await loop.run_in_executor(
                None, measure, f"http://127.0.0.1:{port}", "/ivr/twilio/voice", args.seconds, concurrency,
                sign, rate)
            # CPU this server process spent per answered request: the figure that decides capacity on an idle
            # core, whatever else the machine is doing. Divided by every answer, those of the warm-up second
            # included, since its CPU time is in the sum too.
            served = results[label].pop("answered")
            results[label]["server_cpu_ms"] = (time.process_time() - cpu_before) * 1000 / max(1, served)
        async with services.uow() as uow:
            from sqlalchemy import func, select

            from storage.models import Call

            calls = await uow.session.scalar(select(func.count()).select_from(Call))
        return {"results": results, "calls_logged": calls, "concurrency": args.concurrency,
                "seconds": args.seconds, "cpus": os.cpu_count()}
    finally:
        for runner in runners:
            await runner.cleanup()
        if services is not None:
            redis = services.kv.redis
            if redis is not None:
                keys = [k async for k in redis.scan_iter(match=f"{prefix}*", count=1000)]
                for i in range(0, len(keys), 1000):
                    await redis.delete(*keys[i:i + 1000])
            await services.close()
        await server_sql(args.database_url, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.ivr", description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=10.0, help="measured seconds per target (default 10)")
    parser.add_argument("--concurrency", type=int, default=100, help="concurrent calls (default 100)")
    parser.add_argument("--low-concurrency", type=int, default=10,
                        help="an extra IVR row at this many concurrent calls (default 10; 0 for none)")
    parser.add_argument("--rate", type=float, default=1000.0,
                        help="an extra open-loop IVR row at this many calls/s (default 1000; 0 for none)")
    parser.add_argument("--database-url", default=os.environ.get(
        "BENCH_DATABASE_URL", "postgresql+asyncpg://postgres@127.0.0.1:5432/test"),
        help="a PostgreSQL server; a private database is created on it for the run")
    parser.add_argument("--redis-url", default=os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/15"))
    parser.add_argument("--json", action="store_true", help="print the results as JSON")
    args = parser.parse_args(argv)
    if not 1 <= args.seconds <= 120 or not 1 <= args.concurrency <= 1000 or not 0 <= args.low_concurrency <= 1000 \
            or not 0 <= args.rate <= 5000:
        parser.error("--seconds must be 1..120, --concurrency 1..1000, --low-concurrency 0..1000, --rate 0..5000")
    import logging

    logging.basicConfig(level=logging.WARNING)
    report = asyncio.run(run(args))
    if args.json:
        print(json.dumps(report, indent=2))
        return 0
    print(f"IVR first step, {args.concurrency} concurrent calls, {args.seconds:.0f} s per target, "
          f"{report['cpus']} CPUs, load generator in a separate process")
    print(f"{'target':46} {'steps/s':>9} {'p50 ms':>8} {'p90 ms':>8} {'p99 ms':>8} {'max ms':>8} {'errors':>7} "
          f"{'CPU ms/step':>12}")
    for label, r in report["results"].items():
        print(f"{label:46} {r['rps']:9.0f} {r['p50_ms']:8.2f} {r['p90_ms']:8.2f} {r['p99_ms']:8.2f} "
              f"{r['max_ms']:8.1f} {r['errors']:7d} {r['server_cpu_ms']:12.2f}")
    print(f"load average at the end: {', '.join(f'{x:.1f}' for x in os.getloadavg())} "
          "(figures are only comparable on an otherwise idle machine)")
    ivr = report["results"][IVR_LABEL]
    ok = ivr["rps"] >= 2000 and ivr["p99_ms"] < 20 and ivr["errors"] == 0
    print(f"calls logged: {report['calls_logged']}; targets (>= 2000 steps/s, p99 < 20 ms): "
          f"{'met' if ok else 'NOT met'}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
