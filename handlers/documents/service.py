"""Listing, fetching and sending a client's documents."""

from __future__ import annotations

import asyncio
import hashlib
import html
import logging
import os
import re
from datetime import UTC, date, datetime, time, timedelta
from pathlib import Path

from handlers.billing import billing_of, own_account, within_budget
from handlers.context import AppContext
from handlers.documents import links
from handlers.documents.query import months_back
from handlers.dto import (
    DOCUMENT_KINDS,
    ClientProfile,
    DocumentFile,
    DocumentInfo,
    DocumentQuery,
    InvalidRequest,
    NotFound,
    ServiceUnavailable,
)

log = logging.getLogger(__name__)

# Telegram bots may upload files up to 50 MB; bigger ones are offered as a link.
MAX_UPLOAD_BYTES = 50 * 1024 * 1024
# Usage reports (call and traffic details) are kept for the last six months only.
USAGE_REPORT_MONTHS = 6
GENERATED_KINDS = ("invoice", "act", "usage_report", "reconciliation")
# Downloading a stored file may take longer than a balance look-up, but never forever.
FILE_BUDGET_SECONDS = 20.0


def usage_report_floor(today: date) -> date:
    return months_back(today, USAGE_REPORT_MONTHS)


async def list_documents(
    ctx: AppContext, client: ClientProfile, query: DocumentQuery, account_number: str | None = None
) -> list[DocumentInfo]:
    """The client's documents of the asked kinds overlapping the asked period, newest first.

    Any period is served from the archive, except usage reports: only the last six months.
    """
    numbers = [own_account(client, account_number)] if account_number else list(client.account_numbers)
    if not numbers:
        return []
    kinds = tuple(k for k in query.kinds if k in DOCUMENT_KINDS) or DOCUMENT_KINDS
    floor = usage_report_floor(ctx.clock().date())
    billing = billing_of(ctx)
    found: list[DocumentInfo] = []
    for number in numbers:
        found += await within_budget(
            billing.documents(number, kinds=kinds, period_start=query.period_start, period_end=query.period_end),
            "documents",
        )
    found = [d for d in found if d.kind != "usage_report" or (d.period_end or d.issued_on) >= floor]
    found.sort(key=lambda d: (d.issued_on, d.id), reverse=True)
    return found


async def _owned_document(ctx: AppContext, client: ClientProfile, document_id: int) -> DocumentInfo:
    info = await within_budget(billing_of(ctx).document(document_id), "document")
    if info is None or info.account_number not in client.account_numbers:
        raise NotFound(f"document {document_id}")
    return info


async def get_document_file(ctx: AppContext, client: ClientProfile, document_id: int) -> DocumentFile:
    """The document's file: the stored one, or a PDF generated from billing data when none is stored.

    Files over the messenger's 50 MB limit come without content and with a download link.
    """
    info = await _owned_document(ctx, client, document_id)
    return await _file_for(ctx, client, info)


async def _file_for(ctx: AppContext, client: ClientProfile, info: DocumentInfo) -> DocumentFile:
    billing = billing_of(ctx)
    try:
        stored = await asyncio.wait_for(billing.document_content(info.id), FILE_BUDGET_SECONDS)
    except TimeoutError:
        raise ServiceUnavailable("billing did not deliver the file in time") from None
    if stored is not None:
        filename = _friendly_filename(ctx, info, client.language, Path(stored.filename).suffix or ".pdf")
        if stored.path is None and stored.content is not None:
            # Files from a remote billing are kept on our side so deliveries can send them later.
            path = _cache_dir(ctx) / f"stored-{info.id}-{hashlib.sha256(stored.content).hexdigest()[:16]}"
            path = path.with_suffix(Path(stored.filename).suffix or ".pdf")
            await asyncio.to_thread(_write_atomically, path, stored.content)
            stored = DocumentFile(filename=stored.filename, content_type=stored.content_type, size=stored.size,
                                  content=stored.content, path=str(path), download_url=stored.download_url)
        if stored.size > MAX_UPLOAD_BYTES:
            return DocumentFile(filename=filename, content_type=stored.content_type, size=stored.size, content=None,
                                download_url=stored.download_url or links.download_url(ctx, info.id),
                                path=stored.path)
        return DocumentFile(filename=filename, content_type=stored.content_type, size=stored.size,
                            content=stored.content, path=stored.path)
    if info.kind not in GENERATED_KINDS:
        raise NotFound(f"document {info.id} has no file")
    return await _generated(ctx, client, info)


