"""Telegram's flood limits, shared by every dispatcher process through Redis (or in-process without it).

- overall: sends are *reserved* on one shared schedule, one every 1/29.2 s (GCRA-style: a Lua script keeps
  the next free moment in Redis; each caller gets its own moment and sleeps until then). Any 31 sends
  therefore span more than a second by a margin of ~27 ms, which absorbs network and event-loop jitter
  between our clock and Telegram's, while the sustained rate stays at 29.2/s;
- a private chat: one message per 1.05 s; a group (negative chat id): one per 3.05 s (< 20 a minute).
"""

from __future__ import annotations

import asyncio
import logging
import time
import weakref
from collections import deque
from dataclasses import dataclass

from storage.kv import KeyValueBackends

log = logging.getLogger(__name__)

_RESERVE = """
local nxt = tonumber(redis.call('GET', KEYS[1]) or '0')
local now = tonumber(ARGV[1])
if nxt < now then nxt = now end
redis.call('SET', KEYS[1], string.format('%.6f', nxt + tonumber(ARGV[2])), 'PX', 10000)
return string.format('%.6f', nxt)
"""


# Without Redis, every dispatcher of the process shares one schedule (per key-value backend).
_LOCAL_SCHEDULES: weakref.WeakKeyDictionary[KeyValueBackends, list[float]] = weakref.WeakKeyDictionary()
# When each of this process's recent sends actually left (a late wake-up must not bunch up with the next).
_RECENT_SENDS: weakref.WeakKeyDictionary[KeyValueBackends, deque[float]] = weakref.WeakKeyDictionary()
WINDOW_MARGIN = 0.03
WARN_INTERVAL = 10.0


@dataclass(frozen=True)
class TelegramLimits:
    messages_per_second: float = 29.2
    chat_interval: float = 1.05
    group_interval: float = 3.05


def _redis_prefix(kv: KeyValueBackends) -> str:
    primary = getattr(kv.kv, "_primary", kv.kv)
    return str(getattr(primary, "_p", "fo:"))


class DeliveryPacer:
    def __init__(self, kv: KeyValueBackends, limits: TelegramLimits = TelegramLimits()) -> None:
        self._kv, self.limits = kv, limits
        self._key = _redis_prefix(kv) + "tg:global:next"
        self._warned_at = float("-inf")

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

    async def pause_all(self, seconds: float) -> None:
        """A flood-wait for the whole bot: push the shared schedule back."""
        await self._reserve(seconds)

    async def acquire_global(self) -> None:
        at = await self._reserve(1.0 / self.limits.messages_per_second)
        delay = at - time.time()
        if delay > 0:
            await asyncio.sleep(delay)
        # Second guard, on real send times: any 31 of our sends (at 29.2/s) span at least 1.03 s. A send that woke
        # up late (a busy event loop) pushes the ones after it back instead of arriving together with them.
        limit = int(self.limits.messages_per_second) + 1
        recent = _RECENT_SENDS.get(self._kv)
        if recent is None or recent.maxlen != limit:
            recent = _RECENT_SENDS[self._kv] = deque(maxlen=limit)
        while len(recent) == limit:
            wait = recent[0] + 1.0 + WINDOW_MARGIN - time.monotonic()
            if wait <= 0:
                break
            await asyncio.sleep(wait)
        recent.append(time.monotonic())

    async def _reserve(self, step: float) -> float:
        """Take the next free moment on the shared schedule and move the schedule `step` seconds on."""
        now = time.time()
        redis = self._kv.redis
        if redis is not None:
            try:
                return float(await redis.eval(_RESERVE, 1, self._key, f"{now:.6f}", f"{step:.6f}"))
            except Exception as exc:  # Redis down: pace this process alone rather than stop
                # Once per interval, not once per message (up to 29 a second during an outage).
                now_mono = time.monotonic()
                if now_mono - self._warned_at >= WARN_INTERVAL:
                    self._warned_at = now_mono
                    log.warning("shared send schedule unavailable, pacing locally: %s", exc)
        schedule = _LOCAL_SCHEDULES.setdefault(self._kv, [0.0])
        at = max(schedule[0], now)
        schedule[0] = at + step
        return at
