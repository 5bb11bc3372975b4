"""Outage tests (issue 9) with real processes: PostgreSQL or Redis becomes unreachable under a steady load
of Telegram updates, then comes back.

The server is never stopped (other test runs share it): the web and worker processes reach it through a
`TcpProxy`, and cutting the proxy resets every connection and refuses new ones, which is what an outage
looks like from the client. Afterwards every acknowledged update has exactly one interaction and ticket,
every ticket's staff alert reached the (fake) Bot API exactly once, and the alerts left over from the outage
went out promptly after recovery: well within the dispatcher's 90 s lease, so no alert waited for a lease
taken before the outage to run out, nor for a supervisor's grown restart pause.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from datetime import UTC, datetime

import aiohttp
import pytest
from sqlalchemy import func, select
from sqlalchemy.engine import make_url

from storage.models import Notification
from tests.cluster import Cluster, TcpProxy, TelegramLikeDelivery, cluster_config
from tests.conftest import TEST_DATABASE_URL, TEST_REDIS_URL, _truncate_postgres
from tests.e2e.test_cluster import USER_BASE, check_invariants, db_session, wait_until
from tests.fakes.updates import message

pytestmark = [pytest.mark.timeout(600), pytest.mark.skipif(
    not (TEST_DATABASE_URL and TEST_REDIS_URL),
    reason="outage tests need PostgreSQL and Redis (TEST_DATABASE_URL, TEST_REDIS_URL)",
)]

OUTAGE_SECONDS = 10.0
LEASE_SECONDS = 90.0  # NotificationDispatcher's default lease
# From the end of an outage to the last staff alert sent, the backlog needs at least one Telegram chat
# interval (1.05 s) per alert queued for the busiest agent chat; this much more is allowed for start-up,
# redelivered updates and a slow machine. The bound must stay below the lease, or the test would not tell
# a prompt recovery from a stalled one.
PROMPT_SLACK_SECONDS = 20.0
CHAT_INTERVAL = 1.05


async def start_cluster(tmp_path, fake_bot_api, trained_data_dir, *, database_url: str, redis_url: str,
                        admin_database_url: str) -> Cluster:
    await _truncate_postgres(admin_database_url)
    cluster = Cluster(workdir=tmp_path, database_url=database_url, redis_url=redis_url,
                      bot_api_base=fake_bot_api.base_url, bot_token=fake_bot_api.token,
                      config_file=cluster_config(tmp_path / "site.yaml"), data_dir=trained_data_dir)
    await cluster.seed_demo(admin_database_url)
    web, worker = cluster.add_web(), cluster.add_worker()
    web.start()
    worker.start()
    await asyncio.gather(web.wait_ready(), worker.wait_ready())
    return cluster


async def steady_telegram(delivery: TelegramLikeDelivery, users: list[int], rate: float,
                          deadline: float) -> list[dict]:
    """One new update every 1/rate seconds, each redelivered (as Telegram does) until acknowledged."""
    updates = [message(uid, f"интернет не работает уже третий день, абонент {uid}") for uid in users]
    async with aiohttp.ClientSession() as session:
        tasks = []
        for update_ in updates:
            tasks.append(asyncio.create_task(delivery.deliver(session, update_, deadline)))
            await asyncio.sleep(1 / rate)
        await asyncio.gather(*tasks)
    return updates


async def readiness(node) -> tuple[int, dict]:  # type: ignore[no-untyped-def]
    async with aiohttp.ClientSession() as session, \
            session.get(node.url + "/ready", timeout=aiohttp.ClientTimeout(total=10)) as response:
        return response.status, await response.json()


async def alert_outbox(database_url: str) -> list[tuple[str, int | None, datetime | None]]:
    """(status, chat, sent at) of every staff alert row."""
    engine, sessions = await db_session(database_url)
    try:
        async with sessions() as s:
            return [tuple(r) for r in await s.execute(  # type: ignore[misc]
                select(Notification.status, Notification.chat_id, Notification.sent_at)
                .where(Notification.kind == "ticket_alert"))]
    finally:
        await engine.dispose()


async def assert_alerts_prompt(database_url: str, recovered_at: datetime) -> float:
    """Every staff alert sent, the last one no later after the recovery than the busiest chat's backlog
    explains; returns that delay."""
    async def all_sent() -> bool:
        return all(status == "sent" for status, _, _ in await alert_outbox(database_url))

    await wait_until(all_sent, LEASE_SECONDS * 2, "every ticket alert to be sent")
    rows = await alert_outbox(database_url)
    backlog = Counter(chat for _, chat, at in rows if at is not None and at >= recovered_at)
    bound = PROMPT_SLACK_SECONDS + CHAT_INTERVAL * max(backlog.values(), default=0)
    assert bound < LEASE_SECONDS, f"too many alerts per chat for this test to mean anything: {backlog}"
    delay = (max(at for _, _, at in rows if at is not None) - recovered_at).total_seconds()
    assert delay < bound, f"the last alert went out {delay:.0f}s after recovery (allowed {bound:.0f}s)"
    print(f"last alert {delay:.1f}s after recovery (allowed {bound:.1f}s: busiest chat "
          f"{max(backlog.values(), default=0)} alerts)")
    return delay


async def test_database_cut_for_10s_under_load(tmp_path, postgres_url, fake_bot_api, trained_data_dir):
    """PostgreSQL unreachable for 10 s under load: webhooks answer 5xx so Telegram redelivers; afterwards
    everything is processed exactly once and the alerts stuck in the outage go out within seconds."""
    url = make_url(postgres_url)
    proxy = TcpProxy(url.host or "127.0.0.1", url.port or 5432)
    await proxy.start()
    proxied = url.set(host="127.0.0.1", port=proxy.port).render_as_string(hide_password=False)
    cluster = await start_cluster(tmp_path, fake_bot_api, trained_data_dir, database_url=proxied,
                                  redis_url=TEST_REDIS_URL, admin_database_url=postgres_url)
    web, worker = cluster.webs[0], cluster.nodes[1]
    try:
        delivery = TelegramLikeDelivery(cluster)
        restored: list[datetime] = []

        async def outage() -> None:
            await asyncio.sleep(3)
            await proxy.cut()
            await asyncio.sleep(OUTAGE_SECONDS)
            await proxy.restore()
            restored.append(datetime.now(UTC))

        # 4 updates a second for 12 s: the cut lands in the middle of the load and of alert delivery.
        updates, _ = await asyncio.gather(
            steady_telegram(delivery, [USER_BASE + 2000 + i for i in range(48)], 4.0, time.monotonic() + 150),
            outage())
        assert delivery.rejections, "the outage was not noticed: no update was refused during it"
        assert all(status >= 500 for status in delivery.rejections), delivery.rejections
        await assert_alerts_prompt(postgres_url, restored[0])
        numbers = await check_invariants(cluster, fake_bot_api, updates, delivery, set())
        assert len(numbers) == len(updates)
        assert web.alive and worker.alive, "a process died during the outage"
        # The dispatcher rode the outage out itself instead of crashing into the supervisor's growing pauses.
        assert "worker notification-dispatcher crashed" not in worker.log()
        print(f"{len(delivery.rejections)} deliveries refused during the outage")
        exits = await asyncio.to_thread(cluster.stop_all)
        assert all(code == 0 for code in exits.values()), exits
    finally:
        await asyncio.to_thread(cluster.stop_all)
        await proxy.stop()


async def test_redis_down_under_load_degrades_and_recovers(tmp_path, postgres_url, fake_bot_api, trained_data_dir):
    """Redis unreachable for a while under load: webhooks are still answered 200 (in-process fallbacks),
    readiness says Redis is down, alerts keep going out; when Redis returns every process uses it again on
    its own and nothing was lost or sent twice."""
    redis = make_url(TEST_REDIS_URL.replace("redis://", "postgresql://"))  # only to parse host and port
    proxy = TcpProxy(redis.host or "127.0.0.1", redis.port or 6379)
    await proxy.start()
    proxied = f"redis://127.0.0.1:{proxy.port}/{redis.database or 0}"
    cluster = await start_cluster(tmp_path, fake_bot_api, trained_data_dir, database_url=postgres_url,
                                  redis_url=proxied, admin_database_url=postgres_url)
    web, worker = cluster.webs[0], cluster.nodes[1]
    try:
        assert proxy.connections > 0, "the processes do not reach Redis through the proxy"
        delivery = TelegramLikeDelivery(cluster)
        await proxy.cut()
        cut_at = time.monotonic()
        during = await steady_telegram(delivery, [USER_BASE + 3000 + i for i in range(24)], 4.0,
                                       time.monotonic() + 120)
        status, body = await readiness(web)
        assert status == 503 and "redis" in body["down"], body
        assert not delivery.rejections, f"updates refused while only Redis was down: {delivery.rejections}"

        async def some_alert_sent() -> bool:  # degraded, not stopped: alerts go out while Redis is away
            engine, sessions = await db_session(postgres_url)
            try:
                async with sessions() as s:
                    return bool(await s.scalar(select(func.count()).select_from(Notification).where(
                        Notification.kind == "ticket_alert", Notification.status == "sent")))
            finally:
                await engine.dispose()

        await wait_until(some_alert_sent, 30, "an alert to be sent while Redis is down")
        await asyncio.sleep(max(0.0, cut_at + OUTAGE_SECONDS - time.monotonic()))
        assert (await readiness(web))[0] == 503, "Redis came back on its own: the proxy did not cut it"
        await proxy.restore()
        recovered_at = datetime.now(UTC)
        connections_before = proxy.connections

        async def ready_again() -> bool:
            return (await readiness(web))[0] == 200

        await wait_until(ready_again, 30, "readiness after Redis returns")
        after = await steady_telegram(delivery, [USER_BASE + 3100 + i for i in range(12)], 4.0,
                                      time.monotonic() + 120)
        await assert_alerts_prompt(postgres_url, recovered_at)
        await check_invariants(cluster, fake_bot_api, during + after, delivery, set())
        assert "redis unavailable" in web.log() and "redis unavailable" in worker.log()

        async def worker_reconnected() -> bool:
            return "redis is back" in worker.log() and "redis is back" in web.log()

        await wait_until(worker_reconnected, 30, "both processes to use Redis again")
        assert proxy.connections > connections_before
        assert web.alive and worker.alive
        assert "worker notification-dispatcher crashed" not in worker.log()
        exits = await asyncio.to_thread(cluster.stop_all)
        assert all(code == 0 for code in exits.values()), exits
    finally:
        await asyncio.to_thread(cluster.stop_all)
        await proxy.stop()
