"""aiogram FSM storage that survives a Redis outage.

Conversation state (which step of a dialogue a user is in) lives in Redis so that any web process can serve
any update. When Redis cannot be reached, state is kept in this process instead, with a logged error, and
Redis is used again as soon as it answers: a user may have to repeat a step, but no update fails because of
the outage. (The Telegram adapter uses this; it lives here with the other Redis interfaces.)
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from aiogram.fsm.storage.base import BaseStorage, StateType, StorageKey
from aiogram.fsm.storage.memory import MemoryStorage

from storage.kv import _Outage, _redis_errors


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
