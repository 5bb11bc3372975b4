"""One-time invite codes that link a staff member's Telegram account (`/start <code>` in the bot).

Only a hash of the code is stored: a leaked database does not leak usable invites. A code works once and
expires; redeeming it moves the Telegram id from any other staff record (one person, one account).
"""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import select, update

from handlers.context import AppContext
from handlers.dto import InvalidRequest, NotFound, StaffProfile
from storage.models import Staff, StaffInvite

INVITE_VALIDITY = timedelta(days=7)
# Telegram deep-link parameters allow [A-Za-z0-9_-] up to 64 characters.
_CODE_BYTES = 18


@dataclass(frozen=True)
class StaffInviteCode:
    staff_id: int
    email: str
    name: str
    code: str
    expires_at: datetime


def _hash(code: str) -> str:
    return hashlib.sha256(code.strip().encode()).hexdigest()


def staff_profile_of(staff: Staff) -> StaffProfile:
    return StaffProfile(
        staff_id=staff.id, name=staff.name, role=staff.role, department_id=staff.department_id,
        department_code=staff.department.code, language=staff.language, on_duty=staff.on_duty,
        telegram_id=staff.telegram_id,
    )


async def create_staff_invite(ctx: AppContext, email: str, *, valid_for: timedelta = INVITE_VALIDITY
                              ) -> StaffInviteCode:
    async with ctx.uow() as uow:
        staff = await uow.staff.by_email(email)
        if staff is None or not staff.is_active:
            raise NotFound(f"no active staff member with e-mail {email.strip()!r}")
        code = secrets.token_urlsafe(_CODE_BYTES)
        expires_at = ctx.clock() + valid_for
        uow.session.add(StaffInvite(staff_id=staff.id, code_hash=_hash(code), expires_at=expires_at))
        invite = StaffInviteCode(staff.id, staff.email, staff.name, code, expires_at)
        await uow.commit()
        return invite


async def redeem_staff_invite(ctx: AppContext, code: str, telegram_id: int) -> StaffProfile:
    """Link `telegram_id` to the invited staff member. InvalidRequest for an unknown, used or expired code."""
    if not code or len(code) > 64:
        raise InvalidRequest("malformed invite code")
    now = ctx.clock()
    async with ctx.uow() as uow:
        invite = await uow.session.scalar(
            select(StaffInvite).where(StaffInvite.code_hash == _hash(code)).with_for_update()
        )
        if invite is None or invite.used_at is not None or invite.expires_at <= now:
            raise InvalidRequest("invite code unknown, used or expired")
        staff = await uow.staff.get(invite.staff_id)
        if staff is None or not staff.is_active:
            raise InvalidRequest("the invited staff member is no longer active")
        if staff.telegram_id != telegram_id:
            await uow.session.execute(
                update(Staff).where(Staff.telegram_id == telegram_id, Staff.id != staff.id).values(telegram_id=None)
            )
            await uow.session.flush()
            staff.telegram_id = telegram_id
        staff.telegram_unreachable = False
        invite.used_at = now
        await uow.session.flush()
        profile = staff_profile_of(staff)
        await uow.commit()
        return profile
