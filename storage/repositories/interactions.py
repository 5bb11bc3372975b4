from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import bindparam, insert, select

from storage.models import Call, Interaction, ProcessedUpdate
from storage.repositories.base import Repository


class InteractionRepository(Repository):
    async def recent_for_customer(self, customer_id: int, limit: int = 5) -> list[Interaction]:
        rows = await self.session.scalars(
            select(Interaction)
            .where(Interaction.customer_id == customer_id)
            .order_by(Interaction.created_at.desc(), Interaction.id.desc())
            .limit(limit)
        )
        return list(rows)

    async def by_external_id(self, external_id: str) -> Interaction | None:
        return await self.session.scalar(select(Interaction).where(Interaction.external_id == external_id))


@dataclass(frozen=True)
class StartedCall:
    """A call that just came in: its `Call` row and its `Interaction` (channel "ivr", external id "ivr:<sid>")."""

    sid: str
    customer_id: int | None
    from_number: str | None
    to_number: str | None
    first_step: str
    at: datetime


# PostgreSQL: a batch of new calls in one statement, the columns passed as arrays. Python builds six lists
# instead of ORM rows, and the server pairs each interaction with its call by external id. A call that is
# already logged (a repeated webhook, in this batch or an earlier one) is left as it is.
_START_CALLS_PG = """
WITH started (sid, customer_id, from_number, to_number, path, at) AS (
    SELECT * FROM unnest($1::text[], $2::integer[], $3::text[], $4::text[], $5::text[], $6::timestamptz[])
), logged AS (
    INSERT INTO interactions (channel, customer_id, sender, external_id, text, outcome, created_at)
    SELECT 'ivr', customer_id, from_number, 'ivr:' || sid, '', 'call', at FROM started
    ON CONFLICT (external_id) DO NOTHING
    RETURNING id, external_id
)
INSERT INTO calls (call_sid, customer_id, interaction_id, from_number, to_number, status, path, started_at)
SELECT s.sid, s.customer_id, l.id, s.from_number, s.to_number, 'in-progress', s.path::json, s.at
FROM started s JOIN logged l ON l.external_id = 'ivr:' || s.sid
ON CONFLICT (call_sid) DO NOTHING
"""


class CallRepository(Repository):
    async def by_sid(self, call_sid: str) -> Call | None:
        return await self.session.scalar(select(Call).where(Call.call_sid == call_sid))

    async def add_started(self, calls: Sequence[StartedCall]) -> None:
        """Write the rows of new calls: one interaction and one call each.

        PostgreSQL: one statement, atomic by itself, and a call logged already is skipped. As the unit of
        work's first statement it runs in autocommit: no BEGIN and COMMIT round trips (the unit of work's
        commit then has nothing left to do); after others, in their transaction. Elsewhere the rows are staged
        in the unit of work's transaction, and a call logged already makes the database refuse the batch
        (IntegrityError), so the caller can retry the others one by one."""
        if self.session.bind.dialect.name == "postgresql":
            await self._add_started_in_one_statement(calls)
            return
        rows = await self.session.execute(
            insert(Interaction).returning(Interaction.id, Interaction.external_id, sort_by_parameter_order=True),
            [{"channel": "ivr", "customer_id": c.customer_id, "sender": c.from_number,
              "external_id": f"ivr:{c.sid}", "text": "", "outcome": "call", "created_at": c.at} for c in calls])
        ids = {external_id: id_ for id_, external_id in rows}
        await self.session.execute(insert(Call), [
            {"call_sid": c.sid, "customer_id": c.customer_id, "interaction_id": ids[f"ivr:{c.sid}"],
             "from_number": c.from_number, "to_number": c.to_number, "status": "in-progress",
             "path": {"steps": [c.first_step]}, "started_at": c.at} for c in calls])

    async def _add_started_in_one_statement(self, calls: Sequence[StartedCall]) -> None:
        unique: dict[str, StartedCall] = {}
        for call in calls:  # a webhook repeated within the batch: the first delivery's row stands
            unique.setdefault(call.sid, call)
        rows = list(unique.values())
        first = not self.session.in_transaction()
        connection = await self.session.connection(
            execution_options={"isolation_level": "AUTOCOMMIT"} if first else None)
        await connection.exec_driver_sql(_START_CALLS_PG, (
            [c.sid for c in rows], [c.customer_id for c in rows], [c.from_number for c in rows],
            [c.to_number for c in rows], [json.dumps({"steps": [c.first_step]}) for c in rows],
            [c.at for c in rows]))


_PROCESSED = select(ProcessedUpdate).where(ProcessedUpdate.source == bindparam("source"),
                                           ProcessedUpdate.key == bindparam("key"))


class ProcessedUpdateRepository(Repository):
    async def get(self, source: str, key: str) -> ProcessedUpdate | None:
        # Asked for every webhook delivery (was it processed already?): a statement built once.
        return await self.session.scalar(_PROCESSED, {"source": source, "key": key})
