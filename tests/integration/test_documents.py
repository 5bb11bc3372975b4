"""Documents: listing by kind and period, ownership, generated PDFs read back, delivery through the outbox."""

from __future__ import annotations

import io
from datetime import date
from pathlib import Path

import pytest
from pypdf import PdfReader
from sqlalchemy import select

from handlers.billing import get_balance
from handlers.documents import get_document_file, list_documents, parse_document_request, send_documents
from handlers.documents.query import months_back
from handlers.dto import DocumentQuery, InvalidRequest, NotFound
from handlers.identification import identify_by_phone, link_telegram
from storage.models import Document, Notification


def file_head(path: str) -> bytes:
    return Path(path).read_bytes()[:4]


def pdf_text(content: bytes) -> str:
    reader = PdfReader(io.BytesIO(content))
    return "\n".join(page.extract_text() for page in reader.pages)


async def test_balance_is_own_accounts_only(demo_services) -> None:
    ctx = demo_services.ctx
    client = await identify_by_phone(ctx, "+79161234567")
    info = await get_balance(ctx, client)
    assert info.account_number == "200001" and info.tariff == "Домашний 100"
    assert len(info.last_payments) == 3
    assert info.last_payments[0].paid_at >= info.last_payments[1].paid_at
    with pytest.raises(NotFound):
        await get_balance(ctx, client, "100001")


async def test_list_by_kind_and_period(demo_services) -> None:
    ctx = demo_services.ctx
    client = await identify_by_phone(ctx, "+74951112233")
    today = ctx.clock().date()
    last_month = months_back(today, 1)
    query = parse_document_request("акт за прошлый месяц", "ru", today)
    docs = await list_documents(ctx, client, query)
    assert [d.kind for d in docs] == ["act"] and docs[0].period_start == last_month
    everything = await list_documents(ctx, client, DocumentQuery())
    assert {d.kind for d in everything} == {"invoice", "act", "usage_report", "reconciliation", "contract"}
    # Another client's account is not reachable even by naming it.
    stranger = await identify_by_phone(ctx, "+79161234567")
    with pytest.raises(NotFound):
        await list_documents(ctx, stranger, query, account_number="100001")


async def test_usage_reports_only_for_the_last_six_months(demo_services) -> None:
    ctx = demo_services.ctx
    client = await identify_by_phone(ctx, "+79161234567")
    async with ctx.uow() as uow:
        account = await uow.accounts.by_number("200001")
        uow.session.add(Document(account_id=account.id, kind="usage_report", number="OLD-1",
                                 issued_on=date(2020, 1, 31), period_start=date(2020, 1, 1),
                                 period_end=date(2020, 1, 31)))
        uow.session.add(Document(account_id=account.id, kind="invoice", number="OLD-2",
                                 issued_on=date(2020, 1, 1), period_start=date(2020, 1, 1),
                                 period_end=date(2020, 1, 31), amount=650))
        await uow.commit()
    old = DocumentQuery(kinds=("usage_report", "invoice"), period_start=date(2020, 1, 1),
                        period_end=date(2020, 1, 31))
    assert [d.number for d in await list_documents(ctx, client, old)] == ["OLD-2"]


@pytest.mark.parametrize("kind", ["invoice", "act", "usage_report", "reconciliation"])
async def test_generated_pdf_has_cyrillic_text(demo_services, kind: str) -> None:
    ctx = demo_services.ctx
    client = await identify_by_phone(ctx, "+74951112233")
    docs = await list_documents(ctx, client, DocumentQuery(kinds=(kind,)))
    file = await get_document_file(ctx, client, docs[0].id)
    assert file.content is not None and file.content.startswith(b"%PDF")
    assert file.content_type == "application/pdf" and file.size == len(file.content)
    text = pdf_text(file.content)
    assert "ООО «СвязьСервис»" in text
    assert "ООО «Ромашка»" in text
    assert docs[0].number in text
    assert "100001" in text
    title = {"invoice": "Счёт", "act": "Акт", "usage_report": "Детализация", "reconciliation": "Акт сверки"}[kind]
    assert title in text and file.filename.startswith(title)
    if kind == "usage_report":
        assert "Оплата" in text
    # Served from the cache the second time, byte for byte.
    again = await get_document_file(ctx, client, docs[0].id)
    assert again.content == file.content and again.path == file.path


