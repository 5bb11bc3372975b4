from __future__ import annotations

from sqlalchemy import bindparam, select

from storage.models import Department, Staff
from storage.repositories.base import Repository

_BY_TELEGRAM_ID = select(Staff).where(Staff.telegram_id == bindparam("telegram_id"), Staff.is_active.is_(True))
_ON_DUTY_IDS = (select(Staff.id)
                .where(Staff.department_id == bindparam("department_id"), Staff.is_active.is_(True),
                       Staff.on_duty.is_(True))
                .order_by(Staff.id))


class DepartmentRepository(Repository):
    async def by_code(self, code: str) -> Department | None:
        return await self.session.scalar(select(Department).where(Department.code == code))

    async def get(self, department_id: int) -> Department | None:
        return await self.session.get(Department, department_id)

    async def all(self) -> list[Department]:
        return list(await self.session.scalars(select(Department).order_by(Department.id)))


class StaffRepository(Repository):
    async def get(self, staff_id: int) -> Staff | None:
        return await self.session.get(Staff, staff_id)

    async def by_telegram_id(self, telegram_id: int) -> Staff | None:
        # Asked on every Telegram update (is the sender staff?): a statement built once.
        return await self.session.scalar(_BY_TELEGRAM_ID, {"telegram_id": telegram_id})

    async def by_email(self, email: str) -> Staff | None:
        return await self.session.scalar(select(Staff).where(Staff.email == email.strip().lower()))

    async def on_duty_ids(self, department_id: int) -> list[int]:
        """Ids of a department's active staff on duty (who hears of a ticket without a group chat); ids only,
        as that runs for every such ticket."""
        return list(await self.session.scalars(_ON_DUTY_IDS, {"department_id": department_id}))

    async def in_department(self, department_id: int, *, on_duty_only: bool = False) -> list[Staff]:
        query = select(Staff).where(Staff.department_id == department_id, Staff.is_active.is_(True))
        if on_duty_only:
            query = query.where(Staff.on_duty.is_(True))
        return list(await self.session.scalars(query.order_by(Staff.id)))
