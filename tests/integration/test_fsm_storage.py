"""Conversation state keeps working through a Redis outage and returns to Redis afterwards."""

from aiogram.fsm.storage.base import StorageKey
from aiogram.fsm.storage.memory import MemoryStorage
from aiogram.fsm.storage.redis import RedisStorage

from storage.fsm import ResilientFsmStorage

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
