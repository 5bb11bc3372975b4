"""Staff side through the webhook: server-side permission checks on every button and command."""

from __future__ import annotations

from sqlalchemy import select

from storage.models import KnowledgeArticle, Staff
from tests.e2e.bot_harness import (
    bot_app,
    buttons,
    deliver_outbox,
    link_staff,
    open_ticket_via_bot,
    ticket_row,
)
from tests.fakes import updates as u

CLIENT = 6670001
OTHER_CLIENT = 6670002
SUPPORT = 7780001
SUPPORT_LEAD = 7780002
FINANCE = 7780003


async def _setup(env) -> None:  # type: ignore[no-untyped-def]
    await link_staff(env, "support1@svyazservice.example", SUPPORT)
    await link_staff(env, "support.lead@svyazservice.example", SUPPORT_LEAD)
    await link_staff(env, "finance@svyazservice.example", FINANCE)
    await env.send(u.contact(CLIENT, "+79161234567"))


async def _alert_answer(env, user_id: int, data: str) -> str | None:  # type: ignore[no-untyped-def]
    before = len(env.api.calls)
    assert (await env.post(u.callback(user_id, data))).status == 200
    answers = env.calls_since(before, "answerCallbackQuery")
    return answers[0].data.get("text") if answers else None


async def _staff_id(env, telegram_id: int) -> int:  # type: ignore[no-untyped-def]
    async with env.services.uow() as uow:
        staff = await uow.staff.by_telegram_id(telegram_id)
        assert staff is not None
        return staff.id


async def test_forged_buttons_are_refused_server_side(demo_services, fake_bot_api):
    services = demo_services
    t = services.ctx.t
    async with bot_app(services, fake_bot_api) as env:
        await _setup(env)
        ticket = await open_ticket_via_bot(env, CLIENT, "Интернет не работает второй день, помогите")
        denied = t("bot_not_allowed", "ru")
        original = await ticket_row(env, ticket.id)
        # A client forging a staff button.
        for action in ("resolve", "take", "reply", "history", "reassign"):
            assert await _alert_answer(env, CLIENT, f"t:{action}:{ticket.id}") == denied
        # A stranger, too.
        assert await _alert_answer(env, OTHER_CLIENT, f"t:resolve:{ticket.id}") == denied
        # A staff member of another department.
        assert await _alert_answer(env, FINANCE, f"t:resolve:{ticket.id}") == denied
        assert await _alert_answer(env, FINANCE, f"t:take:{ticket.id}") == denied
        assert await _alert_answer(env, FINANCE, f"t:to_dept:{ticket.id}.finance") == denied
        row = await ticket_row(env, ticket.id)
        assert (row.status, row.assignee_id, row.department_id) == (
            original.status, original.assignee_id, original.department_id)
        assert row.status not in ("resolved", "closed")
        # A client forging another client's rating or history.
        await env.send(u.contact(OTHER_CLIENT, "+74951112233"))
        texts = await env.texts(u.callback(OTHER_CLIENT, f"c:tk:{ticket.id}"))
        assert texts == [] or t("bot_not_found", "ru") in texts
        assert await _alert_answer(env, OTHER_CLIENT, f"c:rate:{ticket.id}_1") in (t("bot_not_found", "ru"), None)
        assert (await ticket_row(env, ticket.id)).csat_score is None