async def _generated(ctx: AppContext, client: ClientProfile, info: DocumentInfo) -> DocumentFile:
    from handlers.documents import pdf

    data = await _document_data(ctx, client, info)
    digest = hashlib.sha256(repr(data).encode()).hexdigest()[:16]
    path = _cache_dir(ctx) / f"{info.kind}-{info.id}-{client.language}-{digest}.pdf"
    if path.exists():
        content = await asyncio.to_thread(path.read_bytes)
    else:
        content = await asyncio.to_thread(pdf.render, ctx, data, client.language)
        await asyncio.to_thread(_write_atomically, path, content)
    return DocumentFile(filename=_friendly_filename(ctx, info, client.language, ".pdf"),
                        content_type="application/pdf", size=len(content), content=content, path=str(path))


async def _document_data(ctx: AppContext, client: ClientProfile, info: DocumentInfo) -> dict:  # type: ignore[type-arg]
    """Everything a generated document shows, gathered from billing (also the cache key)."""
    from handlers.documents.pdf import DocumentData, StatementLine

    billing = billing_of(ctx)
    balance = await within_budget(billing.account_balance(info.account_number), "balance")
    if balance is None:
        raise NotFound(f"account {info.account_number}")
    start = info.period_start or info.issued_on.replace(day=1)
    end = info.period_end or info.issued_on
    lines: list[StatementLine] = []
    opening = closing = None
    if info.kind in ("usage_report", "reconciliation"):
        begin_at = datetime.combine(start, time.min, UTC)
        end_at = datetime.combine(end + timedelta(days=1), time.min, UTC)
        payments = await within_budget(billing.payments_between(info.account_number, begin_at, end_at), "payments")
        charges = await within_budget(billing.documents(info.account_number, kinds=("invoice",), period_start=start,
                                                        period_end=end, limit=500), "documents")
        for charge in charges:
            lines.append(StatementLine(on=charge.issued_on, description=("charge", charge.number),
                                       charge=charge.amount or 0, payment=0))
        for payment in payments:
            lines.append(StatementLine(on=payment.paid_at.date(), description=("payment", payment.method or ""),
                                       charge=0, payment=payment.amount))
        lines.sort(key=lambda line: line.on)
        if info.kind == "reconciliation":
            # Roll the current balance back over everything after the period to get its closing balance.
            now = ctx.clock()
            later_payments = await within_budget(billing.payments_between(info.account_number, end_at,
                                                                          now + timedelta(days=1)), "payments")
            later_charges = await within_budget(billing.documents(
                info.account_number, kinds=("invoice",), period_start=end + timedelta(days=1),
                period_end=now.date() + timedelta(days=400), limit=500), "documents")
            closing = (balance.balance - sum((p.amount for p in later_payments), 0)
                       + sum((c.amount or 0 for c in later_charges if c.issued_on > end), 0))
            opening = closing - sum((line.payment for line in lines), 0) + sum((line.charge for line in lines), 0)
    return DocumentData(
        kind=info.kind, number=info.number, issued_on=info.issued_on, period_start=start, period_end=end,
        amount=info.amount, account_number=info.account_number, currency=balance.currency,
        tariff=balance.tariff, client_name=client.name, lines=tuple(lines), opening_balance=opening,
        closing_balance=closing,
    ).as_dict()


def _cache_dir(ctx: AppContext) -> Path:
    path = Path(ctx.data_dir) / "files" / "generated"
    path.mkdir(parents=True, exist_ok=True)
    return path


