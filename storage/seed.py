"""Configuration-to-database sync and the demo data set.

Departments are configured in YAML but referenced by tickets and staff, so every start mirrors them into
the database. The demo data is idempotent: records are keyed by account number, staff e-mail, payment
external id and document number, and a second run changes nothing.
"""

from __future__ import annotations

import asyncio
import random
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from decimal import Decimal

from sqlalchemy import select

from config.business import BusinessConfig
from handlers.phones import normalize_phone
from handlers.pin import hash_pin
from storage.models import Account, Customer, CustomerPhone, Department, Document, Payment, Staff
from storage.uow import UnitOfWork, UnitOfWorkFactory


async def sync_departments(uow_factory: UnitOfWorkFactory, config: BusinessConfig) -> None:
    async with uow_factory() as uow:
        for dept in config.departments:
            row = await uow.departments.by_code(dept.code)
            if row is None:
                row = Department(code=dept.code)
                uow.departments.add(row)
            row.name = dept.name.ru
            row.telegram_chat_id = dept.telegram_chat_id
            row.phone = dept.phone
        await uow.commit()


@dataclass(frozen=True)
class DemoStaff:
    email: str
    name: str
    role: str
    department: str
    phone: str


@dataclass(frozen=True)
class DemoCustomer:
    account: str
    name: str
    kind: str
    segment: str
    language: str
    phones: tuple[str, ...]
    email: str | None
    tariff: str
    monthly_fee: Decimal
    manager: str | None = None
    status: str = "active"


DEMO_STAFF = (
    DemoStaff("operator1@svyazservice.example", "Ольга Смирнова", "agent", "call_center", "+74950000101"),
    DemoStaff("operator2@svyazservice.example", "Дмитрий Волков", "agent", "call_center", "+74950000102"),
    DemoStaff("cc.lead@svyazservice.example", "Марина Кузнецова", "supervisor", "call_center", "+74950000103"),
    DemoStaff("manager1@svyazservice.example", "Анна Петрова", "manager", "subscriber_service", "+74950000201"),
    DemoStaff("manager2@svyazservice.example", "Сергей Иванов", "manager", "subscriber_service", "+74950000202"),
    DemoStaff("subs.lead@svyazservice.example", "Елена Соколова", "supervisor", "subscriber_service",
              "+74950000203"),
    DemoStaff("support1@svyazservice.example", "Алексей Морозов", "agent", "tech_support", "+74950000301"),
    DemoStaff("support2@svyazservice.example", "Игорь Новиков", "agent", "tech_support", "+74950000302"),
    DemoStaff("support.lead@svyazservice.example", "Павел Лебедев", "supervisor", "tech_support", "+74950000303"),
    DemoStaff("finance@svyazservice.example", "Татьяна Козлова", "agent", "finance", "+74950000401"),
    DemoStaff("billing@svyazservice.example", "Николай Попов", "agent", "billing", "+74950000501"),
    DemoStaff("field1@svyazservice.example", "Виктор Егоров", "agent", "field_service", "+74950000601"),
    DemoStaff("network@svyazservice.example", "Роман Орлов", "agent", "network", "+74950000701"),
    DemoStaff("sales@svyazservice.example", "Kate Wilson", "agent", "sales", "+74950000801"),
    DemoStaff("admin@svyazservice.example", "Администратор", "admin", "call_center", "+74950000001"),
)

