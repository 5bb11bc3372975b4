"""The whole client journey and the staff side, through the webhook, asserting on captured Bot API calls."""

from __future__ import annotations

from sqlalchemy import func, select

from storage.models import TicketAttachment
from tests.e2e.bot_harness import (
    alert_message_id,
    bot_app,
    buttons,
    deliver_outbox,
    link_staff,
    open_ticket_via_bot,
    ticket_row,
)
from tests.fakes import updates as u

CLIENT = 6660001  # will share Ivanov's phone (+79161234567, account 200001, a person)
SUPPORT = 7770001  # support1@: tech support agent
FINANCE = 7770002  # finance@: another department
OTHER_CLIENT = 6660002


async def test_whole_client_journey(demo_services, fake_bot_api):
    services = demo_services
    t = services.ctx.t
    async with bot_app(services, fake_bot_api) as env:
        await link_staff(env, "support1@svyazservice.example", SUPPORT)
        await link_staff(env, "support2@svyazservice.example", SUPPORT + 10)
        await link_staff(env, "support.lead@svyazservice.example", SUPPORT + 11)

        # Start and identification.
        await env.send(u.command(CLIENT, "/start"))
        greeting = await env.texts(u.contact(CLIENT, "+79161234567"))
        assert "Иванов Иван Иванович" in greeting[0]

        # Balance from the menu.
        balance = await env.texts(u.message(CLIENT, t("menu_balance", "ru")))
        assert "200001" in balance[0] and "Баланс" in balance[0] and "Как оплатить" in balance[0]

        # Documents: kind, then period by buttons, then files as Telegram documents.
        sent = await env.send(u.message(CLIENT, t("menu_documents", "ru")))
        assert "c:dk:invoice" in buttons(sent[0])
        sent = await env.send(u.callback(CLIENT, "c:dk:invoice"))
        assert "c:dp:invoice.6m" in buttons(sent[0])
        before = len(fake_bot_api.calls)
        await env.send(u.callback(CLIENT, "c:dp:invoice.6m"))
        documents = env.calls_since(before, "sendDocument")
        assert documents, "invoices for the last 6 months must arrive as files"
        first = documents[0].data["document"]
        assert first["filename"].endswith(".pdf") and first["content"][:4] == b"%PDF"

        # A problem: a ticket with its number, department and expected answer time.
        ticket = await open_ticket_via_bot(env, CLIENT, "Не работает интернет с утра, роутер мигает красным")
        assert ticket.customer_id is not None and ticket.channel == "telegram"

        # The alert reaches the tech support staff with action buttons.
        await deliver_outbox(env)
        alerts = [m for m in fake_bot_api.sent() if m.get("chat_id") in (SUPPORT, SUPPORT + 10, SUPPORT + 11)
                  and f"t:take:{ticket.id}" in buttons(m)]
        assert alerts, "the department must be alerted with buttons"
        alert = next((m for m in alerts if m["chat_id"] == SUPPORT), alerts[0])
        staff_chat = alert["chat_id"]

        # Staff takes it and answers by replying to the alert.
        texts = await env.texts(u.callback(staff_chat, f"t:take:{ticket.id}"))
        assert t("bot_staff_taken", "ru", number=ticket.number) in texts
        assert (await ticket_row(env, ticket.id)).status == "in_progress"
        message_id = await alert_message_id(env, ticket.id, staff_chat)
        reply = u.message(staff_chat, "Перезагрузите роутер, пожалуйста, и напишите, помогло ли.",
                          reply_to=u.bot_message(staff_chat, message_id, alert["text"]))
        assert t("bot_staff_reply_sent", "ru", number=ticket.number) in await env.texts(reply)
        await deliver_outbox(env)
        assert any("Перезагрузите роутер" in text for text in fake_bot_api.texts(CLIENT))

        # The client's answer and a photo go to the ticket and are relayed to the assignee.
        texts = await env.texts(u.message(CLIENT, "Перезагрузил, всё равно не работает"))
        assert texts == [t("bot_added_to_ticket", "ru", number=ticket.number)]
        await env.send(u.photo(CLIENT, caption="Вот фото роутера"))
        async with services.uow() as uow:
            photos = await uow.session.scalar(select(func.count()).select_from(TicketAttachment)
                                              .where(TicketAttachment.ticket_id == ticket.id))
        assert photos == 1
        await deliver_outbox(env)
        assert any("всё равно не работает" in text for text in fake_bot_api.texts(staff_chat))

        # Resolution: the client is told and asked for a rating.
        texts = await env.texts(u.callback(staff_chat, f"t:resolve:{ticket.id}"))
        assert t("bot_staff_resolved", "ru", number=ticket.number) in texts
        await deliver_outbox(env)
        rating_prompt = [m for m in fake_bot_api.sent(chat_id=CLIENT) if f"c:rate:{ticket.id}_5" in buttons(m)]
        assert rating_prompt, "the client must be asked for a 1-5 rating"

        # Rating and comment.
        await env.send(u.callback(CLIENT, f"c:rate:{ticket.id}_5"))
        texts = await env.texts(u.message(CLIENT, "Спасибо, быстро помогли"))
        assert texts == [t("bot_rating_thanks", "ru")]
        row = await ticket_row(env, ticket.id)
        assert row.csat_score == 5 and row.csat_comment == "Спасибо, быстро помогли"

        # My requests and the history of one.
        sent = await env.send(u.message(CLIENT, t("menu_requests", "ru")))
        assert ticket.number in sent[0]["text"] and f"c:tk:{ticket.id}" in buttons(sent[0])
        history = await env.texts(u.callback(CLIENT, f"c:tk:{ticket.id}"))
        assert "Перезагрузите роутер" in history[0]