def _write_atomically(path: Path, content: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_bytes(content)
    os.replace(tmp, path)


def _friendly_filename(ctx: AppContext, info: DocumentInfo, language: str, suffix: str) -> str:
    title = ctx.t(f"doc_kind_{info.kind}", language)
    name = f"{title} {info.number}"
    name = re.sub(r"[\\/:*?\"<>|\x00-\x1f]+", "_", name).strip() or f"document-{info.id}"
    return name[:120] + suffix


def describe(ctx: AppContext, info: DocumentInfo, language: str) -> str:
    """One line about a document: kind, number, period (plain text; callers escape for their markup)."""
    title = ctx.t(f"doc_kind_{info.kind}", language)
    if info.period_start and info.period_end:
        period = ctx.t("doc_period", language, start=_fmt(info.period_start, language),
                       end=_fmt(info.period_end, language))
    else:
        period = ctx.t("doc_issued", language, date=_fmt(info.issued_on, language))
    return f"{title} {info.number}, {period}"


def _fmt(day: date, language: str) -> str:
    return day.strftime("%d.%m.%Y") if language == "ru" else day.isoformat()


async def send_documents(ctx: AppContext, client: ClientProfile, document_ids: list[int], *, via: str = "auto") -> str:
    """Queue the documents for delivery to a contact the client registered with us: their linked Telegram
    (one outbox message per file) or their e-mail on file (one message with all files). Returns the channel.
    Never to an unregistered contact: InvalidRequest when the client has neither.
    """
    from storage.models import Notification

    if via not in ("auto", "telegram", "email"):
        raise InvalidRequest(f"unknown delivery channel {via!r}")
    if not document_ids:
        raise InvalidRequest("no documents chosen")
    if len(document_ids) > 50:
        raise InvalidRequest("too many documents at once")
    from handlers.identification import client_profile

    # The contact on record now, not whatever the adapter holds: never deliver to an unregistered one.
    client = await client_profile(ctx, client.customer_id)
    channel = _channel(client, via)
    lang = client.language
    files: list[tuple[DocumentInfo, DocumentFile]] = []
    for document_id in dict.fromkeys(document_ids):
        info = await _owned_document(ctx, client, document_id)
        files.append((info, await _file_for(ctx, client, info)))
    rows: list[Notification] = []
    if channel == "telegram":
        for info, file in files:
            caption = html.escape(describe(ctx, info, lang))
            if file.content is None or file.path is None:
                text = ctx.t("doc_too_large", lang, title=caption, url=html.escape(file.download_url or ""))
                rows.append(Notification(kind="document", recipient_kind="customer", customer_id=client.customer_id,
                                         payload={"text": text}))
            else:
                rows.append(Notification(
                    kind="document", recipient_kind="customer", customer_id=client.customer_id,
                    payload={"text": caption, "document": {"path": file.path, "filename": file.filename,
                                                           "caption": caption}},
                ))
    else:
        listing = "\n".join(describe(ctx, info, lang) for info, _ in files)
        links_text = "\n".join(f"{describe(ctx, info, lang)}: {file.download_url}" for info, file in files
                               if file.content is None)
        body = ctx.t("doc_email_body", lang, listing=listing, company=ctx.config.company.name.get(lang))
        if links_text:
            body += "\n\n" + ctx.t("doc_email_links", lang, links=links_text)
        rows.append(Notification(
            kind="document", recipient_kind="email", customer_id=client.customer_id,
            payload={"email": client.email, "subject": ctx.t("doc_email_subject", lang,
                                                             company=ctx.config.company.name.get(lang)),
                     "text": body,
                     "attachments": [file.path for _, file in files if file.content is not None and file.path]},
        ))
    async with ctx.uow() as uow:
        for row in rows:
            uow.session.add(row)
        await uow.commit()
    await ctx.wake_dispatcher()
    return channel


def _channel(client: ClientProfile, via: str) -> str:
    telegram = client.telegram_user_id is not None
    email = bool(client.email)
    if via == "telegram" and not telegram or via == "email" and not email or not (telegram or email):
        raise InvalidRequest("the client has no registered contact for this delivery")
    if via == "auto":
        return "telegram" if telegram else "email"
    return via