M1, M2 = "manager1@svyazservice.example", "manager2@svyazservice.example"
DEMO_CUSTOMERS = (
    DemoCustomer("100001", "ООО «Ромашка»", "company", "corporate", "ru", ("+74951112233", "+79161112233"),
                 "office@romashka.example", "Бизнес 500", Decimal("12000.00"), M1),
    DemoCustomer("100002", "АО «ТехноПарк»", "company", "corporate", "ru", ("+74952223344",),
                 "it@technopark.example", "Бизнес 1000", Decimal("25000.00"), M1),
    DemoCustomer("100003", "ИП Сидоров Андрей Петрович", "company", "corporate", "ru", ("+79035556677",),
                 "sidorov@mail.example", "Бизнес 200", Decimal("4500.00"), M2),
    DemoCustomer("100004", "Northwind Trading LLC", "company", "corporate", "en", ("+74957778899",),
                 "accounts@northwind.example", "Business 500", Decimal("12000.00"), M2),
    DemoCustomer("100005", "ООО «Вектор Логистик»", "company", "corporate", "ru", ("+74953334455",),
                 "buh@vector-log.example", "Бизнес 300", Decimal("8000.00"), M1, status="paused"),
    DemoCustomer("100006", "Acme Software GmbH", "company", "corporate", "en", ("+74956667788",),
                 "finance@acme.example", "Business 1000", Decimal("25000.00"), M2),
    DemoCustomer("200001", "Иванов Иван Иванович", "person", "mass", "ru", ("+79161234567",),
                 "ivanov@mail.example", "Домашний 100", Decimal("650.00")),
    DemoCustomer("200002", "Петрова Мария Сергеевна", "person", "mass", "ru", ("+79262345678",),
                 "petrova.m@mail.example", "Домашний 300", Decimal("850.00")),
    DemoCustomer("200003", "Смирнов Алексей Викторович", "person", "vip", "ru", ("+79033456789",),
                 "smirnov.av@mail.example", "Домашний 1000 + ТВ", Decimal("1500.00"), M2),
    DemoCustomer("200004", "Кузнецова Ольга Николаевна", "person", "mass", "ru", ("+79154567890",),
                 None, "Домашний 100", Decimal("650.00")),
    DemoCustomer("200005", "Попов Дмитрий Андреевич", "person", "mass", "ru", ("+79675678901",),
                 "popov.da@mail.example", "Домашний 500", Decimal("950.00")),
    DemoCustomer("200006", "Васильева Екатерина Игоревна", "person", "mass", "ru", ("+79856789012",),
                 "vasilieva@mail.example", "Домашний 300", Decimal("850.00"), status="paused"),
    DemoCustomer("200007", "Соколов Михаил Юрьевич", "person", "mass", "ru", ("+79097890123",),
                 None, "Домашний 100", Decimal("650.00"), status="terminated"),
    DemoCustomer("200008", "Михайлова Анна Дмитриевна", "person", "mass", "ru", ("+79168901234",),
                 "m.anna@mail.example", "Домашний 500 + ТВ", Decimal("1200.00")),
    DemoCustomer("200009", "Новиков Сергей Павлович", "person", "mass", "ru", ("+79269012345", "+74959012345"),
                 "novikov.sp@mail.example", "Домашний 300", Decimal("850.00")),
    DemoCustomer("200010", "Фёдорова Наталья Алексеевна", "person", "vip", "ru", ("+79031230987",),
                 "fedorova@mail.example", "Домашний 1000", Decimal("1300.00"), M1),
    DemoCustomer("200011", "John Smith", "person", "mass", "en", ("+79161230001",),
                 "john.smith@mail.example", "Home 300", Decimal("850.00")),
    DemoCustomer("200012", "Emily Johnson", "person", "mass", "en", ("+79161230002",),
                 "emily.j@mail.example", "Home 500", Decimal("950.00")),
    DemoCustomer("200013", "Morozov Pavel", "person", "mass", "en", ("+447700900123",),
                 "p.morozov@mail.example", "Home 100", Decimal("650.00")),
    DemoCustomer("200014", "Лебедева Ирина Владимировна", "person", "mass", "ru", ("+79251112200",),
                 "lebedeva@mail.example", "Домашний 100", Decimal("650.00")),
)

DEMO_PIN_NOTE = "The demo PIN of every account is the last four digits of its number (e.g. 100001 -> 0001)."


def _month_start(day: date, months_back: int) -> date:
    year, month = day.year, day.month - months_back
    while month <= 0:
        month += 12
        year -= 1
    return date(year, month, 1)


def _month_end(start: date) -> date:
    nxt = date(start.year + (start.month == 12), start.month % 12 + 1, 1)
    return nxt - timedelta(days=1)


async def seed_demo(uow_factory: UnitOfWorkFactory, config: BusinessConfig, today: date | None = None) -> dict[str, int]:
    """Create the demo data set where it is missing; returns how many records were added."""
    today = today or datetime.now(UTC).date()
    added = {"staff": 0, "customers": 0, "payments": 0, "documents": 0}
    async with uow_factory() as uow:
        departments = {d.code: d for d in await uow.departments.all()}
        staff_by_email: dict[str, Staff] = {}
        for person in DEMO_STAFF:
            if person.department not in departments:
                continue  # a site configuration without this department
            row = await uow.staff.by_email(person.email)
            if row is None:
                row = Staff(email=person.email, name=person.name, role=person.role,
                            department_id=departments[person.department].id, phone=person.phone,
                            language="en" if person.name.isascii() else "ru", on_duty=True)
                uow.staff.add(row)
                added["staff"] += 1
            staff_by_email[person.email] = row
        await uow.session.flush()

        accounts = {demo.account: await uow.accounts.by_number(demo.account) for demo in DEMO_CUSTOMERS}
        # PIN hashes are deliberately slow (scrypt, ~50 ms each); hashing them side by side in threads
        # (hashlib releases the GIL) keeps a first start short.
        pin_hashes = dict(zip(
            [number for number, account in accounts.items() if account is None],
            await asyncio.gather(*(asyncio.to_thread(hash_pin, number[-4:])
                                   for number, account in accounts.items() if account is None)), strict=True))
        for index, demo in enumerate(DEMO_CUSTOMERS):
            account = accounts[demo.account]
            if account is None:
                account = await _add_customer(uow, demo, staff_by_email, today, pin_hashes[demo.account])
                added["customers"] += 1
            rng = random.Random(demo.account)  # stable history for the same account on every run
            p, d = await _add_history(uow, account, demo, rng, today, index)
            added["payments"] += p
            added["documents"] += d
        await uow.commit()
    return added


