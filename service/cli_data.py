"""Data commands: `import customers|staff|payments|documents FILE.csv`, `customers duplicates`,
`customers merge A B`."""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any

from config import BusinessConfig, Settings


class ProgressBar:
    """One self-overwriting line on stderr, at most a few times a second; silent for small files."""

    def __init__(self, label: str, stream: Any = None, min_rows: int = 5000) -> None:
        self.label = label
        self.stream = stream or sys.stderr
        self.min_rows = min_rows
        self.started = time.monotonic()
        self._last = 0.0
        self.shown = False

    def __call__(self, done: int, total: int) -> None:
        now = time.monotonic()
        if total < self.min_rows or (now - self._last < 0.25 and done < total):
            return
        self._last = now
        width = 30
        fraction = min(1.0, done / total) if total else 1.0
        rate = done / max(now - self.started, 1e-6)
        bar = "#" * int(width * fraction) + "-" * (width - int(width * fraction))
        self.stream.write(f"\r{self.label} [{bar}] {done:,}/{total:,} rows, {rate:,.0f} rows/s")
        self.stream.flush()
        self.shown = True

    def close(self) -> None:
        if self.shown:
            self.stream.write("\n")
            self.stream.flush()


def _is_file(path: Path) -> bool:
    return path.is_file()


async def _services(settings: Settings, config: BusinessConfig):  # type: ignore[no-untyped-def]
    from service.container import build_services
    from service.wiring import connect_ports

    services = await build_services(settings, config)
    connect_ports(services)
    return services


async def cmd_import(args: argparse.Namespace, settings: Settings, config: BusinessConfig) -> int:
    from handlers.dto import InvalidRequest
    from handlers.imports import IMPORTERS

    path = Path(args.file)
    if not _is_file(path):
        print(f"error: {path}: no such file", file=sys.stderr)
        return 2
    services = await _services(settings, config)
    bar = ProgressBar(f"import {args.what}")
    try:
        report = await IMPORTERS[args.what](services.ctx, path, progress=bar)
    except InvalidRequest as exc:
        bar.close()
        print(f"error: {exc}", file=sys.stderr)
        return 2
    finally:
        await services.close()
    bar.close()
    shown = report.errors[: args.max_errors]
    for line, reason in shown:
        print(f"line {line}: skipped: {reason}")
    if len(report.errors) > len(shown):
        print(f"... and {len(report.errors) - len(shown)} more skipped rows")
    for line, reason in report.warnings[: args.max_errors]:
        print(f"line {line}: warning: {reason}")
    print(report.summary())
    return 1 if report.errors else 0


async def cmd_duplicates(args: argparse.Namespace, settings: Settings, config: BusinessConfig) -> int:
    from handlers.duplicates import find_duplicates, merge_customers

    services = await _services(settings, config)
    try:
        started = time.monotonic()
        pairs = await find_duplicates(services.ctx, min_score=args.min_score)
        elapsed = time.monotonic() - started
        for pair in pairs[: args.limit]:
            verdict = "SURE" if pair.sure else "check"
            print(f"{pair.a:>8} {pair.b:>8}  {pair.score:.2f} {verdict:5}  {pair.names[0]} | {pair.names[1]}"
                  f"  ({', '.join(pair.reasons)})")
        sure = [p for p in pairs if p.sure]
        print(f"{len(pairs)} candidate pairs ({len(sure)} sure) in {elapsed:.1f}s")
        if args.merge_sure:
            merged: set[int] = set()
            for pair in sure:
                if pair.a in merged or pair.b in merged:
                    continue  # one merge per record per run: chains are resolved on the next run
                await merge_customers(services.ctx, pair.a, pair.b)
                merged.add(pair.b)
                print(f"merged {pair.b} into {pair.a}")
    finally:
        await services.close()
    return 0


async def cmd_merge(args: argparse.Namespace, settings: Settings, config: BusinessConfig) -> int:
    from handlers.dto import UseCaseError
    from handlers.duplicates import merge_customers

    services = await _services(settings, config)
    try:
        result = await merge_customers(services.ctx, args.survivor, args.duplicate)
    except UseCaseError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    finally:
        await services.close()
    moved = ", ".join(f"{count} {what}" for what, count in result.moved.items())
    print(f"customer {result.merged_id} merged into {result.survivor_id}: moved {moved}")
    return 0


def register(sub: Any) -> None:
    imp = sub.add_parser("import", help="import customers, staff, payments or documents from a UTF-8 CSV file")
    imp.add_argument("what", choices=["customers", "staff", "payments", "documents"])
    imp.add_argument("file", help="CSV file with a header row")
    imp.add_argument("--max-errors", type=int, default=100, help="how many bad rows to list (default 100)")
    imp.set_defaults(handler=cmd_import)

    customers = sub.add_parser("customers", help="customer records: duplicates and merging")
    actions = customers.add_subparsers(dest="customers_command", metavar="ACTION", required=True)
    dup = actions.add_parser("duplicates", help="list candidate duplicate customers with a score")
    dup.add_argument("--min-score", type=float, default=0.6)
    dup.add_argument("--limit", type=int, default=200, help="pairs to list (default 200)")
    dup.add_argument("--merge-sure", action="store_true", help="merge the sure pairs (the lower id survives)")
    dup.set_defaults(handler=cmd_duplicates)
    merge = actions.add_parser("merge", help="merge customer B into customer A (A survives)")
    merge.add_argument("survivor", type=int, metavar="A")
    merge.add_argument("duplicate", type=int, metavar="B")
    merge.set_defaults(handler=cmd_merge)
