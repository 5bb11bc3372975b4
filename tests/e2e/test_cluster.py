"""Scale-out, crash and outage tests (issue 9) with real processes on PostgreSQL + Redis.

Several `serve --no-workers` processes and `worker` processes share the database and Redis; a load of
Telegram updates (delivered the way Telegram does: redelivered until acknowledged) and IVR calls runs while
processes are killed with SIGKILL or the database connection is cut. Afterwards every acknowledged update
has its interaction and ticket, no update made two tickets, and every ticket's staff alert reached the
(fake) Bot API exactly once.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections import Counter
from datetime import UTC, datetime, timedelta
from urllib.parse import urlencode

import aiohttp
import pytest
from sqlalchemy import func, select, update

from storage.db import create_engine, create_session_factory
from storage.models import Call, Interaction, Notification, Ticket, TicketEvent
from tests.cluster import (
    PUBLIC_BASE_URL,
    TWILIO_TOKEN,
    Cluster,
    TelegramLikeDelivery,
    cluster_config,
)
from tests.conftest import TEST_DATABASE_URL, TEST_REDIS_URL, _truncate_postgres
from tests.fakes.updates import message

pytestmark = [pytest.mark.timeout(900), pytest.mark.skipif(
    not (TEST_DATABASE_URL and TEST_REDIS_URL),
    reason="scale-out and crash tests need PostgreSQL and Redis (TEST_DATABASE_URL, TEST_REDIS_URL)",
)]
USER_BASE = 7_000_000_000
CALLER = "+79161234567"  # demo account 200001


@pytest.fixture
async def cluster(tmp_path, postgres_url, fake_bot_api, trained_data_dir):
    await _truncate_postgres(postgres_url)
    group = Cluster(workdir=tmp_path, database_url=postgres_url, redis_url=TEST_REDIS_URL,
                    bot_api_base=fake_bot_api.base_url, bot_token=fake_bot_api.token,
                    config_file=cluster_config(tmp_path / "site.yaml"), data_dir=trained_data_dir)
    await group.seed_demo()
    try:
        yield group
    finally:
        await asyncio.to_thread(group.stop_all)


async def db_session(url: str):
    engine = create_engine(url, pool_size=2)
    return engine, create_session_factory(engine)


async def drive_telegram(delivery: TelegramLikeDelivery, users: list[int], deadline: float,
                         concurrency: int = 8) -> list[dict]:
    updates = [message(uid, f"интернет не работает уже третий день, абонент {uid}") for uid in users]
    limiter = asyncio.Semaphore(concurrency)
    async with aiohttp.ClientSession() as session:
        async def one(update):
            async with limiter:
                await delivery.deliver(session, update, deadline)

        await asyncio.gather(*(one(u) for u in updates))
    return updates


async def drive_calls(cluster: Cluster, count: int, deadline: float) -> set[str]:
    from twilio.request_validator import RequestValidator

    validator = RequestValidator(TWILIO_TOKEN)
    acked: set[str] = set()
    async with aiohttp.ClientSession() as session:
        for i in range(count):
            sid = f"CA{random.getrandbits(64):016x}{i:04d}"
            form = {"CallSid": sid, "From": CALLER, "To": "+74950000000", "CallStatus": "ringing",
                    "Direction": "inbound", "AccountSid": "ACtest"}
            headers = {"X-Twilio-Signature": validator.compute_signature(PUBLIC_BASE_URL + "/ivr/twilio/voice", form),
                       "Content-Type": "application/x-www-form-urlencoded"}
            while time.monotonic() < deadline:  # the provider retries a failed webhook too
                node = random.choice([n for n in cluster.webs if n.alive] or cluster.webs)
                try:
                    async with session.post(node.url + "/ivr/twilio/voice", data=urlencode(form), headers=headers,
                                            timeout=aiohttp.ClientTimeout(total=15)) as response:
                        body = await response.text()
                        if response.status == 200 and "<Response>" in body:
                            acked.add(sid)
                            break
                except (TimeoutError, aiohttp.ClientError, OSError):
                    pass
                await asyncio.sleep(0.3)
            await asyncio.sleep(0.05)
    return acked


async def wait_until(predicate, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if await predicate():
            return
        await asyncio.sleep(0.5)
    raise AssertionError(f"timed out waiting for {what}")


def alert_calls(api, ticket_numbers: list[str]) -> dict[str, list[float]]:
    """When each ticket's alert reached the Bot API (staff chats and department groups, not the client)."""
    seen: dict[str, list[float]] = {}
    for call in api.calls:
        chat = call.data.get("chat_id")
        if call.method != "sendMessage" or not isinstance(chat, int) or USER_BASE <= chat:
            continue
        text = str(call.data.get("text", ""))
        for number in ticket_numbers:
            if number in text:
                seen.setdefault(number, []).append(call.at)
    return seen


