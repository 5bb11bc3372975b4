"""CSV imports: broken rows reported with line numbers and skipped, re-runs idempotent, phones normalised."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path

import pytest
from sqlalchemy import func, select

from handlers.dto import InvalidRequest
from handlers.identification import identify_by_account_pin, identify_by_phone
from handlers.imports import import_customers, import_documents, import_payments, import_staff
from storage.models import Account, Customer, CustomerPhone, Document, Payment, Staff

STAFF_CSV = """email,name,department,role,telegram_id,phone,on_duty
anna@corp.example,Анна Петрова,subscriber_service,manager,1001,+7 495 000-02-01,
Oleg@Corp.example,Олег Сидоров,Техническая поддержка,agent,,89161110000,false
bad-email,Никто,call_center,,,,
ivan@corp.example,Иван,no_such_department,,,,
max@corp.example,Макс,tech_support,boss,,,
dup@corp.example,Дубль,tech_support,agent,1001,,
"""

CUSTOMERS_CSV = """account,name,phone,email,kind,segment,manager,balance,currency,tariff,status,paid_until,pin
300001,Иванов Пётр,8 (916) 555-00-01;+7 916 555 00 02,Petrov@Mail.example,person,mass,,150.50,RUB,Домашний,active,2026-12-31,1234
300002,ООО «Альфа»,+74950001122,info@alfa.example,company,corporate,anna@corp.example,"12 000,00",,Бизнес,,,
300003,,+79160000003,,,,,,,,,,
300004,Без телефона,not a phone,,,,,,,,,,
300005,Плохой баланс,+79160000005,,,,,abc,,,,,
300006,Плохой менеджер,+79160000006,,,,nobody@corp.example,,,,,,
300007,Плохой статус,+79160000007,,,,,,,,closed,,
300008,Плохая почта,+79160000008,not-an-email,,,,,,,,,
300009,Ok Two Phones,+79160000009;garbage,,,,,,,,,,
300001,Иванов Пётр Сергеевич,+79165550001,,,,,,,,,,
300010,Плохая дата,+79160000010,,,,,,,,,32.13.2026,
300011,Плохой пин,+79160000011,,,,,,,,,,12ab
"""


def write(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


async def test_staff_import(services, tmp_path: Path) -> None:
    ctx = services.ctx
    report = await import_staff(ctx, write(tmp_path, "staff.csv", STAFF_CSV))
    assert report.created == 2
    assert [line for line, _ in report.errors] == [4, 5, 6, 7]
    assert "department" in report.errors[1][1] and "role" in report.errors[2][1] and "1001" in report.errors[3][1]
    async with ctx.uow() as uow:
        oleg = await uow.staff.by_email("oleg@corp.example")
        assert oleg.department.code == "tech_support" and oleg.on_duty is False and oleg.phone == "+79161110000"
    again = await import_staff(ctx, write(tmp_path, "staff.csv", STAFF_CSV))
    assert again.created == 0 and again.unchanged == 2


async def test_customers_import(services, tmp_path: Path) -> None:
    ctx = services.ctx
    await import_staff(ctx, write(tmp_path, "staff.csv", STAFF_CSV))
    csv_path = write(tmp_path, "customers.csv", CUSTOMERS_CSV)
    seen: list[tuple[int, int]] = []
    report = await import_customers(ctx, csv_path, progress=lambda done, total: seen.append((done, total)),
                                    batch_size=3)
    assert {line for line, _ in report.errors} == {4, 5, 6, 7, 8, 9, 12, 13}
    reasons = dict(report.errors)
    assert "name" in reasons[4] and "phone" in reasons[5] and "balance" in reasons[6]
    assert "manager" in reasons[7] and "status" in reasons[8] and "email" in reasons[9]
    assert "date" in reasons[12] and "pin" in reasons[13]
    assert any(line == 10 and "garbage" in reason for line, reason in report.warnings)
    assert report.created == 3 and seen[-1] == (12, 12)

    client = await identify_by_phone(ctx, "+79165550002")
    assert client is not None and client.name == "Иванов Пётр Сергеевич"  # the later row won
    assert set(client.phones) == {"+79165550001", "+79165550002"} and client.email == "petrov@mail.example"
    company = await identify_by_phone(ctx, "+74950001122")
    assert company.kind == "company" and company.manager_name == "Анна Петрова"
    async with ctx.uow() as uow:
        account = await uow.accounts.by_number("300002")
        assert account.balance == Decimal("12000.00") and account.currency == "RUB"
    assert (await identify_by_account_pin(ctx, "300001", "1234")).ok

    # Re-running the same file changes nothing and creates nothing.
    again = await import_customers(ctx, csv_path)
    assert (again.created, again.updated, again.unchanged) == (0, 0, 3)
    assert any(line == 11 and "again" in reason for line, reason in again.warnings)  # one batch this time
    async with ctx.uow() as uow:
        assert await uow.session.scalar(select(func.count()).select_from(Customer)) == 3
        assert await uow.session.scalar(select(func.count()).select_from(Account)) == 3
        assert await uow.session.scalar(select(func.count()).select_from(CustomerPhone)) == 4


async def test_customers_update_on_rerun(services, tmp_path: Path) -> None:
    ctx = services.ctx
    first = write(tmp_path, "a.csv", "account,name,phone,balance\n400001,Сидоров,+79160000001,100\n")
    await import_customers(ctx, first)
    second = write(tmp_path, "b.csv", "account,name,phone,balance,tariff\n400001,Сидоров А.,+79160000002,55.5,Х\n")
    report = await import_customers(ctx, second)
    assert (report.created, report.updated, report.unchanged) == (0, 1, 0)
    client = await identify_by_phone(ctx, "+79160000002")
    assert client.name == "Сидоров А." and set(client.phones) == {"+79160000001", "+79160000002"}
    unchanged = await import_customers(ctx, second)
    assert (unchanged.created, unchanged.updated, unchanged.unchanged) == (0, 0, 1)


async def test_unusable_files(services, tmp_path: Path) -> None:
    ctx = services.ctx
    with pytest.raises(InvalidRequest, match="missing column"):
        await import_customers(ctx, write(tmp_path, "x.csv", "account,name\n1,x\n"))
    with pytest.raises(InvalidRequest, match="empty"):
        await import_customers(ctx, write(tmp_path, "e.csv", ""))
    latin1 = tmp_path / "l.csv"
    latin1.write_bytes("account,name,phone\n1,Ивáн,+79160000001\n".encode("cp1251", errors="replace"))
    with pytest.raises(InvalidRequest, match="UTF-8"):
        await import_customers(ctx, latin1)
    semicolons = write(tmp_path, "s.csv", "\ufeffaccount;name;phone\n500001;Точка С Запятой;+79160005001\n")
    assert (await import_customers(ctx, semicolons)).created == 1


async def test_payments_and_documents_import(demo_services, tmp_path: Path) -> None:
    ctx = demo_services.ctx
    payments = write(tmp_path, "p.csv", "account,date,amount,method\n200001,2025-01-10,650,card\n"
                                        "200001,10.02.2025,\"650,00\",sbp\n999999,2025-01-10,1,card\n"
                                        "200001,2025-13-01,1,card\n200001,2025-01-11,-5,card\n")
    async with ctx.uow() as uow:
        balance_before = (await uow.accounts.by_number("200001")).balance
    report = await import_payments(ctx, payments)
    assert report.created == 2 and [line for line, _ in report.errors] == [4, 5, 6]
    again = await import_payments(ctx, payments)
    assert again.created == 0 and again.unchanged == 2
    async with ctx.uow() as uow:
        account = await uow.accounts.by_number("200001")
        amounts = (await uow.session.scalars(select(Payment.amount).where(
            Payment.account_id == account.id, Payment.paid_at < datetime(2025, 3, 1, tzinfo=UTC)))).all()
        assert sorted(amounts) == [Decimal("650.00"), Decimal("650.00")]
        assert account.balance == balance_before  # history only: the balance comes from the customers file

    files = tmp_path / "files"
    files.mkdir()
    (files / "contract.pdf").write_bytes(b"%PDF-1.4 contract 200001")
    documents = write(tmp_path, "d.csv", "account,kind,number,date,file,period_start,period_end,amount\n"
                                         "200001,contract,Д-200001,2024-03-01,files/contract.pdf,,,\n"
                                         "200001,invoice,X-1,2025-01-01,files/missing.pdf,,,\n"
                                         "200001,memo,X-2,2025-01-01,files/contract.pdf,,,\n"
                                         "000000,act,X-3,2025-01-01,files/contract.pdf,,,\n")
    report = await import_documents(ctx, documents)
    assert report.created == 1 and [line for line, _ in report.errors] == [3, 4, 5]
    assert (await import_documents(ctx, documents)).unchanged == 1
    async with ctx.uow() as uow:
        doc = await uow.session.scalar(select(Document).where(Document.number == "Д-200001"))
        assert doc.file_path.startswith("files/documents/200001/") and doc.file_size == 24

    from handlers.documents import get_document_file

    client = await identify_by_phone(ctx, "+79161234567")
    file = await get_document_file(ctx, client, doc.id)
    assert file.content == b"%PDF-1.4 contract 200001"
    async with ctx.uow() as uow:
        assert await uow.session.scalar(select(func.count()).select_from(Staff)) > 0
