"""Telegram's flood limits, shared by every dispatcher process through `ctx.kv` (Redis when configured).

- overall: at most one message per 1/29 s slot, so any sliding second holds at most 30 (29/s sustained);
- a private chat: one message per 1.05 s; a group (negative chat id): one per 3.05 s, i.e. < 20 a minute.
The small margins absorb network jitter between our clock and Telegram's.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass

from storage.kv import KeyValueBackends


@dataclass(frozen=True)
class TelegramLimits:
    messages_per_second: float = 29.0
    chat_interval: float = 1.05
    group_interval: float = 3.05


class DeliveryPacer:
    def __init__(self, kv: KeyValueBackends, limits: TelegramLimits = TelegramLimits()) -> None:
        self._kv, self.limits = kv, limits
        # One task per process asks the shared limiter at a time; the others queue here, not on Redis.
        self._global = asyncio.Lock()

    def interval(self, chat_id: int) -> float:
        return self.limits.group_interval if chat_id < 0 else self.limits.chat_interval

    async def acquire_chat(self, chat_id: int, max_wait: float) -> bool:
        """Wait (up to `max_wait` s) for this chat's next free moment; False when it is further away."""
        key, interval = f"tg:chat:{chat_id}", self.interval(chat_id)
        deadline = time.monotonic() + max_wait
        while True:
            if await self._kv.kv.set_if_absent(key, "1", ttl=interval):
                return True
            if time.monotonic() >= deadline:
                return False
            await asyncio.sleep(min(0.05, interval / 10))

    async def block_chat(self, chat_id: int, seconds: float) -> None:
        """Telegram said "retry after": nobody sends to this chat before then."""
        await self._kv.kv.set(f"tg:chat:{chat_id}", "1", ttl=max(seconds, self.interval(chat_id)))

    async def acquire_global(self) -> None:
        slot = 1.0 / self.limits.messages_per_second
        async with self._global:
            while True:
                wait = await self._kv.rate_limiter.hit("tg:global", 1, slot)
                if wait <= 0:
                    return
                await asyncio.sleep(wait)
