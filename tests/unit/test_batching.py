"""Batching of concurrent back-end requests (storage.batching): shared round trips, answers to the right
caller, failures kept to their own batch or item, a caller's timeout harming nobody else."""

from __future__ import annotations

import asyncio

import pytest

from storage.batching import Batcher, Failure, coalescing


async def test_concurrent_items_share_batches_and_each_caller_gets_its_own_answer() -> None:
    batches: list[list[int]] = []

    async def square(items: list[int]) -> list[int]:
        batches.append(list(items))
        await asyncio.sleep(0.01)
        return [i * i for i in items]

    batcher = Batcher(square, max_batch=40, max_in_flight=1)
    results = await asyncio.gather(*(batcher.submit(i) for i in range(100)))
    assert results == [i * i for i in range(100)]
    assert len(batches) <= 4 and all(len(b) <= 40 for b in batches)  # not one round trip per item
    assert sorted(i for b in batches for i in b) == list(range(100))


async def test_alone_an_item_is_sent_at_once() -> None:
    async def echo(items: list[str]) -> list[str]:
        return items

    batcher = Batcher(echo)
    assert await asyncio.wait_for(batcher.submit("a"), 1) == "a"
    assert await asyncio.wait_for(batcher.submit("b"), 1) == "b"


async def test_at_most_max_in_flight_batches_run_at_once() -> None:
    running = peak = 0

    async def slow(items: list[int]) -> list[int]:
        nonlocal running, peak
        running += 1
        peak = max(peak, running)
        await asyncio.sleep(0.02)
        running -= 1
        return items

    batcher = Batcher(slow, max_batch=5, max_in_flight=2)
    assert await asyncio.gather(*(batcher.submit(i) for i in range(50))) == list(range(50))
    assert peak == 2


async def test_a_failed_batch_fails_its_callers_only_and_the_next_batch_runs() -> None:
    async def process(items: list[int]) -> list[int]:
        await asyncio.sleep(0.01)
        if 7 in items:
            raise ConnectionError("back end gone")
        return items

    batcher = Batcher(process, max_in_flight=1)
    first = asyncio.ensure_future(batcher.submit(7))
    await asyncio.sleep(0)  # the first batch (7 alone) is on its way; the next items gather behind it
    later = asyncio.gather(*(batcher.submit(i) for i in range(3)))
    with pytest.raises(ConnectionError):
        await first
    assert await later == [0, 1, 2]


async def test_an_item_can_fail_alone() -> None:
    async def process(items: list[int]) -> list[object]:
        return [Failure(ValueError(i)) if i % 2 else i for i in items]

    batcher = Batcher(process)
    outcomes = await asyncio.gather(*(batcher.submit(i) for i in range(4)), return_exceptions=True)
    assert outcomes[0] == 0 and outcomes[2] == 2
    assert isinstance(outcomes[1], ValueError) and isinstance(outcomes[3], ValueError)


async def test_a_process_that_answers_the_wrong_number_of_items_fails_its_callers_instead_of_hanging() -> None:
    async def short(items: list[int]) -> list[int]:
        return items[1:]

    batcher = Batcher(short)
    with pytest.raises(RuntimeError):
        await asyncio.wait_for(batcher.submit(1), 1)


async def test_a_caller_that_gives_up_does_not_disturb_the_batch() -> None:
    async def slow(items: list[int]) -> list[int]:
        await asyncio.sleep(0.05)
        return items

    batcher = Batcher(slow)
    impatient = asyncio.ensure_future(asyncio.wait_for(batcher.submit(1), 0.01))
    patient = asyncio.ensure_future(batcher.submit(2))
    with pytest.raises(TimeoutError):
        await impatient
    assert await patient == 2


def test_a_batcher_survives_its_event_loop() -> None:
    """A new event loop (tests, a CLI command run twice) starts afresh instead of waiting on a batch that an
    old loop left running."""
    never = asyncio.Event()

    async def stuck_in_the_first_loop(items: list[int]) -> list[int]:
        if items == [1]:
            await never.wait()
        return items

    batcher = Batcher(stuck_in_the_first_loop, max_in_flight=1)
    old = asyncio.new_event_loop()
    try:
        first = old.create_task(batcher.submit(1))
        old.run_until_complete(asyncio.sleep(0.01))  # the batch [1] is running, and stays so
        assert asyncio.run(asyncio.wait_for(batcher.submit(2), 1)) == 2
    finally:
        never.set()
        assert old.run_until_complete(first) == 1
        old.close()


async def test_coalescing_asks_each_key_once_and_answers_missing_keys_with_the_default() -> None:
    asked: list[list[str]] = []

    async def fetch(keys: list[str]) -> dict[str, int]:
        asked.append(keys)
        return {key: len(key) for key in keys if key != "missing"}

    lookups = coalescing(fetch, -1, max_in_flight=1)
    results = await asyncio.gather(*(lookups.submit(k) for k in ["ab", "abc", "ab", "missing", "ab"]))
    assert results == [2, 3, 2, -1, 2]
    assert all(len(keys) == len(set(keys)) for keys in asked)
