from datetime import UTC, datetime

import pytest

from handlers.dto import Actor, InvalidRequest, PermissionDenied
from handlers.knowledge import KnowledgeBase, article_from_ticket, seed_default_articles
from storage.models import Department, Staff, Ticket, TicketEvent


@pytest.fixture
async def kb(services):
    await seed_default_articles(services.ctx)
    return KnowledgeBase(services.ctx, check_every=0)


async def test_seed_is_idempotent(services):
    first = await seed_default_articles(services.ctx)
    assert first >= 16
    assert await seed_default_articles(services.ctx) == 0


@pytest.mark.parametrize(
    ("language", "question", "expected"),
    [
        ("ru", "роутер завис, как его перезагрузить?", "Как перезагрузить роутер"),
        ("ru", "на модеме горит красная лампа LOS", "Красный индикатор LOS/PON на оптическом терминале (ONT)"),
        ("ru", "во сколько вы открываетесь в субботу", "Часы работы"),
        ("en", "my router hangs, how to reboot it", "How to restart your router"),
        ("en", "are you open on sunday", "Opening hours"),
        ("en", "red LOS light on my ONT", "Red LOS/PON light on the optical terminal (ONT)"),
    ],
)
async def test_strong_matches_answer(kb, language, question, expected):
    answer = await kb.search(question, language)
    assert answer is not None and answer.title == expected and answer.score >= 0.5


@pytest.mark.parametrize(
    ("language", "question"),
    [("ru", "привет"), ("ru", "сколько стоит айфон"), ("en", "hello"), ("en", "what is the weather"),
     ("en", ""), ("ru", "🙂🙂🙂"), ("en", "<script>alert(1)</script>"), ("ru", "'; DROP TABLE tickets; --")],
)
async def test_unrelated_questions_get_no_article(kb, language, question):
    assert await kb.search(question, language) is None


async def test_long_input_is_handled(kb):
    text = "роутер завис как перезагрузить " + "бла " * 12_000
    assert await kb.suggestions(text, "ru") is not None


async def test_another_process_sees_new_articles(services, kb):
    other = KnowledgeBase(services.ctx, check_every=0)
    assert await other.search("как настроить iptv приставку", "ru") is None
    ticket_id, staff_id = await _resolved_ticket(services, "Как настроить IPTV приставку", "Зайдите в меню Настройки → Сеть → DHCP и перезагрузите приставку.")
    actor = await _actor(services, staff_id)
    await article_from_ticket(services.ctx, actor, ticket_id)
    answer = await other.search("как настроить iptv приставку", "ru")
    assert answer is not None and "DHCP" in answer.answer


async def test_article_from_ticket_checks_permissions_and_state(services):
    ticket_id, _ = await _resolved_ticket(services, "Вопрос", "Ответ специалиста")
    async with services.uow() as uow:
        sales = await uow.departments.by_code("sales")
        outsider = Staff(email="x@example.com", name="X", role="agent", department_id=sales.id)
        uow.session.add(outsider)
        await uow.commit()
    with pytest.raises(PermissionDenied):
        await article_from_ticket(services.ctx, await _actor(services, outsider.id), ticket_id)
    with pytest.raises(PermissionDenied):
        await article_from_ticket(services.ctx, Actor(kind="client", customer_id=1), ticket_id)
    async with services.uow() as uow:
        ticket = await uow.session.get(Ticket, ticket_id)
        ticket.status = "in_progress"
        await uow.commit()
    async with services.uow() as uow:
        staff_id = (await uow.staff.by_email("agent@example.com")).id
    with pytest.raises(InvalidRequest):
        await article_from_ticket(services.ctx, await _actor(services, staff_id), ticket_id)


async def _actor(services, staff_id: int) -> Actor:
    async with services.uow() as uow:
        staff = await uow.staff.get(staff_id)
        return Actor(kind="staff", staff_id=staff.id, role=staff.role, department_id=staff.department_id)


async def _resolved_ticket(services, question: str, answer: str) -> tuple[int, int]:
    async with services.uow() as uow:
        dept: Department = await uow.departments.by_code("tech_support")
        staff = Staff(email="agent@example.com", name="Агент", role="agent", department_id=dept.id)
        uow.session.add(staff)
        await uow.session.flush()
        ticket = Ticket(number="2026-000001", channel="telegram", topic="equipment", department_id=dept.id,
                        subject=question, text=question, status="resolved", language="ru",
                        resolved_at=datetime.now(UTC))
        uow.session.add(ticket)
        await uow.session.flush()
        uow.session.add(TicketEvent(ticket_id=ticket.id, kind="reply", author_kind="staff",
                                    author_staff_id=staff.id, payload={"text": answer}))
        await uow.commit()
        return ticket.id, staff.id
