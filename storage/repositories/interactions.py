from __future__ import annotations

from sqlalchemy import bindparam, select

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


class CallRepository(Repository):
    async def by_sid(self, call_sid: str) -> Call | None:
        return await self.session.scalar(select(Call).where(Call.call_sid == call_sid))


_PROCESSED = select(ProcessedUpdate).where(ProcessedUpdate.source == bindparam("source"),
                                           ProcessedUpdate.key == bindparam("key"))


class ProcessedUpdateRepository(Repository):
    async def get(self, source: str, key: str) -> ProcessedUpdate | None:
        # Asked for every webhook delivery (was it processed already?): a statement built once.
        return await self.session.scalar(_PROCESSED, {"source": source, "key": key})
