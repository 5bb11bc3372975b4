"""Benchmark: identifying a customer by phone with a million customers in PostgreSQL.

    python -m bench.lookup [--rows 1000000] [--lookups 5000] [--database-url URL]
    python -m bench.lookup --existing postgresql+asyncpg://.../fo_bench_xxx   # a database kept by bench.imports

Measures `handlers.identification.identify_by_phone` end to end (normalisation, the indexed phone query,
the profile with phones, accounts and manager), one call after another as the IVR makes them, for random
known phones and for unknown ones. Target: p99 under 2 ms.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench._selfservice import DEFAULT_DB, phone_of, private_services, write_customers_csv


def _pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


async def measure(services, rows: int, lookups: int) -> dict[str, float]:  # type: ignore[no-untyped-def]
    from handlers.identification import identify_by_phone

    ctx = services.ctx
    rng = random.Random(7)
    for _ in range(200):  # warm-up: connections, statement caches
        await identify_by_phone(ctx, phone_of(rng.randrange(rows)))
    known: list[float] = []
    for _ in range(lookups):
        i = rng.randrange(rows)
        started = time.perf_counter()
        client = await identify_by_phone(ctx, phone_of(i))
        known.append((time.perf_counter() - started) * 1000)
        assert client is not None and client.account_numbers == (f"{5_000_000 + i}",), (i, client)
    unknown: list[float] = []
    for _ in range(lookups // 5):
        started = time.perf_counter()
        assert await identify_by_phone(ctx, f"+7800{rng.randrange(10**7):07d}") is None
        unknown.append((time.perf_counter() - started) * 1000)
    # The floor on this machine right now: one trivial query through the same pool and session.
    from sqlalchemy import text

    floor: list[float] = []
    for _ in range(lookups // 5):
        started = time.perf_counter()
        async with ctx.read() as uow:
            await uow.session.execute(text("SELECT 1"))
        floor.append((time.perf_counter() - started) * 1000)
    return {"p50": statistics.median(known), "p95": _pct(known, 0.95), "p99": _pct(known, 0.99),
            "unknown_p99": _pct(unknown, 0.99), "max": max(known), "floor_p50": statistics.median(floor),
            "floor_p99": _pct(floor, 0.99)}


async def run(args: argparse.Namespace) -> dict[str, float]:
    from sqlalchemy import func, select

    from storage.models import Account

    with tempfile.TemporaryDirectory() as tmp:
        if args.existing:
            from config import Settings, load_business_config
            from service.container import build_services

            settings = Settings(_env_file=None, database_url=args.existing, data_dir=Path(tmp),  # type: ignore[call-arg]
                                seed_demo=False)
            services = await build_services(settings, load_business_config())
            try:
                async with services.ctx.uow() as uow:
                    rows = await uow.session.scalar(select(func.count()).select_from(Account))
                if not args.json:
                    print(f"existing database with {rows:,} accounts")
                return {"rows": rows, **await measure(services, rows, args.lookups)}
            finally:
                await services.close()
        from handlers.imports import import_customers

        path = Path(tmp) / "customers.csv"
        write_customers_csv(path, args.rows)
        async with private_services(args.database_url, Path(tmp) / "data") as services:
            started = time.perf_counter()
            await import_customers(services.ctx, path)
            print(f"loaded {args.rows:,} customers in {time.perf_counter() - started:.0f}s")
            async with services.engine.connect() as conn:
                from sqlalchemy import text

                # Steady state, as the service runs after an import: statistics fresh, the visibility map set
                # and the bulk load's dirty pages written out, so the measurement does not share the
                # machine with the server's own post-load maintenance (autovacuum, checkpoint).
                conn = await conn.execution_options(isolation_level="AUTOCOMMIT")
                await conn.execute(text("VACUUM (ANALYZE)"))
                await conn.execute(text("CHECKPOINT"))
            # Measured from a fresh process, as the service looks customers up (not the one that just held
            # a million parsed rows: its heap would bias the figures with garbage-collector passes).
            done = await asyncio.to_thread(
                subprocess.run, [sys.executable, "-m", "bench.lookup", "--existing", services.settings.database_url,
                                 "--lookups", str(args.lookups), "--json"], capture_output=True, text=True)
            if done.returncode != 0:
                raise RuntimeError(f"measuring process failed: {done.stderr[-2000:]}")
            return json.loads(done.stdout.strip().splitlines()[-1])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--lookups", type=int, default=5000)
    parser.add_argument("--database-url", default=DEFAULT_DB)
    parser.add_argument("--existing", help="measure on an already loaded database instead of loading one")
    parser.add_argument("--json", action="store_true", help="print the figures as one JSON line only")
    args = parser.parse_args(argv)
    r = asyncio.run(run(args))
    if args.json:
        print(json.dumps(r))
        return 0
    verdict = "OK" if r["p99"] < 2.0 else "ABOVE TARGET"
    print(f"identify_by_phone over {r['rows']:,} customers: p50 {r['p50']:.2f} ms, p95 {r['p95']:.2f} ms, "
          f"p99 {r['p99']:.2f} ms (target < 2 ms: {verdict}), max {r['max']:.1f} ms; "
          f"unknown phone p99 {r['unknown_p99']:.2f} ms; a bare SELECT 1 through the same kind of read-only unit of work: "
          f"p50 {r['floor_p50']:.2f} ms, p99 {r['floor_p99']:.2f} ms")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
