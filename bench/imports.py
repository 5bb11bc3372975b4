"""Benchmark: importing customers from CSV into PostgreSQL.

    python -m bench.imports [--rows 1000000] [--database-url postgresql+asyncpg://...]

Generates a CSV of synthetic customers (account, name, phone, e-mail, balance, tariff, status, paid-until;
no PINs — PIN hashing is slow on purpose, see handlers/imports/customers.py), imports it into a private
database with `python main.py import customers`'s code path, then imports it again (the idempotent re-run:
every row found, nothing created). Target: 1,000,000 customers in under 5 minutes.
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
import time
from pathlib import Path

from bench._selfservice import DEFAULT_DB, private_services, write_customers_csv


async def run(rows: int, database_url: str, keep: bool = False) -> dict[str, float]:
    from sqlalchemy import func, select

    from handlers.imports import import_customers
    from service.cli_data import ProgressBar
    from storage.models import Account, CustomerPhone

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "customers.csv"
        started = time.perf_counter()
        write_customers_csv(path, rows)
        print(f"generated {rows:,} rows ({path.stat().st_size / 1e6:.0f} MB) in {time.perf_counter() - started:.1f}s")
        async with private_services(database_url, Path(tmp) / "data", keep=keep) as services:
            bar = ProgressBar("import", min_rows=0)
            started = time.perf_counter()
            report = await import_customers(services.ctx, path, progress=bar)
            first = time.perf_counter() - started
            bar.close()
            print(report.summary())
            bar = ProgressBar("re-import", min_rows=0)
            started = time.perf_counter()
            again = await import_customers(services.ctx, path, progress=bar)
            second = time.perf_counter() - started
            bar.close()
            print(again.summary())
            async with services.ctx.uow() as uow:
                accounts = await uow.session.scalar(select(func.count()).select_from(Account))
                phones = await uow.session.scalar(select(func.count()).select_from(CustomerPhone))
            assert report.created == rows and accounts == rows and phones == rows, (report.summary(), accounts)
            assert again.created == 0 and again.unchanged == rows, again.summary()
    return {"rows": rows, "import_s": first, "rows_per_s": rows / first, "reimport_s": second}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--database-url", default=DEFAULT_DB, help="PostgreSQL server (a private database is made)")
    parser.add_argument("--keep", action="store_true",
                        help="keep the database (e.g. for python -m bench.lookup --existing URL)")
    args = parser.parse_args(argv)
    result = asyncio.run(run(args.rows, args.database_url, args.keep))
    target = 300 * args.rows / 1_000_000
    verdict = "OK" if result["import_s"] <= target else "SLOWER THAN TARGET"
    print(f"import of {args.rows:,} customers: {result['import_s']:.1f}s ({result['rows_per_s']:,.0f} rows/s); "
          f"re-import {result['reimport_s']:.1f}s; target for this size {target:.0f}s: {verdict}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