def alert_counts(api, ticket_numbers: list[str]) -> Counter:
    return Counter({number: len(times) for number, times in alert_calls(api, ticket_numbers).items()})


# A SIGKILL can land after the Bot API accepted a message and before the dispatcher read the answer and
# recorded it: the Bot API has no idempotency key, so that one message is sent again once the dead
# dispatcher's lease on the row runs out. A repeat is accepted only when it has exactly that shape: the first
# copy around a kill, the second no sooner than a lease later. (Timestamps come from the fake Bot API on this
# test's event loop, so they can lag by the time the loop was busy; hence the slack.)
KILL_SLACK_SECONDS = 5.0
LEASE_SECONDS = 60.0


async def check_invariants(cluster: Cluster, api, updates: list[dict], delivery: TelegramLikeDelivery,
                           calls: set[str], kills: list[float] = ()) -> list[str]:
    engine, sessions = await db_session(cluster.database_url)
    try:
        keys = [f"tg:{u['update_id']}" for u in updates]
        assert set(delivery.acked) == {u["update_id"] for u in updates}, "some updates were never acknowledged"
        async with sessions() as s:
            tickets = list(await s.scalars(select(Ticket).where(Ticket.source_key.in_(keys))))
            by_key = Counter(t.source_key for t in tickets)
            assert set(by_key) == set(keys), f"{len(set(keys) - set(by_key))} acknowledged updates have no ticket"
            assert max(by_key.values()) == 1
            interactions = await s.scalar(select(func.count()).select_from(Interaction)
                                          .where(Interaction.external_id.in_(keys)))
            assert interactions == len(keys), "an acknowledged update has no interaction"
            logged = set(await s.scalars(select(Call.call_sid).where(Call.call_sid.in_(calls))))
            assert logged == calls, "an answered call has no call record"
        numbers = [t.number for t in tickets]

        async def all_sent() -> bool:
            async with sessions() as s:
                # A "rerouted" row handed its alert to a new row (the department group or a fallback), which
                # is counted in its own right.
                pending = await s.scalar(select(func.count()).select_from(Notification)
                                         .where(Notification.kind == "ticket_alert",
                                                Notification.status.not_in(("sent", "rerouted"))))
            return pending == 0

        # Rows claimed by a process that died (or whose "sent" mark failed in an outage) come back when their
        # lease runs out, so allow a lease and a half.
        await wait_until(all_sent, 240, "every ticket alert to be sent")
        await api.wait_for(lambda _calls: len(alert_counts(api, numbers)) == len(numbers), timeout=60)
        repeats = {n: times for n, times in alert_calls(api, numbers).items() if len(times) != 1}
        unexplained = {n: len(times) for n, times in repeats.items()
                       if len(times) > 2 or not any(abs(times[0] - k) <= KILL_SLACK_SECONDS
                                                    and times[1] - k >= LEASE_SECONDS for k in kills)}
        if unexplained:
            details = [(c.data.get("chat_id"), round(c.at - (kills[0] if kills else 0), 2), str(c.data.get("text"))[:160])
                       for c in api.calls if c.method == "sendMessage" and any(n in str(c.data.get("text", ""))
                                                                                for n in unexplained)]
            raise AssertionError(f"alerts delivered more than once, not explained by a kill: {unexplained}; "
                                 f"messages (chat, seconds after kill, text): {details}")
        return numbers
    finally:
        await engine.dispose()


