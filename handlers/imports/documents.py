"""Documents import: `account,kind,number,date,file` required (`file` relative to the CSV);
`period_start,period_end,amount` optional. Keyed by account + kind + number.

Files are copied into DATA_DIR/files/documents/<account>/ so the archive does not depend on where the CSV
lay; the database stores the path relative to DATA_DIR.
"""

from __future__ import annotations

import asyncio
import hashlib
import re
import shutil
from pathlib import Path

from sqlalchemy import select

from handlers.context import AppContext
from handlers.dto import DOCUMENT_KINDS
from handlers.imports.common import (
    ImportReport,
    Progress,
    RowError,
    count_rows,
    need,
    parse_date,
    parse_decimal,
    read_rows,
)
from storage.models import Account, Document

REQUIRED = ("account", "kind", "number", "date", "file")
OPTIONAL = ("period_start", "period_end", "amount")
CONTENT_TYPES = {".pdf": "application/pdf", ".xlsx": "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
                 ".xls": "application/vnd.ms-excel", ".csv": "text/csv", ".zip": "application/zip",
                 ".docx": "application/vnd.openxmlformats-officedocument.wordprocessingml.document",
                 ".jpg": "image/jpeg", ".png": "image/png", ".txt": "text/plain"}


def _digest(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _copy(source: Path, target: Path) -> bool:
    """Copy unless an identical file is already there; True when something was written."""
    if target.exists() and target.stat().st_size == source.stat().st_size and _digest(target) == _digest(source):
        return False
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(f".{target.name}.tmp")
    shutil.copyfile(source, tmp)
    tmp.replace(target)
    return True


def _locations(path: Path | str, data_dir: str) -> tuple[Path, Path, Path]:
    path = Path(path)
    return path, path.resolve().parent, Path(data_dir).resolve()


async def import_documents(ctx: AppContext, path: Path | str, *, progress: Progress | None = None) -> ImportReport:
    path, base, data_dir = _locations(path, ctx.data_dir)
    report = ImportReport(kind="documents")
    total = count_rows(path)
    async with ctx.uow() as uow:
        accounts: dict[str, int] = {}
        for line, row in read_rows(path, REQUIRED, OPTIONAL):
            report.rows += 1
            try:
                if "__error__" in row:
                    raise RowError(row["__error__"])
                number_of_account = need(row, "account", 40)
                kind = need(row, "kind", 20).lower()
                if kind not in DOCUMENT_KINDS:
                    raise RowError(f"kind {kind!r} must be one of {', '.join(DOCUMENT_KINDS)}")
                number = need(row, "number", 60)
                issued_on = parse_date(need(row, "date", 20), "date")
                start = parse_date(row["period_start"], "period_start") if row.get("period_start") else None
                end = parse_date(row["period_end"], "period_end") if row.get("period_end") else None
                if start and end and end < start:
                    raise RowError("period_end is before period_start")
                amount = parse_decimal(row["amount"], "amount") if row.get("amount") else None
                source = (base / need(row, "file", 500)).resolve()
                if not source.is_file():
                    raise RowError(f"file {row['file']!r} not found next to the CSV")
                if number_of_account not in accounts:
                    account_id = await uow.session.scalar(select(Account.id).where(Account.number == number_of_account))
                    if account_id is None:
                        raise RowError(f"account {number_of_account} is unknown (import customers first)")
                    accounts[number_of_account] = account_id
            except RowError as exc:
                report.error(line, str(exc))
                continue
            account_id = accounts[number_of_account]
            safe = re.sub(r"[^\w.-]+", "_", f"{kind}-{number}")[:120] + source.suffix.lower()
            target = data_dir / "files" / "documents" / re.sub(r"[^\w.-]+", "_", number_of_account) / safe
            wrote = await asyncio.to_thread(_copy, source, target)
            stored = str(target.relative_to(data_dir))
            values = {"issued_on": issued_on, "period_start": start, "period_end": end, "amount": amount,
                      "file_path": stored, "file_size": target.stat().st_size,
                      "content_type": CONTENT_TYPES.get(source.suffix.lower(), "application/octet-stream")}
            doc = await uow.session.scalar(select(Document).where(
                Document.account_id == account_id, Document.kind == kind, Document.number == number))
            if doc is None:
                uow.session.add(Document(account_id=account_id, kind=kind, number=number, **values))
                report.created += 1
            elif wrote or any(getattr(doc, k) != v for k, v in values.items()):
                for key, value in values.items():
                    setattr(doc, key, value)
                report.updated += 1
            else:
                report.unchanged += 1
            await uow.session.flush()
            if progress and report.rows % 500 == 0:
                progress(report.rows, total)
        await uow.commit()
    if progress:
        progress(report.rows, total)
    return report
