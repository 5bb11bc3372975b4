from __future__ import annotations

from sqlalchemy import select

from storage.models import Account, Customer, CustomerPhone
from storage.repositories.base import Repository


class CustomerRepository(Repository):
    async def get(self, customer_id: int) -> Customer | None:
        return await self.session.get(Customer, customer_id)

    async def by_telegram_id(self, telegram_user_id: int) -> Customer | None:
        return await self.session.scalar(select(Customer).where(Customer.telegram_user_id == telegram_user_id))

    async def by_phone(self, phone_e164: str) -> list[Customer]:
        """Customers with this phone, merged duplicates left out."""
        rows = await self.session.scalars(
            select(Customer)
            .join(CustomerPhone, CustomerPhone.customer_id == Customer.id)
            .where(CustomerPhone.phone == phone_e164, Customer.merged_into_id.is_(None))
            .order_by(Customer.id)
        )
        return list(rows.unique())

    async def by_email(self, email: str) -> list[Customer]:
        rows = await self.session.scalars(
            select(Customer).where(Customer.email == email.strip().lower(), Customer.merged_into_id.is_(None))
        )
        return list(rows)


class AccountRepository(Repository):
    async def get(self, account_id: int) -> Account | None:
        return await self.session.get(Account, account_id)

    async def by_number(self, number: str) -> Account | None:
        return await self.session.scalar(select(Account).where(Account.number == number.strip()))

    async def for_customer(self, customer_id: int) -> list[Account]:
        rows = await self.session.scalars(
            select(Account).where(Account.customer_id == customer_id).order_by(Account.id)
        )
        return list(rows)
