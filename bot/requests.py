"""Requests: free text first (intake), the conversation with the assignee, "My requests" and CSAT.

Everything the client writes goes to `handlers.intake.handle_inbound` with `message_key=tg:<update_id>`, so
a redelivered update never opens a second ticket. While a ticket is in conversation (an employee is working
on it or waiting for the client), messages, photos, documents and voice notes are added to that ticket.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from aiogram import F, Router
from aiogram.filters import StateFilter
from aiogram.fsm.context import FSMContext
from aiogram.types import CallbackQuery, Message, Update

from bot import keyboards as kb
from bot.filters import on_loop
from bot.fsm import Problem, Rating
from bot.menu import require_client
from bot.texts import esc, labels, split_text, truncate
from handlers.callbacks import decode
from handlers.context import AppContext
from handlers.dto import Attachment, ClientProfile, IntakeResult, TelegramSender, TicketSummary

log = logging.getLogger(__name__)

CONVERSATION_STATUSES = ("in_progress", "waiting_client")
PENDING = "pending"  # FSM data: the question waiting for a topic choice or a "did this help?" answer


# ----------------------------------------------------------------- rendering


def format_due(ctx: AppContext, ticket: TicketSummary, when: datetime) -> str:
    try:
        zone = ctx.config.calendar_of(ticket.department_code).zone
    except Exception:  # an unknown department code must not break the reply
        zone = None
    local = when.astimezone(zone) if zone is not None else when
    return f"{local.strftime('%d.%m.%Y %H:%M')} ({local.tzname()})"


def ticket_opened_text(ctx: AppContext, lang: str, ticket: TicketSummary) -> str:
    text = ctx.t("bot_ticket_opened", lang, number=esc(ticket.number), department=esc(ticket.department_name))
    if ticket.first_response_due is not None:
        text += "\n" + ctx.t("bot_ticket_expect", lang, due=format_due(ctx, ticket, ticket.first_response_due))
    return text


def status_text(ctx: AppContext, lang: str, status: str) -> str:
    key = f"bot_status_{status}"
    return ctx.t(key, lang) if ctx.t.has(key) else esc(status)


async def render_intake(message: Message, ctx: AppContext, lang: str, state: FSMContext, result: IntakeResult,
                        *, client: ClientProfile | None, text: str, message_key: str) -> None:
    outcome = result.outcome
    if outcome == "duplicate":
        # Only an attempt that failed before its answer reaches here (fully handled updates are filtered by the
        # webhook): repeat what matters, the ticket number; never open anything new.
        original = result.extra.get("original_outcome", "")
        if result.ticket is not None and original in ("ticket_opened", "ticket_appended"):
            await message.answer(ticket_opened_text(ctx, lang, result.ticket) if original == "ticket_opened"
                                 else ctx.t("bot_ticket_appended", lang, number=esc(result.ticket.number)))
        return
    if outcome == "balance":
        from bot.balance import send_balance

        if client is None:
            await require_client(message, ctx, lang, client)
        else:
            await send_balance(message, ctx, lang, client)
    elif outcome == "documents":
        from bot.documents import ask_for_missing, send_documents
        from handlers.dto import DocumentQuery

        if client is None:
            await require_client(message, ctx, lang, client)
            return
        query = result.documents_query or DocumentQuery()
        if query.complete:
            await send_documents(message, ctx, lang, client, query)
        else:
            await ask_for_missing(message, ctx, lang, state, query)
    elif outcome == "knowledge" and result.knowledge is not None:
        answer = result.knowledge
        await state.update_data({PENDING: {"text": text, "key": message_key, "topic": result.topic}})
        body = f"<b>{esc(answer.title)}</b>\n\n{esc(answer.answer)}"
        for chunk in split_text(body)[:-1]:
            await message.answer(chunk)
        await message.answer(split_text(body)[-1] + "\n\n" + ctx.t("bot_kb_helped", lang), reply_markup=kb.inline([[
            (ctx.t("bot_yes", lang), kb.client_data("kb_yes", answer.article_id)),
            (ctx.t("bot_no", lang), kb.client_data("kb_no", answer.article_id)),
        ]]))
    elif outcome == "choose_topic":
        await state.update_data({PENDING: {"text": text, "key": message_key, "topic": None}})
        rows = [[(truncate(choice.title, 60), kb.client_data("topic", choice.topic))] for choice in result.choices]
        other = ctx.config.out_of_scope_topic
        if other not in {choice.topic for choice in result.choices}:
            rows.append([(ctx.t("bot_topic_other", lang), kb.client_data("topic", other))])
        await message.answer(ctx.t("bot_choose_topic", lang), reply_markup=kb.inline(rows))
    elif outcome == "ticket_opened" and result.ticket is not None:
        await message.answer(ticket_opened_text(ctx, lang, result.ticket),
                             reply_markup=kb.main_menu(ctx, lang) if client is not None else None)
    elif outcome == "ticket_appended" and result.ticket is not None:
        await message.answer(ctx.t("bot_ticket_appended", lang, number=esc(result.ticket.number)))
    elif outcome == "needs_identification":
        await require_client(message, ctx, lang, None)
    else:
        log.error("intake outcome %r without its data (interaction %s)", outcome, result.interaction_id)
        await message.answer(ctx.t("error_apology", lang))


def message_key_of(update: Update | None, suffix: str = "") -> str:
    return f"tg:{update.update_id if update is not None else 'local'}{suffix}"


def attachments_of(message: Message) -> list[Attachment]:
    if message.photo:
        return [Attachment(kind="photo", ref=message.photo[-1].file_id, content_type="image/jpeg")]
    if message.document is not None:
        return [Attachment(kind="document", ref=message.document.file_id, content_type=message.document.mime_type)]
    if message.voice is not None:
        return [Attachment(kind="voice", ref=message.voice.file_id, content_type=message.voice.mime_type)]
    if message.video is not None:
        return [Attachment(kind="video", ref=message.video.file_id, content_type=message.video.mime_type)]
    if message.audio is not None:
        return [Attachment(kind="audio", ref=message.audio.file_id, content_type=message.audio.mime_type)]
    return []


async def run_intake(message: Message, ctx: AppContext, lang: str, state: FSMContext, *, text: str,
                     client: ClientProfile | None, message_key: str, forced_topic: str | None = None,
                     attachments: Sequence[Attachment] = ()) -> IntakeResult:
    from handlers.intake import handle_inbound

    assert message.from_user is not None
    result = await handle_inbound(
        ctx, channel="telegram", text=text, language=lang, client=client, sender=str(message.from_user.id),
        message_key=message_key, attachments=list(attachments), forced_topic=forced_topic,
    )
    await render_intake(message, ctx, lang, state, result, client=client, text=text, message_key=message_key)
    return result


async def conversation_ticket(ctx: AppContext, client: ClientProfile | None,
                              sender: TelegramSender | None = None) -> TicketSummary | None:
    """The open ticket the client is talking about with an employee, if any."""
    if client is None:
        return None
    if (sender is not None and sender.client is not None and sender.client.customer_id == client.customer_id
            and sender.client_ticket_status not in CONVERSATION_STATUSES):
        return None  # known since the start of this update (bot/middlewares.py): no second look-up
    from handlers.tickets import client_open_ticket

    ticket = await client_open_ticket(ctx, client)
    return ticket if ticket is not None and ticket.status in CONVERSATION_STATUSES else None


# ----------------------------------------------------------------- handlers


async def on_text(message: Message, ctx: AppContext, lang: str, state: FSMContext, event_update: Update,
                  client: ClientProfile | None = None, sender: TelegramSender | None = None) -> None:
    from handlers.tickets import add_client_message

    text = message.text or ""
    key = message_key_of(event_update)
    data = await state.get_data()
    pending_files = [Attachment(**item) for item in data.get("pending_files") or []]
    if pending_files:
        await state.update_data(pending_files=None)
    ticket = await conversation_ticket(ctx, client, sender)
    if ticket is not None and client is not None:
        await add_client_message(ctx, client, ticket.id, text, message_key=key, attachments=pending_files)
        await message.answer(ctx.t("bot_added_to_ticket", lang, number=esc(ticket.number)))
        return
    await run_intake(message, ctx, lang, state, text=text, client=client, message_key=key,
                     attachments=pending_files)


async def on_problem_button(message: Message, ctx: AppContext, lang: str, state: FSMContext) -> None:
    await state.set_state(Problem.text)
    await state.update_data(forced_topic=None)
    await message.answer(ctx.t("bot_describe_problem", lang))


async def on_problem_text(message: Message, ctx: AppContext, lang: str, state: FSMContext, event_update: Update,
                          client: ClientProfile | None = None) -> None:
    data = await state.get_data()
    forced = data.get("forced_topic")
    await state.set_state(None)
    await run_intake(message, ctx, lang, state, text=message.text or "", client=client,
                     message_key=message_key_of(event_update),
                     forced_topic=forced if forced in ctx.config.topics else None)


async def on_media(message: Message, ctx: AppContext, lang: str, state: FSMContext, event_update: Update,
                   client: ClientProfile | None = None) -> None:
    from handlers.tickets import add_client_message, client_open_ticket

    files = attachments_of(message)
    caption = message.caption or ""
    key = message_key_of(event_update)
    ticket = await client_open_ticket(ctx, client) if client is not None else None
    if ticket is not None and client is not None:
        await add_client_message(ctx, client, ticket.id, caption, message_key=key, attachments=files)
        await message.answer(ctx.t("bot_added_to_ticket", lang, number=esc(ticket.number)))
        return
    if caption.strip():
        await run_intake(message, ctx, lang, state, text=caption, client=client, message_key=key, attachments=files)
        return
    # A bare photo says nothing about the topic: keep the file and ask for words.
    known = list((await state.get_data()).get("pending_files") or [])
    known.extend({"kind": f.kind, "ref": f.ref, "content_type": f.content_type} for f in files)
    await state.update_data(pending_files=known[-10:])
    await message.answer(ctx.t("bot_media_describe", lang))


async def on_ask(query: CallbackQuery, ctx: AppContext, lang: str, state: FSMContext) -> None:
    """"Write to my manager" / "call an operator": the next message becomes a request on that topic."""
    callback = decode(query.data)
    await query.answer()
    if callback is None or callback.value not in ctx.config.topics or not isinstance(query.message, Message):
        return
    await state.set_state(Problem.text)
    await state.update_data(forced_topic=callback.value)
    await query.message.answer(ctx.t("bot_describe_for_manager", lang))


async def _pending(query: CallbackQuery, ctx: AppContext, lang: str, state: FSMContext) -> dict[str, Any] | None:
    pending = (await state.get_data()).get(PENDING)
    if not pending or not isinstance(query.message, Message):
        if isinstance(query.message, Message):
            await query.message.answer(ctx.t("bot_pending_lost", lang))
        return None
    return dict(pending)


async def on_topic(query: CallbackQuery, ctx: AppContext, lang: str, state: FSMContext,
                   client: ClientProfile | None = None) -> None:
    callback = decode(query.data)
    await query.answer()
    if callback is None or callback.value not in ctx.config.topics:
        return
    pending = await _pending(query, ctx, lang, state)
    if pending is None:
        return
    await state.update_data({PENDING: None})
    assert isinstance(query.message, Message)
    await _remove_buttons(query)
    await _intake_for(query, ctx, lang, state, client, pending, forced_topic=callback.value, suffix=":topic")


async def on_knowledge_answer(query: CallbackQuery, ctx: AppContext, lang: str, state: FSMContext,
                              client: ClientProfile | None = None) -> None:
    callback = decode(query.data)
    await query.answer()
    if callback is None or not isinstance(query.message, Message):
        return
    await _remove_buttons(query)
    if callback.action == "kb_yes":
        await state.update_data({PENDING: None})
        await query.message.answer(ctx.t("bot_kb_thanks", lang))
        return
    pending = await _pending(query, ctx, lang, state)
    if pending is None:
        return
    await state.update_data({PENDING: None})
    topic = pending.get("topic") if pending.get("topic") in ctx.config.topics else ctx.config.out_of_scope_topic
    await _intake_for(query, ctx, lang, state, client, pending, forced_topic=topic, suffix=":kb")


async def _intake_for(query: CallbackQuery, ctx: AppContext, lang: str, state: FSMContext,
                      client: ClientProfile | None, pending: dict[str, Any], *, forced_topic: str, suffix: str) -> None:
    from handlers.intake import handle_inbound

    assert isinstance(query.message, Message)
    key = str(pending.get("key") or f"tg:cb:{query.id}") + suffix
    text = str(pending.get("text") or "")
    result = await handle_inbound(ctx, channel="telegram", text=text, language=lang, client=client,
                                  sender=str(query.from_user.id), message_key=key, forced_topic=forced_topic)
    await render_intake(query.message, ctx, lang, state, result, client=client, text=text, message_key=key)


async def _remove_buttons(query: CallbackQuery) -> None:
    try:  # pressing twice must not act twice; removing the buttons also tells the user it was taken
        if isinstance(query.message, Message):
            await query.message.edit_reply_markup(reply_markup=None)
    except Exception as exc:
        log.debug("could not remove buttons: %s", exc)


# ----------------------------------------------------------------- my requests and history


async def on_my_requests(message: Message, ctx: AppContext, lang: str, state: FSMContext,
                         client: ClientProfile | None = None) -> None:
    from handlers.tickets import list_client_tickets

    await state.set_state(None)
    if not await require_client(message, ctx, lang, client):
        return
    assert client is not None
    tickets = await list_client_tickets(ctx, client, limit=10)
    if not tickets:
        await message.answer(ctx.t("bot_no_requests", lang))
        return
    rows = []
    lines = [ctx.t("bot_requests_title", lang)]
    for ticket in tickets:
        lines.append(ctx.t("bot_request_line", lang, number=esc(ticket.number),
                           date=ticket.created_at.strftime("%d.%m.%Y"), status=status_text(ctx, lang, ticket.status),
                           topic=esc(ticket.topic_title), subject=esc(truncate(ticket.subject, 80))))
        rows.append([(f"{ticket.number} — {status_text(ctx, lang, ticket.status)}",
                      kb.client_data("tk", ticket.id))])
    await message.answer("\n".join(lines), reply_markup=kb.inline(rows))


def render_history(ctx: AppContext, lang: str, ticket: TicketSummary, events: Sequence[Any]) -> str:
    lines = [ctx.t("bot_history_title", lang, number=esc(ticket.number), status=status_text(ctx, lang, ticket.status),
                   topic=esc(ticket.topic_title))]
    for event in events:
        who = esc(event.author_name) if event.author_name else ctx.t(f"bot_author_{event.author_kind}", lang) \
            if ctx.t.has(f"bot_author_{event.author_kind}") else esc(event.author_kind)
        kind = ctx.t(f"bot_event_{event.kind}", lang) if ctx.t.has(f"bot_event_{event.kind}") else esc(event.kind)
        line = f"<b>{event.created_at.strftime('%d.%m %H:%M')}</b> {kind} — {who}"
        if event.text:
            line += "\n" + esc(truncate(event.text, 500))
        lines.append(line)
    return "\n\n".join(lines)


async def on_ticket_history(query: CallbackQuery, ctx: AppContext, lang: str,
                            client: ClientProfile | None = None) -> None:
    from handlers.tickets import get_client_ticket, ticket_history

    callback = decode(query.data)
    await query.answer()
    if callback is None or callback.int_value is None or not isinstance(query.message, Message):
        return
    if not await require_client(query.message, ctx, lang, client):
        return
    assert client is not None
    ticket = await get_client_ticket(ctx, client, callback.int_value)  # NotFound for someone else's ticket
    events = await ticket_history(ctx, client.actor, ticket.id)
    for chunk in split_text(render_history(ctx, lang, ticket, events[-30:])):
        await query.message.answer(chunk)


# ----------------------------------------------------------------- rating (CSAT)


async def on_rate(query: CallbackQuery, ctx: AppContext, lang: str, state: FSMContext,
                  client: ClientProfile | None = None) -> None:
    from handlers.tickets import parse_rating, rate_ticket

    parsed = parse_rating(query.data)  # c:rate:<ticket id>_<score>; ownership is checked by rate_ticket
    if parsed is None or not isinstance(query.message, Message):
        await query.answer()
        return
    if client is None:
        await query.answer(ctx.t("bot_not_allowed", lang), show_alert=True)
        return
    ticket_id, score = parsed
    await rate_ticket(ctx, client, ticket_id, score)  # NotFound for someone else's ticket
    await query.answer(ctx.t("bot_rating_saved", lang))
    await _remove_buttons(query)
    await state.set_state(Rating.comment)
    await state.update_data(rating={"ticket": ticket_id, "score": score})
    await query.message.answer(ctx.t("bot_rating_comment", lang), reply_markup=kb.inline(
        [[(ctx.t("bot_skip", lang), kb.client_data("rate_skip", ticket_id))]]))


async def on_rating_comment(message: Message, ctx: AppContext, lang: str, state: FSMContext,
                            client: ClientProfile | None = None) -> None:
    from handlers.tickets import rate_ticket

    rating = (await state.get_data()).get("rating") or {}
    await state.set_state(None)
    await state.update_data(rating=None)
    if client is not None and rating:
        await rate_ticket(ctx, client, int(rating["ticket"]), int(rating["score"]), (message.text or "")[:2000])
    await message.answer(ctx.t("bot_rating_thanks", lang), reply_markup=kb.main_menu(ctx, lang))


async def on_rating_skip(query: CallbackQuery, ctx: AppContext, lang: str, state: FSMContext) -> None:
    await query.answer()
    await _remove_buttons(query)
    await state.set_state(None)
    await state.update_data(rating=None)
    if isinstance(query.message, Message):
        await query.message.answer(ctx.t("bot_rating_thanks", lang))


MEDIA = on_loop(F.photo | F.document | F.voice | F.video | F.audio)


def build_router(ctx: AppContext) -> Router:
    router = Router(name="requests")
    router.message.register(on_my_requests, on_loop(F.text.in_(labels(ctx, "menu_requests"))))
    router.message.register(on_problem_button, on_loop(F.text.in_(labels(ctx, "menu_problem"))))
    router.callback_query.register(on_ask, on_loop(F.data.startswith("c:ask:")))
    router.callback_query.register(on_topic, on_loop(F.data.startswith("c:topic:")))
    router.callback_query.register(on_knowledge_answer,
                                   on_loop(F.data.startswith("c:kb_yes:") | F.data.startswith("c:kb_no:")))
    router.callback_query.register(on_ticket_history, on_loop(F.data.startswith("c:tk:")))
    router.callback_query.register(on_rate, on_loop(F.data.startswith("c:rate:")))
    router.callback_query.register(on_rating_skip, on_loop(F.data.startswith("c:rate_skip:")))
    router.message.register(on_rating_comment, StateFilter(Rating.comment), on_loop(F.text))
    router.message.register(on_problem_text, StateFilter(Problem.text), on_loop(F.text))
    router.message.register(on_media, MEDIA)
    router.message.register(on_text, on_loop(F.text), on_loop(~F.text.startswith("/")))
    return router
