"""Front office: composition root and command line.

    python main.py                 # serve (web + workers) on the embedded default
    python main.py serve --no-workers
    python main.py worker
    python main.py db upgrade
    python main.py demo
    python main.py train --data FILE --out PATH / evaluate --train FILE --test FILE [--oos-label LABEL]
    python main.py import ... / customers ... / staff invite EMAIL / chat / call --from PHONE
"""

from __future__ import annotations

import argparse
import asyncio
import importlib
import logging
import os
import sys
from collections.abc import Awaitable, Callable

from config import BusinessConfig, ConfigError, Settings, load_business_config, load_settings
from service.errors import StartupError

# Set before anything imports numpy (nothing above does): every BLAS call of ours is meant to run
# on one thread (handlers/classification/threads.py), and then the per-request limit has nothing to do.
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

Command = Callable[[argparse.Namespace, Settings, BusinessConfig], Awaitable[int]]


async def cmd_serve(args: argparse.Namespace, settings: Settings, config: BusinessConfig) -> int:
    from service.runner import serve

    host = args.host or settings.http_host
    port = args.port or settings.http_port
    return await serve(settings, config, host=host, port=port, with_workers=not args.no_workers)


async def cmd_worker(_args: argparse.Namespace, settings: Settings, config: BusinessConfig) -> int:
    from service.runner import run_workers

    return await run_workers(settings, config)


async def cmd_db_upgrade(_args: argparse.Namespace, settings: Settings, config: BusinessConfig) -> int:
    from service.container import build_services
    from storage.migrate import current_revision, head_revision, upgrade

    services = await build_services(settings, config, prepare_database=False)
    try:
        before = await current_revision(services.engine)
        await upgrade(settings.database_url)
        from storage.seed import sync_departments

        await sync_departments(services.uow, config)
        print(f"database schema: {before or 'empty'} -> {head_revision()}")
    finally:
        await services.close()
    return 0


async def cmd_demo(_args: argparse.Namespace, settings: Settings, config: BusinessConfig) -> int:
    from service.container import build_services
    from storage.seed import DEMO_PIN_NOTE, seed_demo

    services = await build_services(settings, config)
    try:
        added = await seed_demo(services.uow, config)
    finally:
        await services.close()
    print("demo data: " + ", ".join(f"{count} {what} added" for what, count in added.items()))
    print(DEMO_PIN_NOTE)
    return 0


def build_parser(argv: list[str] | None = None) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="main.py", description="Front office for service providers.")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    serve = sub.add_parser("serve", help="run the HTTP service (and the workers); the default command")
    serve.add_argument("--host", help="listen address (default HTTP_HOST or 0.0.0.0)")
    serve.add_argument("--port", type=int, help="listen port (default HTTP_PORT or 8080)")
    serve.add_argument("--no-workers", action="store_true", help="web only; run workers with `main.py worker`")
    serve.set_defaults(handler=cmd_serve)

    worker = sub.add_parser("worker", help="run the background workers only (dispatcher, SLA watcher...)")
    worker.set_defaults(handler=cmd_worker)

    db = sub.add_parser("db", help="database schema")
    db_sub = db.add_subparsers(dest="db_command", metavar="ACTION", required=True)
    db_sub.add_parser("upgrade", help="apply migrations up to the newest").set_defaults(handler=cmd_db_upgrade)

    demo = sub.add_parser("demo", help="add the demo data set (idempotent)")
    demo.set_defaults(handler=cmd_demo)

    train = sub.add_parser("train", help="train a topic model from Rasa NLU YAML or CSV (text,label) files")
    train.add_argument("--data", action="append", required=True, metavar="FILE", help="training file (repeatable)")
    train.add_argument("--out", required=True, metavar="PATH", help="where to write the model")
    train.set_defaults(handler=cmd_train)

    evaluate = sub.add_parser("evaluate", help="train on one file, test on another, print a report and JSON")
    evaluate.add_argument("--train", required=True, metavar="FILE")
    evaluate.add_argument("--test", required=True, metavar="FILE")
    evaluate.add_argument("--oos-label", metavar="LABEL", help="the label meaning 'not ours' (out of scope)")
    evaluate.set_defaults(handler=cmd_evaluate)

    for module in _feature_modules(argv):
        importlib.import_module(module).register(sub)
    return parser


# Commands contributed by features: command -> module with `register(subparsers)`. Only the module of the
# command being run is imported (some pull in heavy libraries such as aiogram); --help imports them all.
FEATURE_COMMANDS = {
    "chat": "bot.terminal",
    "staff": "bot.terminal",
    "call": "ivr.terminal",
    "import": "service.cli_data",
    "customers": "service.cli_data",
}


def _feature_modules(argv: list[str] | None) -> list[str]:
    words = [w for w in (argv or []) if not w.startswith("-")]
    if words and words[0] in FEATURE_COMMANDS:
        return [FEATURE_COMMANDS[words[0]]]
    if words or not any(w in ("-h", "--help") for w in argv or []):
        return []  # a built-in command, or the default `serve`
    return list(dict.fromkeys(FEATURE_COMMANDS.values()))


async def cmd_train(args: argparse.Namespace, _settings: Settings, _config: BusinessConfig) -> int:
    from handlers.classification.commands import train_command

    return await asyncio.to_thread(train_command, args.data, args.out)


async def cmd_evaluate(args: argparse.Namespace, _settings: Settings, _config: BusinessConfig) -> int:
    from handlers.classification.commands import evaluate_command

    return await asyncio.to_thread(evaluate_command, args.train, args.test, args.oos_label)


def configure_logging(level: str) -> None:
    logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    for noisy in ("aiohttp.access", "sqlalchemy.engine", "aiosqlite", "asyncio", "alembic"):
        logging.getLogger(noisy).setLevel(max(logging.WARNING, logging.getLevelName(level)))


def main(argv: list[str] | None = None) -> int:
    parser = build_parser(argv)
    args = parser.parse_args(argv)
    if getattr(args, "handler", None) is None:
        args = parser.parse_args(["serve", *(argv or [])])
    try:
        settings = load_settings()
        configure_logging(settings.log_level)
        config = load_business_config(settings.config_file)
        return asyncio.run(args.handler(args, settings, config))
    except (ConfigError, StartupError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
