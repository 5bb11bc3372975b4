"""Benchmark: memory of one web process under mixed load (issue 9: below 300 MB).

    python -m bench.memory [--seconds 30] [--database-url URL] [--redis-url URL]

Starts `python main.py serve --no-workers` as production runs it: its own process on a private PostgreSQL
database and Redis prefix, demo data, Telegram webhook mode against a fake Bot API, Twilio signatures on, the
topic model already trained into its data folder (as after the first start). Then, for --seconds, drives three
loads at once: Telegram messages from new users, IVR calls (the entry step and a spoken request) and Rasa
action calls (balance, open a ticket). The Telegram and spoken texts are the shipped ru/en training and test
examples in turn (about 2,000 client messages, 2,700 word pieces): repeating one sentence would leave the
classifier's per-piece cache nearly empty and understate memory. The web process's resident
memory is read from /proc every 0.2 s; the report gives it when ready, its peak during the load (VmHWM) and at
the end, with the number of requests answered. Target: below 300 MB.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import sys
import tempfile
import time
import uuid
import zlib
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

ROOT = Path(__file__).resolve().parents[1]
TARGET_MB = 300.0
CALLER = "+79161234567"  # a demo customer's phone


def _memory_mb(pid: int) -> tuple[float, float]:
    """(VmRSS, VmHWM) of a process in MB."""
    values = {}
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith(("VmRSS:", "VmHWM:")):
                key, amount, _unit = line.split()
                values[key[:-1]] = int(amount) / 1024
    return values["VmRSS"], values["VmHWM"]


def client_texts() -> list[str]:
    """The shipped examples (training and held-out test), shuffled the same way every run."""
    from handlers.classification.nlu_data import load_many

    texts = [example.text for example in load_many(sorted((ROOT / "data" / "nlu").glob("*.yml")))]
    random.Random(7).shuffle(texts)
    return texts


async def _telegram(delivery: Any, stop_at: float, counts: dict[str, int], texts: list[str]) -> None:
    import aiohttp

    from tests.fakes.updates import message

    user = 8_000_000_000 + random.randrange(10**6) * 1000
    async with aiohttp.ClientSession() as session:
        while time.monotonic() < stop_at:
            user += 1
            update = message(user, texts[user % len(texts)])
            if await delivery.deliver(session, update, stop_at + 30):
                counts["telegram"] += 1


async def _calls(web_url: str, stop_at: float, counts: dict[str, int], texts: list[str]) -> None:
    import aiohttp
    from twilio.request_validator import RequestValidator

    from tests.cluster import PUBLIC_BASE_URL, TWILIO_TOKEN

    validator = RequestValidator(TWILIO_TOKEN)

    async def post(session: aiohttp.ClientSession, path: str, form: dict[str, str]) -> bool:
        headers = {"X-Twilio-Signature": validator.compute_signature(PUBLIC_BASE_URL + path, form),
                   "Content-Type": "application/x-www-form-urlencoded"}
        async with session.post(web_url + path, data=urlencode(form), headers=headers) as response:
            return response.status == 200 and "<Response>" in await response.text()

    async with aiohttp.ClientSession() as session:
        while time.monotonic() < stop_at:
            sid = f"CA{uuid.uuid4().hex}"
            call = {"CallSid": sid, "From": CALLER, "To": "+74950000000", "AccountSid": "ACbench"}
            if await post(session, "/ivr/twilio/voice", {**call, "CallStatus": "ringing"}):
                counts["ivr_steps"] += 1
            # The menu's "technical problem" item, then the problem in words: a ticket from speech.
            speech = texts[zlib.crc32(sid.encode()) % len(texts)]
            for seq, extra in ((1, {"Digits": "3"}), (2, {"SpeechResult": speech, "Confidence": "0.9"})):
                if await post(session, f"/ivr/twilio/gather?s={seq}", {**call, "CallStatus": "in-progress", **extra}):
                    counts["ivr_steps"] += 1


async def _rasa(web_url: str, stop_at: float, counts: dict[str, int]) -> None:
    import aiohttp

    from tests.fakes.rasa_payloads import action_call

    scenarios = (("action_check_balance", "какой у меня баланс", "balance"),
                 ("action_open_ticket", "интернет очень медленный по вечерам", "slow_connection"))
    headers = {"Content-Type": "application/json", "Content-Encoding": "deflate"}
    async with aiohttp.ClientSession() as session:
        turn = 0
        while time.monotonic() < stop_at:
            action, text, intent = scenarios[turn % 2]
            turn += 1
            body = zlib.compress(json.dumps(action_call(action, text, intent=intent, sender_id=CALLER,
                                                        input_channel="twilio_voice",
                                                        message_id=uuid.uuid4().hex)).encode())
            async with session.post(web_url + "/webhook", data=body, headers=headers) as response:
                await response.read()
                if response.status == 200:
                    counts["rasa"] += 1


async def _sample(pid: int, stop: asyncio.Event, samples: list[float]) -> None:
    while not stop.is_set():
        samples.append(_memory_mb(pid)[0])
        await asyncio.sleep(0.2)


async def run(args: argparse.Namespace) -> dict[str, Any]:
    from sqlalchemy.engine import make_url

    from bench._selfservice import server_sql
    from handlers.classification import load_or_train_default
    from tests.cluster import Cluster, TelegramLikeDelivery, cluster_config
    from tests.fakes.bot_api import FakeBotApi

    name = f"fo_bench_mem_{uuid.uuid4().hex[:8]}"
    await server_sql(args.database_url, f'CREATE DATABASE "{name}"')
    database_url = make_url(args.database_url).set(database=name).render_as_string(hide_password=False)
    api = FakeBotApi()
    await api.start()
    workdir = Path(tempfile.mkdtemp(prefix="bench-memory-"))
    cluster = Cluster(workdir=workdir, database_url=database_url, redis_url=args.redis_url,
                      bot_api_base=api.base_url, bot_token=api.token,
                      config_file=cluster_config(workdir / "site.yaml"), data_dir=workdir / "data")
    try:
        # As after the first start: the model is in the data folder, so this measures serving, not training.
        await asyncio.to_thread(load_or_train_default, cache_dir=cluster.data_dir / "models")
        done = await asyncio.to_thread(cluster.run_cli, "db", "upgrade")
        if done.returncode != 0:
            raise RuntimeError(f"main.py db upgrade failed: {done.stderr[-2000:]}")
        await cluster.seed_demo()  # staff reachable in Telegram, so alerts are queued for them
        web = cluster.add_web()
        web.start()
        await web.wait_ready()
        assert web.proc is not None
        pid = web.proc.pid
        ready_mb = _memory_mb(pid)[0]
        counts = {"telegram": 0, "ivr_steps": 0, "rasa": 0}
        samples: list[float] = []
        stop = asyncio.Event()
        sampler = asyncio.create_task(_sample(pid, stop, samples))
        stop_at = time.monotonic() + args.seconds
        delivery = TelegramLikeDelivery(cluster)
        texts = client_texts()
        await asyncio.gather(*(_telegram(delivery, stop_at, counts, texts) for _ in range(args.concurrency)),
                             *(_calls(web.url, stop_at, counts, texts) for _ in range(args.concurrency)),
                             *(_rasa(web.url, stop_at, counts) for _ in range(args.concurrency)))
        stop.set()
        await sampler
        end_mb, peak_mb = _memory_mb(pid)
        if not web.alive:
            raise RuntimeError(f"the web process died under load:\n{web.log()[-3000:]}")
        return {"ready_mb": round(ready_mb, 1), "peak_mb": round(max(peak_mb, *samples), 1),
                "end_mb": round(end_mb, 1), "seconds": args.seconds, "concurrency": args.concurrency, **counts}
    finally:
        await asyncio.to_thread(cluster.stop_all)
        await api.stop()
        await server_sql(args.database_url, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=30.0)
    parser.add_argument("--concurrency", type=int, default=4, help="clients of each kind at once (default 4)")
    parser.add_argument("--database-url", default=os.environ.get("BENCH_DATABASE_URL") or os.environ.get(
        "TEST_DATABASE_URL") or "postgresql+asyncpg://postgres@127.0.0.1:5432/postgres")
    parser.add_argument("--redis-url", default=os.environ.get("BENCH_REDIS_URL") or os.environ.get(
        "TEST_REDIS_URL") or "redis://127.0.0.1:6379/15")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    result = asyncio.run(run(args))
    if args.json:
        print(json.dumps(result))
    verdict = "OK" if result["peak_mb"] < TARGET_MB else "ABOVE TARGET"
    print(f"web process under mixed load for {result['seconds']:.0f} s ({result['telegram']} Telegram updates, "
          f"{result['ivr_steps']} IVR steps, {result['rasa']} Rasa calls answered): RSS {result['ready_mb']:.0f} MB "
          f"when ready, peak {result['peak_mb']:.0f} MB, {result['end_mb']:.0f} MB at the end "
          f"(target < {TARGET_MB:.0f} MB: {verdict})", file=sys.stdout)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
