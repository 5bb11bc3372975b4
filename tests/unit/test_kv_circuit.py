"""A Redis that hangs (accepts connections, never answers) must not cost every request its socket timeout."""

import asyncio
import time

import pytest

from storage import kv as kv_module
from storage.kv import MemoryKeyValue, MemoryPubSub, ResilientKeyValue, ResilientPubSub


class FlakyRedis(MemoryKeyValue):
    """The primary store: answers, hangs then times out, or refuses at once."""

    def __init__(self) -> None:
        super().__init__()
        self.mode = "up"  # up | hang | refuse
        self.calls = 0

    async def get(self, key: str) -> str | None:
        self.calls += 1
        if self.mode == "hang":
            await asyncio.sleep(0.3)
            raise TimeoutError("redis did not answer")
        if self.mode == "refuse":
            raise ConnectionRefusedError("connection refused")
        return await super().get(key)


@pytest.fixture(autouse=True)
def short_timings(monkeypatch):
    monkeypatch.setattr(kv_module, "SLOW_FAILURE_SECONDS", 0.2)


async def test_after_a_hang_calls_skip_redis_then_one_probe_finds_it_back():
    primary, fallback = FlakyRedis(), MemoryKeyValue()
    await primary.set("k", "redis")
    await fallback.set("k", "local")
    store = ResilientKeyValue(primary, fallback)
    store._outage.cool_off = 0.5

    primary.mode = "hang"
    started = time.monotonic()
    assert await store.get("k") == "local"  # the one call that waited for the hang
    assert time.monotonic() - started >= 0.3
    started = time.monotonic()
    assert [await store.get("k") for _ in range(20)] == ["local"] * 20
    assert time.monotonic() - started < 0.2 and primary.calls == 1  # nobody else waited

    primary.mode = "up"
    await asyncio.sleep(0.55)
    assert await store.get("k") == "redis"  # the probe after the cool-off
    assert await store.get("k") == "redis" and primary.calls == 3


async def test_a_refusing_redis_is_retried_on_every_call():
    """Refusals are instant, so each call tries Redis and the first that works ends the outage."""
    primary = FlakyRedis()
    store = ResilientKeyValue(primary, MemoryKeyValue())
    primary.mode = "refuse"
    for _ in range(5):
        assert await store.get("k") is None
    assert primary.calls == 5
    primary.mode = "up"
    await primary.set("k", "redis")
    assert await store.get("k") == "redis"


async def test_only_one_caller_probes_and_a_cancelled_probe_does_not_block_redis_for_good():
    primary = FlakyRedis()
    store = ResilientKeyValue(primary, MemoryKeyValue())
    store._outage.cool_off = 0.1
    primary.mode = "hang"
    await store.get("k")
    await asyncio.sleep(0.15)
    probe = asyncio.create_task(store.get("k"))  # claims the probe and hangs
    await asyncio.sleep(0.05)
    assert await store.get("k") is None and primary.calls == 2  # a second caller does not wait on Redis
    probe.cancel()
    with pytest.raises(asyncio.CancelledError):
        await probe
    primary.mode = "up"
    await primary.set("k", "redis")
    assert await store.get("k") == "redis"


async def test_wake_ups_are_not_delayed_by_a_hanging_redis():
    class HangingPubSub(MemoryPubSub):
        calls = 0

        async def publish(self, channel: str, message: str) -> None:
            HangingPubSub.calls += 1
            await asyncio.sleep(0.3)
            raise TimeoutError("redis did not answer")

    pubsub = ResilientPubSub(HangingPubSub())
    await pubsub.publish("outbox", "new")
    started = time.monotonic()
    for _ in range(10):
        await pubsub.publish("outbox", "new")
    assert time.monotonic() - started < 0.1 and HangingPubSub.calls == 1
