from __future__ import annotations

from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession


class Repository:
    """Repositories query and stage changes; they never commit (the unit of work does)."""

    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    def add(self, obj: Any) -> None:
        self.session.add(obj)

    async def flush(self) -> None:
        await self.session.flush()
