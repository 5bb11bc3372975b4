import asyncio

import pytest

from storage.kv import (
    KeyValueBackends,
    MemoryKeyValue,
    RedisKeyValue,
    RedisLocks,
    ResilientKeyValue,
    ResilientLocks,
)


async def test_key_value_ttl_and_set_if_absent(kv_backends):
    kv = kv_backends.kv
    await kv.set("a", "1", ttl=0.2)
    assert await kv.get("a") == "1"
    assert not await kv.set_if_absent("a", "2", ttl=5)
    await asyncio.sleep(0.3)
    assert await kv.get("a") is None
    assert await kv.set_if_absent("a", "3", ttl=5)
    assert await kv.get("a") == "3"
    await kv.delete("a")
    assert await kv.get("a") is None


async def test_counters_expire(kv_backends):
    kv = kv_backends.kv
    assert [await kv.incr("c", ttl=0.3) for _ in range(3)] == [1, 2, 3]
    await asyncio.sleep(0.4)
    assert await kv.incr("c", ttl=0.3) == 1


async def test_locks_are_exclusive_and_expire(kv_backends):
    locks = kv_backends.locks
    async with locks.hold("job", ttl=5) as first:
        assert first
        async with locks.hold("job", ttl=5) as second:
            assert not second
    async with locks.hold("job", ttl=5) as again:
        assert again
    async with locks.hold("short", ttl=0.2) as held:
        assert held
        async with locks.hold("short", ttl=1, wait=1.0) as waited:
            assert waited  # the first holder's TTL ran out while we waited


async def test_rate_limiter_counts_per_window(kv_backends):
    limiter = kv_backends.rate_limiter
    results = [await limiter.hit("user:1", limit=3, window=10) for _ in range(5)]
    assert results[:3] == [0, 0, 0]
    assert all(0 < r <= 10 for r in results[3:])
    assert await limiter.hit("user:2", limit=3, window=10) == 0


async def test_pubsub_delivers_to_subscribers(kv_backends):
    received: list[str] = []

    async def listen():
        async for message in kv_backends.pubsub.subscribe("wake"):
            received.append(message)
            return

    task = asyncio.create_task(listen())
    for _ in range(50):  # publish until the subscription is live
        await kv_backends.pubsub.publish("wake", "outbox")
        await asyncio.sleep(0.05)
        if task.done():
            break
    await asyncio.wait_for(task, 2)
    assert received == ["outbox"]


@pytest.fixture
def dead_redis():
    from redis.asyncio import Redis

    return Redis.from_url("redis://127.0.0.1:1/0", socket_connect_timeout=0.2, socket_timeout=0.2)


async def test_lost_redis_degrades_to_in_process_twin(dead_redis, caplog):
    kv = ResilientKeyValue(RedisKeyValue(dead_redis), MemoryKeyValue())
    await kv.set("k", "v", ttl=10)
    assert await kv.get("k") == "v"
    assert await kv.incr("n", ttl=10) == 1
    assert "redis unavailable" in caplog.text
    locks = ResilientLocks(RedisLocks(dead_redis))
    async with locks.hold("x", ttl=1) as held:
        assert held


async def test_redis_comes_back(dead_redis):
    """After an outage the primary is used again as soon as it answers."""
    primary = MemoryKeyValue()
    flaky = ResilientKeyValue(RedisKeyValue(dead_redis))
    await flaky.set("k", "during-outage")
    flaky._primary = primary  # the server is reachable again
    await flaky.set("k", "after")
    assert await primary.get("k") == "after"


def test_in_process_backends_need_no_server():
    backends = KeyValueBackends.in_process()
    assert backends.redis is None


async def test_concurrent_commands_each_get_their_own_answer(kv_backends):
    kv = kv_backends.kv
    won = await asyncio.gather(*(kv.set_if_absent("once", str(i), ttl=5) for i in range(50)))
    assert won.count(True) == 1
    await asyncio.gather(*(kv.set(f"k{i}", str(i), ttl=5) for i in range(50)))
    values = await asyncio.gather(*(kv.get(f"k{i}") for i in range(50)), kv.get("once"))
    assert values == [str(i) for i in range(50)] + [str(won.index(True))]
    await asyncio.gather(*(kv.delete(f"k{i}") for i in range(0, 50, 2)))
    assert [await kv.get(f"k{i}") for i in range(4)] == [None, "1", None, "3"]


async def test_redis_commands_asked_together_share_a_pipeline_and_fail_alone(kv_backends):
    """Concurrent commands go to Redis as one pipeline; a command Redis refuses fails only its caller."""
    import uuid

    from redis.exceptions import ResponseError

    if kv_backends.redis is None:
        pytest.skip("needs Redis (TEST_REDIS_URL)")
    pipelines: list[int] = []

    client, prefix = kv_backends.redis, f"fotest:{uuid.uuid4().hex[:8]}:"
    kv = RedisKeyValue(client, prefix)
    run = kv._commands._process

    async def counted(commands):  # type: ignore[no-untyped-def]
        pipelines.append(len(commands))
        return await run(commands)

    kv._commands._process = counted
    try:
        await client.rpush(prefix + "a-list", "x")  # GET on a list: Redis answers WRONGTYPE
        outcomes = await asyncio.gather(*(kv.set(f"s{i}", str(i), ttl=5) for i in range(40)), kv.get("a-list"),
                                        *(kv.get(f"s{i}") for i in range(40)), return_exceptions=True)
        assert isinstance(outcomes[40], ResponseError)
        assert outcomes[:40] == [None] * 40 and outcomes[41:] == [str(i) for i in range(40)]
        assert sum(pipelines) == 81 and len(pipelines) < 81 // 4
    finally:
        keys = [key async for key in client.scan_iter(match=f"{prefix}*")]
        if keys:
            await client.delete(*keys)