async def test_staff_commands_and_buttons(demo_services, fake_bot_api):
    services = demo_services
    t = services.ctx.t
    async with bot_app(services, fake_bot_api) as env:
        await _setup(env)
        ticket = await open_ticket_via_bot(env, CLIENT, "Нет интернета, роутер горит красным")

        queue = await env.texts(u.command(SUPPORT, "/queue"))
        assert ticket.number in queue[0]
        assert ticket.number not in (await env.texts(u.command(FINANCE, "/queue")))[0]
        assert await env.texts(u.command(FINANCE, "/my")) == [t("bot_staff_list_empty", "ru")]

        sent = await env.send(u.command(SUPPORT, f"/ticket {ticket.number}"))
        assert ticket.number in sent[0]["text"] and f"t:take:{ticket.id}" in buttons(sent[0])
        assert t("bot_not_found", "ru") in await env.texts(u.command(FINANCE, f"/ticket {ticket.number}")) or \
            t("bot_not_allowed", "ru") in await env.texts(u.command(FINANCE, f"/ticket {ticket.number}"))

        # Reply with the button, then the text.
        texts = await env.texts(u.callback(SUPPORT, f"t:reply:{ticket.id}"))
        assert texts == [t("bot_staff_write_reply", "ru", number=ticket.number)]
        texts = await env.texts(u.message(SUPPORT, "Проверили линию, перезагрузите роутер."))
        assert texts == [t("bot_staff_reply_sent", "ru", number=ticket.number)]
        await deliver_outbox(env)
        assert any("перезагрузите роутер" in x for x in fake_bot_api.texts(CLIENT))
        assert ticket.number in (await env.texts(u.command(SUPPORT, "/my")))[0]

        # History, reassign to field engineers.
        history = await env.texts(u.callback(SUPPORT, f"t:history:{ticket.id}"))
        assert "перезагрузите роутер" in history[0]
        sent = await env.send(u.callback(SUPPORT, f"t:reassign:{ticket.id}"))
        assert f"t:to_dept:{ticket.id}.field_service" in buttons(sent[0])
        async with services.uow() as uow:
            colleague = await uow.staff.by_email("support2@svyazservice.example")
            assert colleague is not None
        assert f"t:to_staff:{ticket.id}.{colleague.id}" in buttons(sent[0])
        assert await _alert_answer(env, FINANCE, f"t:to_staff:{ticket.id}.{colleague.id}") == t("bot_not_allowed", "ru")
        texts = await env.texts(u.callback(SUPPORT, f"t:to_staff:{ticket.id}.{colleague.id}"))
        assert any("Игорь Новиков" in x for x in texts), texts
        assert (await ticket_row(env, ticket.id)).assignee_id == colleague.id
        await env.send(u.callback(SUPPORT_LEAD, f"t:to_staff:{ticket.id}.{(await _staff_id(env, SUPPORT))}"))
        assert (await ticket_row(env, ticket.id)).assignee_id == await _staff_id(env, SUPPORT)

        # Duty and statistics (supervisors only).
        assert await env.texts(u.command(SUPPORT, "/duty off")) == [t("bot_duty_off", "ru")]
        async with services.uow() as uow:
            staff = await uow.session.scalar(select(Staff).where(Staff.telegram_id == SUPPORT))
            assert staff is not None and staff.on_duty is False
        assert await env.texts(u.command(SUPPORT, "/duty on")) == [t("bot_duty_on", "ru")]
        assert await env.texts(u.command(SUPPORT, "/stats")) == [t("bot_not_allowed", "ru")]
        stats = await env.texts(u.command(SUPPORT_LEAD, "/stats 30"))
        assert "CSAT" in stats[0]

        # Resolve, then the answer becomes a knowledge-base article.
        await env.send(u.callback(SUPPORT, f"t:resolve:{ticket.id}"))
        assert (await ticket_row(env, ticket.id)).status == "resolved"
        texts = await env.texts(u.command(SUPPORT, f"/kb {ticket.number}"))
        assert ticket.number in texts[0]
        async with services.uow() as uow:
            article = await uow.session.scalar(select(KnowledgeArticle).where(
                KnowledgeArticle.source_ticket_id == ticket.id))
        assert article is not None and "перезагрузите роутер" in article.answer

        # Moving a ticket on to another department with the reassign button.
        other = await open_ticket_via_bot(env, CLIENT, "Интернет стал очень медленным, скорость упала вечером",
                                          topic="slow_connection")
        async with services.uow() as uow:
            before = await uow.tickets.get(other.id)
            assert before is not None
            assert (await uow.departments.get(before.department_id)).code == "tech_support"
        texts = await env.texts(u.callback(SUPPORT, f"t:to_dept:{other.id}.network"))
        assert any(other.number in x and "Отдел развития сети" in x for x in texts), texts
        async with services.uow() as uow:
            moved = await uow.tickets.get(other.id)
            assert moved is not None
            assert (await uow.departments.get(moved.department_id)).code == "network"


async def test_staff_writing_again_is_reachable_again_and_a_deactivated_one_is_a_stranger(demo_services, fake_bot_api):
    """The webhook's one look-up (who is writing, was this update handled) drives the staff side: a staff
    member whose alerts bounced is marked reachable by writing, and deactivation takes effect at once."""
    services = demo_services
    async with bot_app(services, fake_bot_api) as env:
        await _setup(env)
        staff_id = await _staff_id(env, SUPPORT)
        async with services.uow() as uow:
            (await uow.staff.get(staff_id)).telegram_unreachable = True
            await uow.commit()
        assert (await env.post(u.command(SUPPORT, "/queue"))).status == 200
        async with services.uow() as uow:
            assert not (await uow.staff.get(staff_id)).telegram_unreachable
        async with services.uow() as uow:
            (await uow.staff.get(staff_id)).is_active = False
            await uow.commit()
        before = len(env.api.calls)
        assert (await env.post(u.callback(SUPPORT, f"t:take:{10**6}"))).status == 200
        answers = env.calls_since(before, "answerCallbackQuery")
        assert answers and answers[0].data.get("text") == services.ctx.t("bot_not_allowed", "ru")
