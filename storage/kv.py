"""Small interfaces over Redis (key-value with TTL, locks, rate limits, pub/sub wake-ups).

Each has an in-process twin used when REDIS_URL is unset, so the embedded default needs no server.
`Resilient*` wrappers keep the service up when Redis drops at run time: errors are logged (not more than
once every few seconds), the in-process twin stands in, and Redis is used again as soon as it answers.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from abc import ABC, abstractmethod
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from storage.batching import Batcher, Failure

log = logging.getLogger(__name__)


class KeyValueStore(ABC):
    @abstractmethod
    async def get(self, key: str) -> str | None: ...

    @abstractmethod
    async def set(self, key: str, value: str, ttl: float | None = None) -> None: ...

    @abstractmethod
    async def set_if_absent(self, key: str, value: str, ttl: float | None = None) -> bool:
        """Set only when the key does not exist; True when this call set it."""

    @abstractmethod
    async def delete(self, key: str) -> None: ...

    @abstractmethod
    async def incr(self, key: str, ttl: float) -> int:
        """Increment a counter; the TTL is set when the counter is created."""

    async def ping(self) -> None:  # noqa: B027 - the in-process twins are always reachable
        """Raise when the store cannot be reached."""


class Locks(ABC):
    @abstractmethod
    def hold(self, name: str, ttl: float, wait: float = 0.0) -> Any:
        """`async with locks.hold(name, ttl) as acquired:`; `acquired` is False when someone else has it."""


class PubSub(ABC):
    @abstractmethod
    async def publish(self, channel: str, message: str) -> None: ...

    @abstractmethod
    def subscribe(self, channel: str) -> AsyncIterator[str]: ...


class RateLimiter:
    """Fixed-window counters on top of any KeyValueStore."""

    def __init__(self, store: KeyValueStore, prefix: str = "rl:") -> None:
        self._store, self._prefix = store, prefix

    async def hit(self, key: str, limit: int, window: float) -> float:
        """Count one event; 0 when allowed, otherwise the seconds until the window resets."""
        now = time.time()
        slot = int(now // window)
        count = await self._store.incr(f"{self._prefix}{key}:{slot}", ttl=window * 2)
        if count <= limit:
            return 0.0
        return (slot + 1) * window - now


# ---------------------------------------------------------------- in-process twins


class MemoryKeyValue(KeyValueStore):
    def __init__(self) -> None:
        self._data: dict[str, tuple[str, float | None]] = {}
        self._last_sweep = time.monotonic()

    def _live(self, key: str) -> str | None:
        item = self._data.get(key)
        if item is None:
            return None
        value, expires = item
        if expires is not None and expires <= time.monotonic():
            del self._data[key]
            return None
        return value

    def _sweep(self) -> None:
        # Expired keys nobody reads again would otherwise stay forever.
        now = time.monotonic()
        if now - self._last_sweep < 30:
            return
        self._last_sweep = now
        for key in [k for k, (_, exp) in self._data.items() if exp is not None and exp <= now]:
            del self._data[key]

    def _expiry(self, ttl: float | None) -> float | None:
        return None if ttl is None else time.monotonic() + ttl

    async def get(self, key: str) -> str | None:
        return self._live(key)

    async def set(self, key: str, value: str, ttl: float | None = None) -> None:
        self._sweep()
        self._data[key] = (value, self._expiry(ttl))

    async def set_if_absent(self, key: str, value: str, ttl: float | None = None) -> bool:
        if self._live(key) is not None:
            return False
        await self.set(key, value, ttl)
        return True

    async def delete(self, key: str) -> None:
        self._data.pop(key, None)

    async def incr(self, key: str, ttl: float) -> int:
        current = self._live(key)
        if current is None:
            await self.set(key, "1", ttl)
            return 1
        value = int(current) + 1
        self._data[key] = (str(value), self._data[key][1])
        return value


class MemoryLocks(Locks):
    def __init__(self) -> None:
        self._held: dict[str, float] = {}

    @asynccontextmanager
    async def hold(self, name: str, ttl: float, wait: float = 0.0) -> AsyncIterator[bool]:
        deadline = time.monotonic() + wait
        while True:
            now = time.monotonic()
            expires = self._held.get(name)
            if expires is None or expires <= now:
                self._held[name] = now + ttl
                break
            if now >= deadline:
                yield False
                return
            await asyncio.sleep(min(0.05, max(0.0, deadline - now)))
        try:
            yield True
        finally:
            self._held.pop(name, None)


class MemoryPubSub(PubSub):
    def __init__(self) -> None:
        self._queues: dict[str, set[asyncio.Queue[str]]] = {}

    async def publish(self, channel: str, message: str) -> None:
        for queue in self._queues.get(channel, ()):
            queue.put_nowait(message)

    async def subscribe(self, channel: str) -> AsyncIterator[str]:
        queue: asyncio.Queue[str] = asyncio.Queue()
        self._queues.setdefault(channel, set()).add(queue)
        try:
            while True:
                yield await queue.get()
        finally:
            self._queues[channel].discard(queue)


# ---------------------------------------------------------------- Redis


Command = tuple[str, tuple[Any, ...], dict[str, Any]]


def pipelined_commands(client: Any) -> Batcher[Command, Any]:
    """Commands (name, args, options) asked at the same time go to Redis as one pipeline: one pool check-out,
    one write and one read for the lot instead of each on its own. Not a transaction: each command keeps its
    own meaning, and an error answer fails only its own caller."""

    async def run(commands: list[Command]) -> list[Any]:
        async with client.pipeline(transaction=False) as pipe:
            for name, args, options in commands:
                getattr(pipe, name)(*args, **options)
            results = await pipe.execute(raise_on_error=False)
        return [Failure(result) if isinstance(result, Exception) else result for result in results]

    return Batcher(run, max_batch=256, max_in_flight=4)


# INCR, and give the counter its time to live when it has none (just created, or left without one).
_INCR_WITH_TTL = """
local count = redis.call('INCR', KEYS[1])
if redis.call('PTTL', KEYS[1]) < 0 then redis.call('PEXPIRE', KEYS[1], ARGV[1]) end
return count
"""


class RedisKeyValue(KeyValueStore):
    def __init__(self, client: Any, prefix: str = "fo:") -> None:
        self._r, self._p = client, prefix
        # Commands asked at the same time (a busy web process asks one or two per request) go to Redis as one
        # pipeline: one pool check-out, one write and one read for the lot instead of each on its own. Not a
        # transaction: each command keeps its own meaning, and an error answer fails only its own caller.
        self._commands = pipelined_commands(client)

    async def get(self, key: str) -> str | None:
        value = await self._commands.submit(("get", (self._p + key,), {}))
        return value.decode() if isinstance(value, bytes) else value

    async def set(self, key: str, value: str, ttl: float | None = None) -> None:
        await self._commands.submit(("set", (self._p + key, value), {"px": int(ttl * 1000) if ttl else None}))

    async def set_if_absent(self, key: str, value: str, ttl: float | None = None) -> bool:
        return bool(await self._commands.submit(
            ("set", (self._p + key, value), {"nx": True, "px": int(ttl * 1000) if ttl else None})))

    async def delete(self, key: str) -> None:
        await self._commands.submit(("delete", (self._p + key,), {}))

    async def incr(self, key: str, ttl: float) -> int:
        # One script, so the increment and the expiry stay atomic and still travel in the shared pipeline
        # (the flood limit asks this for every Telegram update).
        count = await self._commands.submit(("eval", (_INCR_WITH_TTL, 1, self._p + key, int(ttl * 1000)), {}))
        return int(count)

    async def ping(self) -> None:
        await self._r.ping()


class RedisLocks(Locks):
    # Release only a lock we still own (it may have expired and been taken by someone else).
    _RELEASE = "if redis.call('get', KEYS[1]) == ARGV[1] then return redis.call('del', KEYS[1]) end return 0"

    def __init__(self, client: Any, prefix: str = "fo:lock:") -> None:
        self._r, self._p = client, prefix

    @asynccontextmanager
    async def hold(self, name: str, ttl: float, wait: float = 0.0) -> AsyncIterator[bool]:
        token, key = uuid.uuid4().hex, self._p + name
        deadline = time.monotonic() + wait
        acquired = False
        while True:
            acquired = bool(await self._r.set(key, token, nx=True, px=int(ttl * 1000)))
            if acquired or time.monotonic() >= deadline:
                break
            await asyncio.sleep(0.05)
        try:
            yield acquired
        finally:
            if acquired:
                await self._r.eval(self._RELEASE, 1, key, token)


class RedisPubSub(PubSub):
    def __init__(self, client: Any, prefix: str = "fo:") -> None:
        self._r, self._p = client, prefix

    async def publish(self, channel: str, message: str) -> None:
        await self._r.publish(self._p + channel, message)

    async def subscribe(self, channel: str) -> AsyncIterator[str]:
        pubsub = self._r.pubsub()
        await pubsub.subscribe(self._p + channel)
        try:
            while True:
                msg = await pubsub.get_message(ignore_subscribe_messages=True, timeout=1.0)
                if msg is not None:
                    data = msg["data"]
                    yield data.decode() if isinstance(data, bytes) else str(data)
        finally:
            await pubsub.aclose()


# ---------------------------------------------------------------- degradation


# A failure that took this long was a hang (Redis not answering), not a refusal.
SLOW_FAILURE_SECONDS = 0.5


class _Outage:
    """Logs a Redis outage once per interval instead of once per call, and short-circuits a hanging Redis.

    A refused connection fails in microseconds, so every call may keep trying Redis and the first one that
    works ends the outage. A Redis that accepts connections but does not answer costs each call its whole
    socket timeout (seconds, several times per request); after such a slow failure calls go straight to the
    fallback for `cool_off` seconds, and then a single call at a time probes Redis again.
    """

    def __init__(self, what: str, interval: float = 10.0, cool_off: float = 5.0) -> None:
        self.what, self.interval, self.cool_off, self._last = what, interval, cool_off, 0.0
        self.down = False
        self._skip_until = 0.0
        self._probing = False

    def skip(self) -> bool:
        """True when this call should not wait for Redis (a recent hang); lets one probe through after."""
        if not self._skip_until:
            return False
        if time.monotonic() < self._skip_until or self._probing:
            return True
        self._probing = True  # this caller probes; the others keep using the fallback meanwhile
        return False

    def released(self) -> None:
        """The call ended some other way (cancelled, a non-Redis error): not a verdict on Redis, but a probe
        in progress must not stay claimed, or every later call would skip Redis for good."""
        self._probing = False

    def failed(self, exc: BaseException, started: float | None = None) -> None:
        now = time.monotonic()
        if now - self._last >= self.interval:
            self._last = now
            log.error("redis unavailable for %s, using in-process fallback: %s", self.what, exc)
        self.down = True
        self._probing = False
        if started is not None and now - started >= SLOW_FAILURE_SECONDS:
            self._skip_until = now + self.cool_off

    def recovered(self) -> None:
        if self.down:
            log.warning("redis is back for %s", self.what)
        self.down = False
        self._skip_until, self._probing = 0.0, False


def _redis_errors() -> tuple[type[BaseException], ...]:
    from redis.exceptions import ConnectionError as RedisConnectionError
    from redis.exceptions import TimeoutError as RedisTimeoutError

    return (RedisConnectionError, RedisTimeoutError, OSError, asyncio.TimeoutError)


class ResilientKeyValue(KeyValueStore):
    def __init__(self, primary: KeyValueStore, fallback: KeyValueStore | None = None) -> None:
        self._primary, self._fallback = primary, fallback or MemoryKeyValue()
        self._outage, self._errors = _Outage("key-value"), _redis_errors()

    async def _call(self, name: str, *args: Any, **kwargs: Any) -> Any:
        if self._outage.skip():
            return await getattr(self._fallback, name)(*args, **kwargs)
        started = time.monotonic()
        try:
            result = await getattr(self._primary, name)(*args, **kwargs)
        except self._errors as exc:
            self._outage.failed(exc, started)
            return await getattr(self._fallback, name)(*args, **kwargs)
        except BaseException:
            self._outage.released()
            raise
        self._outage.recovered()
        return result

    async def get(self, key: str) -> str | None:
        return await self._call("get", key)

    async def set(self, key: str, value: str, ttl: float | None = None) -> None:
        await self._call("set", key, value, ttl)

    async def set_if_absent(self, key: str, value: str, ttl: float | None = None) -> bool:
        return await self._call("set_if_absent", key, value, ttl)

    async def delete(self, key: str) -> None:
        await self._call("delete", key)

    async def incr(self, key: str, ttl: float) -> int:
        return await self._call("incr", key, ttl)

    async def ping(self) -> None:
        await self._primary.ping()


class ResilientLocks(Locks):
    def __init__(self, primary: Locks, fallback: Locks | None = None) -> None:
        self._primary, self._fallback = primary, fallback or MemoryLocks()
        self._outage, self._errors = _Outage("locks"), _redis_errors()

    @asynccontextmanager
    async def hold(self, name: str, ttl: float, wait: float = 0.0) -> AsyncIterator[bool]:
        if self._outage.skip():
            async with self._fallback.hold(name, ttl, wait) as local:
                yield local
            return
        manager = self._primary.hold(name, ttl, wait)
        started = time.monotonic()
        try:
            acquired = await manager.__aenter__()
        except BaseException as exc:
            if not isinstance(exc, self._errors):
                self._outage.released()
                raise
            self._outage.failed(exc, started if wait <= 0 else None)
            async with self._fallback.hold(name, ttl, wait) as local:
                yield local
            return
        self._outage.recovered()
        try:
            yield acquired
        finally:
            try:
                await manager.__aexit__(None, None, None)
            except self._errors as exc:  # the lock expires by its TTL
                self._outage.failed(exc)


class ResilientPubSub(PubSub):
    """Publishing never fails the caller; subscribers reconnect with backoff.

    Wake-ups are an optimisation: every consumer also polls, so a lost wake-up only delays work.
    """

    def __init__(self, primary: PubSub) -> None:
        self._primary, self._local = primary, MemoryPubSub()
        self._outage, self._errors = _Outage("pub/sub"), _redis_errors()

    async def publish(self, channel: str, message: str) -> None:
        await self._local.publish(channel, message)
        if self._outage.skip():
            return  # a wake-up is an optimisation: not worth a hanging Redis's timeout
        started = time.monotonic()
        try:
            await self._primary.publish(channel, message)
        except self._errors as exc:
            self._outage.failed(exc, started)
        except BaseException:
            self._outage.released()
            raise
        else:
            self._outage.recovered()

    async def subscribe(self, channel: str) -> AsyncIterator[str]:
        delay = 0.5
        while True:
            try:
                async for message in self._primary.subscribe(channel):
                    delay = 0.5
                    yield message
            except self._errors as exc:
                self._outage.failed(exc)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 10.0)


class KeyValueBackends:
    """Everything the process needs from Redis or its twins, built once by the composition root."""

    def __init__(self, kv: KeyValueStore, locks: Locks, pubsub: PubSub, redis_client: Any = None) -> None:
        self.kv, self.locks, self.pubsub = kv, locks, pubsub
        self.rate_limiter = RateLimiter(kv)
        self.redis = redis_client

    @classmethod
    def in_process(cls) -> KeyValueBackends:
        return cls(MemoryKeyValue(), MemoryLocks(), MemoryPubSub())

    @classmethod
    def from_url(cls, url: str, prefix: str = "fo:") -> KeyValueBackends:
        from redis.asyncio import BlockingConnectionPool, Redis

        # A bounded pool: a burst of concurrent requests waits (up to 2 s) for one of 64 connections instead
        # of opening a connection per request (each new one costs a TCP handshake and client set-up, and a
        # hundred at once under load was enough to hit the connect timeout and flip to the fallback).
        pool = BlockingConnectionPool.from_url(url, max_connections=64, timeout=2, socket_connect_timeout=2,
                                               socket_timeout=2, health_check_interval=15)
        client = Redis.from_pool(pool)
        return cls(
            ResilientKeyValue(RedisKeyValue(client, prefix)),
            ResilientLocks(RedisLocks(client, prefix + "lock:")),
            ResilientPubSub(RedisPubSub(client, prefix)),
            redis_client=client,
        )

    async def ping(self) -> None:
        if self.redis is not None:
            await self.redis.ping()

    async def close(self) -> None:
        if self.redis is not None:
            await self.redis.aclose()
