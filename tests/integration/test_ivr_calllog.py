"""The call log's new calls, written in shared batches (one statement per batch on PostgreSQL), on both
backends: every call gets exactly one `Call` and one `Interaction`, also when the provider repeats the
first webhook, in the same batch or later."""

from __future__ import annotations

import asyncio

from sqlalchemy import func, select

from ivr.calllog import CallLog
from storage.models import Call, Interaction


async def test_new_calls_logged_together_once_each_with_their_rows(demo_services) -> None:
    ctx = demo_services.ctx
    log = CallLog(ctx)
    await log.start("CAearlier", None, "+79990000000", "+74950000000", "unknown_caller")
    sids = [f"CAbatch{i:02d}" for i in range(30)]
    starts = [log.start(sid, 1 if i % 2 else None, f"+7916123{i:04d}", "+74950000000",
                        "identified_by_phone" if i % 2 else "unknown_caller") for i, sid in enumerate(sids)]
    repeats = [log.start(sid, None, "+79990000000", "+74950000000", "unknown_caller")
               for sid in (sids[0], sids[5], "CAearlier")]  # the provider repeated these webhooks
    await asyncio.gather(*starts, *repeats)

    async with ctx.uow() as uow:
        session = uow.session
        assert await session.scalar(select(func.count()).select_from(Call)) == 31
        assert await session.scalar(select(func.count()).select_from(Interaction)
                                    .where(Interaction.channel == "ivr")) == 31
        calls = {c.call_sid: c for c in (await session.scalars(select(Call))).all()}
        interactions = {i.id: i for i in (await session.scalars(select(Interaction))).all()}
    for i, sid in enumerate(sids):
        call = calls[sid]
        assert call.status == "in-progress" and call.to_number == "+74950000000"
        assert call.customer_id == (1 if i % 2 else None) and call.from_number == f"+7916123{i:04d}"
        assert call.path == {"steps": ["identified_by_phone" if i % 2 else "unknown_caller"]}
        assert call.started_at is not None and call.started_at.tzinfo is not None
        interaction = interactions[call.interaction_id]
        assert interaction.external_id == f"ivr:{sid}" and interaction.outcome == "call"
        assert interaction.customer_id == call.customer_id and interaction.sender == call.from_number
    assert calls["CAearlier"].path == {"steps": ["unknown_caller"]}