async def test_scale_out_survives_kill_9_of_web_and_worker(cluster, fake_bot_api):
    web0, web1 = cluster.add_web(), cluster.add_web()
    worker0 = cluster.add_worker()
    for node in (web0, web1, worker0):
        node.start()
    await asyncio.gather(web0.wait_ready(), web1.wait_ready(), worker0.wait_ready())
    delivery = TelegramLikeDelivery(cluster)
    deadline = time.monotonic() + 240
    users = [USER_BASE + i for i in range(60)]

    kills: list[float] = []

    async def chaos() -> None:
        await asyncio.sleep(3)
        for node in (web0, worker0):
            await asyncio.to_thread(node.kill)  # returns once the process is gone; the loop keeps serving
            kills.append(time.monotonic())
        await asyncio.sleep(2)
        web0.start()
        worker0.start()
        await asyncio.gather(web0.wait_ready(), worker0.wait_ready())

    results = await asyncio.gather(drive_telegram(delivery, users, deadline), drive_calls(cluster, 20, deadline),
                                   chaos())
    updates, calls, _ = results
    assert len(calls) == 20
    numbers = await check_invariants(cluster, fake_bot_api, updates, delivery, calls, kills)
    assert len(numbers) == len(users)
    # Any web process served updates: both appear in the access pattern through their logs' request counts.
    exits = await asyncio.to_thread(cluster.stop_all)
    assert all(code == 0 for code in exits.values()), exits


async def test_sla_escalation_fires_once_with_two_workers(cluster, fake_bot_api):
    web = cluster.add_web()
    web.start()
    await web.wait_ready()
    delivery = TelegramLikeDelivery(cluster)
    updates = await drive_telegram(delivery, [USER_BASE + 1000 + i for i in range(6)], time.monotonic() + 120)
    keys = [f"tg:{u['update_id']}" for u in updates]
    engine, sessions = await db_session(cluster.database_url)
    try:
        async with sessions() as s:  # every deadline already missed
            past = datetime.now(UTC) - timedelta(minutes=5)
            await s.execute(update(Ticket).where(Ticket.source_key.in_(keys))
                            .values(first_response_due=past, created_at=past - timedelta(hours=1)))
            await s.commit()
        workers = [cluster.add_worker(), cluster.add_worker()]
        for worker in workers:
            worker.start()
        await asyncio.gather(*(w.wait_ready() for w in workers))

        async def breached() -> bool:
            async with sessions() as s:
                missing = await s.scalar(select(func.count()).select_from(Ticket).where(
                    Ticket.source_key.in_(keys), Ticket.first_response_breached_at.is_(None)))
            return missing == 0

        await wait_until(breached, 120, "SLA breaches to be recorded")
        await asyncio.sleep(3)  # a second watcher pass must not fire again
        async with sessions() as s:
            rows = (await s.execute(
                select(TicketEvent.ticket_id, func.count()).join(Ticket, Ticket.id == TicketEvent.ticket_id)
                .where(Ticket.source_key.in_(keys), TicketEvent.kind == "sla_breach")
                .group_by(TicketEvent.ticket_id))).all()
        assert len(rows) == len(keys) and all(count == 1 for _, count in rows), rows
    finally:
        await engine.dispose()


async def test_bot_api_failures_delay_alerts_but_lose_none(cluster, fake_bot_api):
    """The Bot API answers 429, 500 and times out for a while: alerts wait, none is lost, none doubled."""
    web, worker = cluster.add_web(), cluster.add_worker()
    web.start()
    worker.start()
    await asyncio.gather(web.wait_ready(), worker.wait_ready())
    fake_bot_api.fail_next("sendMessage", 500, times=15)
    fake_bot_api.fail_next("sendMessage", 429, retry_after=2, times=5)
    fake_bot_api.fail_next("sendMessage", 502, times=10)
    delivery = TelegramLikeDelivery(cluster)
    updates = await drive_telegram(delivery, [USER_BASE + 4000 + i for i in range(15)], time.monotonic() + 180)
    await check_invariants(cluster, fake_bot_api, updates, delivery, set())
    assert len(fake_bot_api.rejected) >= 30