async def test_pdf_in_english(demo_services) -> None:
    ctx = demo_services.ctx
    client = await identify_by_phone(ctx, "+74957778899")
    docs = await list_documents(ctx, client, DocumentQuery(kinds=("invoice",)))
    text = pdf_text((await get_document_file(ctx, client, docs[0].id)).content)
    assert "Invoice" in text and "SvyazService LLC" in text and "Northwind Trading LLC" in text


async def test_stored_file_and_others_documents(demo_services, tmp_path) -> None:
    ctx = demo_services.ctx
    client = await identify_by_phone(ctx, "+74951112233")
    stored = tmp_path / "contract.pdf"
    stored.write_bytes(b"%PDF-1.4 stored contract")
    async with ctx.uow() as uow:
        doc = await uow.session.scalar(select(Document).where(Document.number == "Д-100001"))
        doc.file_path = str(stored)
        await uow.commit()
        doc_id = doc.id
    file = await get_document_file(ctx, client, doc_id)
    assert file.content == b"%PDF-1.4 stored contract" and file.filename.startswith("Договор")
    stranger = await identify_by_phone(ctx, "+79161234567")
    with pytest.raises(NotFound):
        await get_document_file(ctx, stranger, doc_id)
    with pytest.raises(NotFound):
        await get_document_file(ctx, client, 10**9)


async def test_contract_without_file_is_not_generated(demo_services) -> None:
    ctx = demo_services.ctx
    client = await identify_by_phone(ctx, "+74951112233")
    contract = (await list_documents(ctx, client, DocumentQuery(kinds=("contract",))))[0]
    with pytest.raises(NotFound):
        await get_document_file(ctx, client, contract.id)


async def test_large_file_becomes_a_link(demo_services, tmp_path, monkeypatch) -> None:
    import handlers.documents.service as service

    ctx = demo_services.ctx
    ctx.extras["download_secret"] = "s3cret"
    ctx.extras["public_base_url"] = "https://fo.example"
    monkeypatch.setattr(service, "MAX_UPLOAD_BYTES", 10)
    client = await identify_by_phone(ctx, "+74951112233")
    big = tmp_path / "big.pdf"
    big.write_bytes(b"%PDF" + b"0" * 100)
    async with ctx.uow() as uow:
        doc = await uow.session.scalar(select(Document).where(Document.number == "Д-100001"))
        doc.file_path = str(big)
        await uow.commit()
    file = await get_document_file(ctx, client, doc.id)
    assert file.content is None and file.download_url.startswith("https://fo.example/documents/download/")
    from handlers.documents.links import check_token

    token = file.download_url.rsplit("/", 1)[1]
    assert check_token(ctx, token) == doc.id
    assert check_token(ctx, token[:-2] + "xx") is None


async def test_send_documents_to_telegram_or_email(demo_services) -> None:
    ctx = demo_services.ctx
    client = await identify_by_phone(ctx, "+74951112233")
    docs = await list_documents(ctx, client, DocumentQuery(kinds=("invoice",)))
    # E-mail on file, no Telegram yet.
    assert await send_documents(ctx, client, [docs[0].id, docs[1].id]) == "email"
    client = await link_telegram(ctx, client.customer_id, 4242)
    assert await send_documents(ctx, client, [docs[0].id]) == "telegram"
    async with ctx.uow() as uow:
        rows = list(await uow.session.scalars(select(Notification).order_by(Notification.id)))
    email, telegram = rows
    assert email.recipient_kind == "email" and email.payload["email"] == "office@romashka.example"
    assert len(email.payload["attachments"]) == 2
    assert telegram.recipient_kind == "customer" and telegram.customer_id == client.customer_id
    document = telegram.payload["document"]
    assert document["filename"].endswith(".pdf") and file_head(document["path"]) == b"%PDF"
    stranger = await identify_by_phone(ctx, "+79154567890")  # no e-mail, no Telegram
    with pytest.raises(InvalidRequest):
        await send_documents(ctx, stranger, [docs[0].id])
    other = await identify_by_phone(ctx, "+79161234567")
    with pytest.raises(NotFound):
        await send_documents(ctx, other, [docs[0].id])
