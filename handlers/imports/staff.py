"""Staff import: `email,name,department` required (department by code or by its name in any language);
`role,telegram_id,phone,on_duty,language` optional (on duty unless `on_duty` is false). Keyed by e-mail."""

from __future__ import annotations

from pathlib import Path

from sqlalchemy import select

from handlers.context import AppContext
from handlers.imports.common import (
    ImportReport,
    Progress,
    RowError,
    count_rows,
    need,
    parse_bool,
    parse_email,
    read_rows,
)
from handlers.phones import normalize_phone
from storage.models import Department, Staff

REQUIRED = ("email", "name", "department")
OPTIONAL = ("role", "telegram_id", "phone", "on_duty", "language")
ROLES = ("agent", "manager", "supervisor", "admin")


async def import_staff(ctx: AppContext, path: Path | str, *, progress: Progress | None = None) -> ImportReport:
    path = Path(path)
    report = ImportReport(kind="staff")
    total = count_rows(path)
    aliases: dict[str, str] = {}
    for dept in ctx.config.departments:
        for alias in (dept.code, dept.name.ru, dept.name.en):
            aliases[alias.strip().lower()] = dept.code
    async with ctx.uow() as uow:
        departments = {d.code: d.id for d in await uow.session.scalars(select(Department))}
        seen_telegram: dict[int, str] = {}
        for line, row in read_rows(path, REQUIRED, OPTIONAL):
            report.rows += 1
            try:
                if "__error__" in row:
                    raise RowError(row["__error__"])
                email = parse_email(need(row, "email", 254))
                name = need(row, "name", 200)
                code = aliases.get(need(row, "department", 200).lower())
                if code is None or code not in departments:
                    raise RowError(f"department {row['department']!r} is neither a department code nor a name")
                role = (row.get("role") or "agent").lower()
                if role not in ROLES:
                    raise RowError(f"role {row['role']!r} must be one of {', '.join(ROLES)}")
                telegram_id = None
                if row.get("telegram_id"):
                    if not row["telegram_id"].lstrip("-").isdigit():
                        raise RowError(f"telegram_id {row['telegram_id']!r} is not a number")
                    telegram_id = int(row["telegram_id"])
                    if telegram_id in seen_telegram and seen_telegram[telegram_id] != email:
                        raise RowError(f"telegram_id {telegram_id} is already given to {seen_telegram[telegram_id]}")
                    holder = await uow.session.scalar(select(Staff).where(Staff.telegram_id == telegram_id))
                    if holder is not None and holder.email != email:
                        raise RowError(f"telegram_id {telegram_id} belongs to {holder.email}")
                    seen_telegram[telegram_id] = email
                phone = None
                if row.get("phone"):
                    phone = normalize_phone(row["phone"], ctx.config.default_region)
                    if phone is None:
                        raise RowError(f"phone {row['phone']!r} is not a phone number")
                on_duty = parse_bool(row["on_duty"], "on_duty") if row.get("on_duty") else True
                language = (row.get("language") or "").lower() or None
                if language is not None and language not in ("ru", "en"):
                    raise RowError("language must be ru or en")
            except RowError as exc:
                report.error(line, str(exc))
                continue
            staff = await uow.staff.by_email(email)
            values = {"name": name, "department_id": departments[code], "role": role, "on_duty": on_duty,
                      "is_active": True}
            if telegram_id is not None:
                values["telegram_id"] = telegram_id
            if phone is not None:
                values["phone"] = phone
            if language is not None:
                values["language"] = language
            if staff is None:
                uow.staff.add(Staff(email=email, language=language or ("en" if name.isascii() else "ru"),
                                    **{k: v for k, v in values.items() if k != "language"}))
                report.created += 1
            elif any(getattr(staff, k) != v for k, v in values.items()):
                for key, value in values.items():
                    setattr(staff, key, value)
                report.updated += 1
            else:
                report.unchanged += 1
            await uow.session.flush()
            if progress and report.rows % 1000 == 0:
                progress(report.rows, total)
        await uow.commit()
    if progress:
        progress(report.rows, total)
    return report
