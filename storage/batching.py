"""Batching of concurrent requests to a back end: many callers asking at once share one round trip.

Under load a hundred requests may each want one row by key (a caller's phone), one Redis command or one
row written. Sent one by one, each costs a pool check-out, a round trip and the driver's per-statement
overhead; sent together they cost about one. `Batcher.submit(item)` queues the item; while fewer than
`max_in_flight` batches are running a new one starts at the next turn of the event loop, taking everything
queued by then, otherwise the item waits for a running one to take it next. Alone, an item costs what it
would anyway; under load batches grow by themselves.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

T = TypeVar("T")
R = TypeVar("R")
K = TypeVar("K")
V = TypeVar("V")


@dataclass(frozen=True)
class Failure:
    """What `process` returns for an item that failed on its own (the others in its batch succeeded)."""

    error: Exception


class Batcher(Generic[T, R]):
    def __init__(self, process: Callable[[list[T]], Awaitable[list[Any]]], *, max_batch: int = 500,
                 max_in_flight: int = 1) -> None:
        """`process(items)` answers a batch: one result (or `Failure`) per item, in order. When it raises,
        every item of the batch fails with that exception."""
        self._process = process
        self._max_batch = max_batch
        self._max_in_flight = max_in_flight
        self._loop: asyncio.AbstractEventLoop | None = None
        self._queue: list[tuple[T, asyncio.Future[R]]] = []
        self._running: set[asyncio.Task[None]] = set()

    async def submit(self, item: T) -> R:
        loop = asyncio.get_running_loop()
        if loop is not self._loop:
            # A new event loop (a test, a CLI command run twice): whatever the old one left is unusable.
            self._loop, self._queue, self._running = loop, [], set()
        future: asyncio.Future[R] = loop.create_future()
        self._queue.append((item, future))
        if len(self._running) < self._max_in_flight:
            task = loop.create_task(self._drain())
            self._running.add(task)  # also keeps the task referenced while it runs
        return await future

    async def _drain(self) -> None:
        me = asyncio.current_task()
        try:
            while self._queue:
                batch, self._queue = self._queue[: self._max_batch], self._queue[self._max_batch:]
                await self._answer(batch)
        finally:
            self._running.discard(me)  # type: ignore[arg-type]

    async def _answer(self, batch: list[tuple[T, asyncio.Future[R]]]) -> None:
        try:
            results = await self._process([item for item, _ in batch])
            if len(results) != len(batch):  # a bug in `process`; its callers must not wait for ever
                raise RuntimeError(f"a batch of {len(batch)} items got {len(results)} answers")
        except asyncio.CancelledError:
            for _, future in batch:
                future.cancel()
            raise
        except Exception as exc:
            results = [Failure(exc)] * len(batch)
        for (_, future), result in zip(batch, results, strict=True):
            if future.done():  # its caller gave up waiting (a timeout cancelled it)
                continue
            if isinstance(result, Failure):
                future.set_exception(result.error)
            else:
                future.set_result(result)


def coalescing(fetch: Callable[[list[K]], Awaitable[Mapping[K, V]]], default: V, *, max_batch: int = 500,
               max_in_flight: int = 2) -> Batcher[K, V]:
    """Look-ups by key: `fetch(keys)` answers distinct keys at once (`WHERE key = ANY(...)`); a key it
    leaves out gets `default`. Callers asking for the same key share the answer."""

    async def process(keys: list[K]) -> list[V]:
        found = await fetch(list(dict.fromkeys(keys)))
        return [found.get(key, default) for key in keys]

    return Batcher(process, max_batch=max_batch, max_in_flight=max_in_flight)
