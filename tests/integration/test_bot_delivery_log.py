"""The webhook's record of handled updates (bot/delivery_log.py), on both backends: one row per update, the
first mark wins, and the mark is committed whether it goes through the autocommit reader or a unit of work."""

from __future__ import annotations

import dataclasses

from sqlalchemy import func, select

from bot.delivery_log import SOURCE, already_processed, mark_processed
from storage.models import ProcessedUpdate


async def _rows(services, key: str) -> list[ProcessedUpdate]:
    async with services.uow() as uow:
        return list(await uow.session.scalars(
            select(ProcessedUpdate).where(ProcessedUpdate.source == SOURCE, ProcessedUpdate.key == key)))


async def test_mark_is_committed_and_seen(services):
    ctx = services.ctx
    assert not await already_processed(ctx, "101")
    await mark_processed(ctx, "101", "done", None, 1)
    assert await already_processed(ctx, "101")
    [row] = await _rows(services, "101")
    assert (row.status, row.error, row.attempts) == ("done", None, 1)
    assert row.processed_at is not None
    assert not await already_processed(ctx, "102")


async def test_second_mark_of_the_same_update_changes_nothing(services):
    ctx = services.ctx
    await mark_processed(ctx, "201", "failed", "RuntimeError: boom", 3)
    await mark_processed(ctx, "201", "done", None, 1)  # a concurrent delivery that finished later
    [row] = await _rows(services, "201")
    assert (row.status, row.error, row.attempts) == ("failed", "RuntimeError: boom", 3)


async def test_mark_without_a_reader_commits_through_a_unit_of_work(services):
    ctx = dataclasses.replace(services.ctx, reader=None)  # ctx.read() is then an ordinary transaction
    await mark_processed(ctx, "301", "done", None, 2)
    assert await already_processed(services.ctx, "301")
    async with services.uow() as uow:
        count = await uow.session.scalar(select(func.count()).select_from(ProcessedUpdate))
    assert count == 1
