"""Conversation state keeps working through a Redis outage and returns to Redis afterwards."""

import asyncio
import uuid

import pytest
from aiogram.exceptions import DataNotDictLikeError
from aiogram.fsm.storage.base import DefaultKeyBuilder, StorageKey
from aiogram.fsm.storage.memory import MemoryStorage
from aiogram.fsm.storage.redis import RedisStorage

from bot.fsm import Problem
from storage.fsm import PipelinedRedisStorage, ResilientFsmStorage
from tests.conftest import TEST_REDIS_URL

KEY = StorageKey(bot_id=1, chat_id=42, user_id=42)


async def test_outage_falls_back_and_recovers(caplog):
    dead = RedisStorage.from_url("redis://127.0.0.1:1/0", connection_kwargs={"socket_connect_timeout": 0.2})
    storage = ResilientFsmStorage(dead)
    await storage.set_state(KEY, "Identify:pin")
    await storage.set_data(KEY, {"account": "200001"})
    assert await storage.get_state(KEY) == "Identify:pin"
    assert await storage.update_data(KEY, {"tries": 1}) == {"account": "200001", "tries": 1}
    assert "redis unavailable for conversation state" in caplog.text
    healthy = MemoryStorage()
    storage._primary = healthy  # Redis answers again
    await storage.set_state(KEY, "Problem:text")
    assert await healthy.get_state(KEY) == "Problem:text"
    await storage.close()


@pytest.mark.skipif(not TEST_REDIS_URL, reason="needs TEST_REDIS_URL")
async def test_pipelined_storage_is_interchangeable_with_aiogram_redis_storage() -> None:
    """Same keys, values and expiry as aiogram's RedisStorage (state written before an upgrade is still read),
    and concurrent reads share pipelines."""
    builder = DefaultKeyBuilder(prefix=f"fotest:{uuid.uuid4().hex[:8]}:fsm", with_bot_id=True)
    plain = RedisStorage.from_url(TEST_REDIS_URL, key_builder=builder, state_ttl=60, data_ttl=60)
    piped = PipelinedRedisStorage.from_url(TEST_REDIS_URL, key_builder=builder, state_ttl=60, data_ttl=60)
    try:
        await plain.set_state(KEY, "Identify:pin")
        await plain.set_data(KEY, {"account": "200001", "имя": "Анна"})
        assert await piped.get_state(KEY) == "Identify:pin"
        assert await piped.get_data(KEY) == {"account": "200001", "имя": "Анна"}
        other = StorageKey(bot_id=1, chat_id=43, user_id=43)
        await piped.set_state(other, Problem.text)
        await piped.set_data(other, {"n": 1})
        assert await plain.get_state(other) == "Problem:text" and await plain.get_data(other) == {"n": 1}
        assert 0 < await plain.redis.ttl(builder.build(other, "state")) <= 60
        assert 0 < await plain.redis.ttl(builder.build(other, "data")) <= 60
        await piped.set_state(other, None)
        await piped.set_data(other, {})
        assert await plain.get_state(other) is None and await plain.get_data(other) == {}
        assert await piped.update_data(KEY, {"tries": 2}) == {"account": "200001", "имя": "Анна", "tries": 2}
        with pytest.raises(DataNotDictLikeError):
            await piped.set_data(KEY, [1, 2])  # type: ignore[arg-type]
        batches: list[int] = []
        run = piped._commands._process

        async def counting(commands):  # type: ignore[no-untyped-def]
            batches.append(len(commands))
            return await run(commands)

        piped._commands._process = counting
        states = await asyncio.gather(*(piped.get_state(KEY) for _ in range(50)))
        assert states == ["Identify:pin"] * 50
        assert len(batches) < 50 and sum(batches) == 50
    finally:
        await plain.redis.delete(*[builder.build(k, part) for k in (KEY,) for part in ("state", "data")])
        await plain.close()
        await piped.close()
