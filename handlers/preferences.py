"""A person's language preference, kept on their record so every channel answers in it."""

from __future__ import annotations

from config.business import LANGUAGES
from handlers.context import AppContext
from handlers.dto import InvalidRequest, NotFound


def _checked(language: str) -> str:
    if language not in LANGUAGES:
        raise InvalidRequest(f"unsupported language {language!r}")
    return language


async def set_client_language(ctx: AppContext, customer_id: int, language: str) -> None:
    language = _checked(language)
    async with ctx.uow() as uow:
        customer = await uow.customers.get(customer_id)
        if customer is None or customer.anonymised_at is not None:
            raise NotFound(f"customer {customer_id}")
        customer.language = language
        await uow.commit()


async def set_staff_language(ctx: AppContext, staff_id: int, language: str) -> None:
    language = _checked(language)
    async with ctx.uow() as uow:
        staff = await uow.staff.get(staff_id)
        if staff is None:
            raise NotFound(f"staff {staff_id}")
        staff.language = language
        await uow.commit()