async def _add_customer(uow: UnitOfWork, demo: DemoCustomer, staff: dict[str, Staff], today: date,
                        pin_hash: str) -> Account:
    manager = staff.get(demo.manager) if demo.manager else None
    customer = Customer(
        kind=demo.kind, name=demo.name, email=demo.email, language=demo.language, segment=demo.segment,
        manager_id=manager.id if manager else None,
        phones=[CustomerPhone(phone=normalize_phone(p) or p) for p in demo.phones],
    )
    uow.customers.add(customer)
    await uow.session.flush()
    # Some clients owe money, some have paid ahead: the balance answers should show both.
    rng = random.Random("balance" + demo.account)
    balance = (demo.monthly_fee * Decimal(rng.choice(["-0.5", "0.2", "1", "1.5", "2", "3"]))).quantize(Decimal("0.01"))
    account = Account(
        customer_id=customer.id, number=demo.account, balance=balance, currency="RUB", tariff=demo.tariff,
        status=demo.status, paid_until=today + timedelta(days=int(30 * max(float(balance / demo.monthly_fee), 0))),
        pin_hash=pin_hash,
    )
    uow.accounts.add(account)
    await uow.session.flush()
    return account


async def _add_history(uow: UnitOfWork, account: Account, demo: DemoCustomer, rng: random.Random, today: date,
                       index: int) -> tuple[int, int]:
    payments = documents = 0
    existing_docs = {
        (doc.kind, doc.number) for doc in await uow.documents.find(account.id, limit=1000)
    }
    existing_pay = set(
        (await uow.session.scalars(select(Payment.external_id).where(Payment.account_id == account.id))).all()
    )
    for months_back in range(6, 0, -1):
        start = _month_start(today, months_back)
        end = _month_end(start)
        pay_day = start + timedelta(days=rng.randint(0, 9))
        ext = f"demo-{demo.account}-{start:%Y%m}"
        if ext not in existing_pay:
            uow.payments.add(Payment(
                account_id=account.id, external_id=ext, amount=demo.monthly_fee, currency="RUB",
                paid_at=datetime.combine(pay_day, time(10 + rng.randint(0, 8), rng.randint(0, 59)), UTC),
                method=rng.choice(["card", "sbp", "bank_transfer", "cash"] if demo.kind == "person"
                                  else ["bank_transfer"]),
            ))
            payments += 1
        kinds = ["invoice", "usage_report"] + (["act"] if demo.kind == "company" else [])
        for kind in kinds:
            prefix = {"invoice": "СЧ", "act": "АКТ", "usage_report": "ДЕТ"}[kind]
            number = f"{prefix}-{start:%Y%m}-{demo.account}"
            if (kind, number) in existing_docs:
                continue
            uow.documents.add(Document(
                account_id=account.id, kind=kind, number=number,
                issued_on=start if kind == "invoice" else end,
                period_start=start, period_end=end,
                amount=None if kind == "usage_report" else demo.monthly_fee,
            ))
            documents += 1
    if demo.kind == "company":
        # Reconciliation act for the previous calendar quarter.
        quarter_start = _month_start(today, 3 + (today.month - 1) % 3)
        quarter_end = _month_end(_month_start(today, 1 + (today.month - 1) % 3))
        number = f"СВ-{quarter_start:%Y%m}-{demo.account}"
        if ("reconciliation", number) not in existing_docs:
            uow.documents.add(Document(
                account_id=account.id, kind="reconciliation", number=number, issued_on=today - timedelta(days=5),
                period_start=quarter_start, period_end=quarter_end,
                amount=Decimal("0.00"),
            ))
            documents += 1
        contract = f"Д-{demo.account}"
        if ("contract", contract) not in existing_docs:
            uow.documents.add(Document(account_id=account.id, kind="contract", number=contract,
                                       issued_on=date(today.year - 1 - index % 3, 1 + index % 12, 10)))
            documents += 1
    return payments, documents
