"""aiogram FSM storage that survives a Redis outage.

Conversation state (which step of a dialogue a user is in) lives in Redis so that any web process can serve
any update. When Redis cannot be reached, state is kept in this process instead, with a logged error, and
Redis is used again as soon as it answers: a user may have to repeat a step, but no update fails because of
the outage. (The Telegram adapter uses this; it lives here with the other Redis interfaces.)
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from aiogram.exceptions import DataNotDictLikeError
from aiogram.fsm.state import State
from aiogram.fsm.storage.base import BaseStorage, StateType, StorageKey
from aiogram.fsm.storage.memory import MemoryStorage
from aiogram.fsm.storage.redis import RedisStorage

from storage.kv import _Outage, _redis_errors, pipelined_commands


class PipelinedRedisStorage(RedisStorage):
    """aiogram's RedisStorage (the same keys, values and expiry), with the commands of concurrent updates sent
    together in one pipeline (storage.kv.pipelined_commands): every update reads its state (aiogram's FSM
    middleware) and most read their data, two round trips each when sent one by one."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._commands = pipelined_commands(self.redis)

    async def _run(self, name: str, *args: Any, **options: Any) -> Any:
        return await self._commands.submit((name, args, options))

    async def set_state(self, key: StorageKey, state: StateType = None) -> None:
        redis_key = self.key_builder.build(key, "state")
        if state is None:
            await self._run("delete", redis_key)
        else:
            await self._run("set", redis_key, state.state if isinstance(state, State) else state, ex=self.state_ttl)

    async def get_state(self, key: StorageKey) -> str | None:
        value = await self._run("get", self.key_builder.build(key, "state"))
        return value.decode("utf-8") if isinstance(value, bytes) else value

    async def set_data(self, key: StorageKey, data: Mapping[str, Any]) -> None:
        if not isinstance(data, dict):
            raise DataNotDictLikeError(f"Data must be a dict or dict-like object, got {type(data).__name__}")
        redis_key = self.key_builder.build(key, "data")
        if not data:
            await self._run("delete", redis_key)
        else:
            await self._run("set", redis_key, self.json_dumps(data), ex=self.data_ttl)

    async def get_data(self, key: StorageKey) -> dict[str, Any]:
        value = await self._run("get", self.key_builder.build(key, "data"))
        if value is None:
            return {}
        return dict(self.json_loads(value.decode("utf-8") if isinstance(value, bytes) else value))


class ResilientFsmStorage(BaseStorage):
    def __init__(self, primary: BaseStorage, fallback: BaseStorage | None = None) -> None:
        self._primary = primary
        self._fallback = fallback or MemoryStorage()
        self._outage = _Outage("conversation state")
        self._errors = _redis_errors()

    async def _call(self, name: str, *args: Any) -> Any:
        try:
            result = await getattr(self._primary, name)(*args)
        except self._errors as exc:
            self._outage.failed(exc)
            return await getattr(self._fallback, name)(*args)
        self._outage.recovered()
        return result

    async def set_state(self, key: StorageKey, state: StateType = None) -> None:
        await self._call("set_state", key, state)

    async def get_state(self, key: StorageKey) -> str | None:
        return await self._call("get_state", key)

    async def set_data(self, key: StorageKey, data: Mapping[str, Any]) -> None:
        await self._call("set_data", key, data)

    async def get_data(self, key: StorageKey) -> dict[str, Any]:
        return await self._call("get_data", key)

    async def close(self) -> None:
        try:
            await self._primary.close()
        finally:
            await self._fallback.close()
