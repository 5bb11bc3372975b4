"""Staff side: alert buttons (Take, Reply, Resolve, Reassign, History), replies to alerts, and commands.

Every action goes through a permission-checked use case: the role comes from the server-side staff record
of the pressing Telegram user, never from the callback data (which can be forged).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from datetime import timedelta
from typing import Any

from aiogram import F, Router
from aiogram.filters import Command, CommandObject, StateFilter
from aiogram.fsm.context import FSMContext
from aiogram.types import CallbackQuery, Message

from bot import keyboards as kb
from bot.filters import on_loop
from bot.fsm import StaffReply
from bot.requests import format_due, render_history, status_text
from bot.texts import esc, split_text, truncate
from handlers.callbacks import decode
from handlers.context import AppContext
from handlers.dto import StaffProfile, TicketSummary

log = logging.getLogger(__name__)
TICKET_ACTIONS = ("take", "reply", "resolve", "reassign", "history", "to_dept", "to_staff")
MAX_LISTED = 20


def staff_help(ctx: AppContext, lang: str, staff: StaffProfile) -> str:
    text = ctx.t("bot_staff_help", lang, name=esc(staff.name), department=esc(_department_name(ctx, staff, lang)),
                 duty=ctx.t("bot_duty_on" if staff.on_duty else "bot_duty_off", lang))
    if staff.role in ("supervisor", "admin"):
        text += "\n" + ctx.t("bot_staff_help_stats", lang)
    return text


def _department_name(ctx: AppContext, staff: StaffProfile, lang: str) -> str:
    try:
        return ctx.config.department(staff.department_code).name.get(lang)
    except Exception:
        return staff.department_code


def ticket_line(ctx: AppContext, lang: str, ticket: TicketSummary) -> str:
    due = ticket.first_response_due if ticket.status == "new" else ticket.resolution_due
    due_text = f" · ⏰ {format_due(ctx, ticket, due)}" if due is not None else ""
    priority = ctx.t(f"bot_priority_{ticket.priority}", lang) if ctx.t.has(f"bot_priority_{ticket.priority}") \
        else esc(ticket.priority)
    return (f"<b>{esc(ticket.number)}</b> · {priority} · {status_text(ctx, lang, ticket.status)} · "
            f"{esc(ticket.topic_title)}{due_text}\n{esc(truncate(ticket.subject, 100))}")


async def send_ticket_list(message: Message, ctx: AppContext, lang: str, title: str,
                           tickets: Sequence[TicketSummary]) -> None:
    if not tickets:
        await message.answer(ctx.t("bot_staff_list_empty", lang))
        return
    shown = list(tickets)[:MAX_LISTED]
    body = title + "\n\n" + "\n\n".join(ticket_line(ctx, lang, t) for t in shown)
    if len(tickets) > len(shown):
        body += "\n\n" + ctx.t("bot_staff_list_more", lang, count=len(tickets) - len(shown))
    rows = [[(f"{t.number}", kb.ticket_data("history", t.id))] for t in shown[:10]]
    chunks = split_text(body)
    for chunk in chunks[:-1]:
        await message.answer(chunk)
    await message.answer(chunks[-1], reply_markup=kb.inline(rows))


# ----------------------------------------------------------------- alert buttons


async def on_ticket_button(query: CallbackQuery, ctx: AppContext, lang: str, state: FSMContext,
                           staff: StaffProfile | None = None) -> None:
    from handlers.tickets import (
        get_staff_ticket,
        reassign_ticket,
        resolve_ticket,
        take_ticket,
        ticket_history,
    )

    callback = decode(query.data)
    if callback is None or callback.action not in TICKET_ACTIONS:
        await query.answer(ctx.t("bot_button_stale", lang), show_alert=True)
        return
    if staff is None:
        # A client (or a stranger) pressing a staff button: forged or forwarded data.
        log.warning("non-staff user %s pressed %r", query.from_user.id, query.data)
        await query.answer(ctx.t("bot_not_allowed", lang), show_alert=True)
        return
    actor = staff.actor
    message = query.message if isinstance(query.message, Message) else None
    if callback.action == "to_dept":
        ticket_part, _, department = callback.value.partition(".")
        if not ticket_part.isdigit() or department not in {d.code for d in ctx.config.departments}:
            await query.answer(ctx.t("bot_button_stale", lang), show_alert=True)
            return
        ticket = await reassign_ticket(ctx, actor, int(ticket_part), department_code=department)
        await query.answer(ctx.t("bot_staff_reassigned", lang, number=ticket.number, department=ticket.department_name))
        if message is not None:
            await message.answer(ctx.t("bot_staff_reassigned", lang, number=esc(ticket.number),
                                       department=esc(ticket.department_name)))
        return
    if callback.action == "to_staff":
        ticket_part, _, person = callback.value.partition(".")
        if not ticket_part.isdigit() or not person.isdigit() or len(person) > 12:
            await query.answer(ctx.t("bot_button_stale", lang), show_alert=True)
            return
        ticket = await reassign_ticket(ctx, actor, int(ticket_part), staff_id=int(person))
        who = ticket.assignee_name or ""
        await query.answer(ctx.t("bot_staff_reassigned", lang, number=ticket.number, department=who))
        if message is not None:
            await message.answer(ctx.t("bot_staff_reassigned", lang, number=esc(ticket.number), department=esc(who)))
        return
    ticket_id = callback.int_value
    if ticket_id is None:
        await query.answer(ctx.t("bot_button_stale", lang), show_alert=True)
        return
    if callback.action == "take":
        ticket = await take_ticket(ctx, actor, ticket_id)
        await query.answer(ctx.t("bot_staff_taken", lang, number=ticket.number))
        if message is not None:
            await message.answer(ctx.t("bot_staff_taken", lang, number=esc(ticket.number)))
    elif callback.action == "reply":
        ticket = await get_staff_ticket(ctx, actor, ticket_id)  # permission check before asking for text
        await state.set_state(StaffReply.text)
        await state.update_data(reply_ticket=ticket.id)
        await query.answer()
        if message is not None:
            await message.answer(ctx.t("bot_staff_write_reply", lang, number=esc(ticket.number)))
    elif callback.action == "resolve":
        ticket = await resolve_ticket(ctx, actor, ticket_id)
        await query.answer(ctx.t("bot_staff_resolved", lang, number=ticket.number))
        if message is not None:
            await message.answer(ctx.t("bot_staff_resolved", lang, number=esc(ticket.number)))
    elif callback.action == "reassign":
        ticket = await get_staff_ticket(ctx, actor, ticket_id)
        await query.answer()
        buttons = [(d.name.get(lang), kb.ticket_data("to_dept", f"{ticket.id}.{d.code}"))
                   for d in ctx.config.departments if d.code != ticket.department_code]
        from handlers.staff_directory import department_staff

        people = [p for p in await department_staff(ctx, actor, ticket.department_code)
                  if p.staff_id != ticket.assignee_id]
        rows = [buttons[i:i + 2] for i in range(0, len(buttons), 2)]
        rows += [[(("🟢 " if p.on_duty else "⚪ ") + truncate(p.name, 40),
                   kb.ticket_data("to_staff", f"{ticket.id}.{p.staff_id}"))] for p in people[:10]]
        if message is not None:
            await message.answer(ctx.t("bot_staff_reassign_where", lang, number=esc(ticket.number)),
                                 reply_markup=kb.inline(rows))
    elif callback.action == "history":
        ticket = await get_staff_ticket(ctx, actor, ticket_id)
        events = await ticket_history(ctx, actor, ticket.id)
        await query.answer()
        if message is not None:
            chunks = split_text(render_history(ctx, lang, ticket, events[-40:]))
            for chunk in chunks[:-1]:
                await message.answer(chunk)
            await message.answer(chunks[-1], reply_markup=kb.staff_ticket_actions(ctx, lang, ticket.id))


# ----------------------------------------------------------------- answering the client


async def _send_reply(message: Message, ctx: AppContext, lang: str, staff: StaffProfile, ticket_id: int,
                      text: str) -> None:
    from handlers.tickets import reply_to_ticket

    if not text.strip():
        await message.answer(ctx.t("bot_staff_reply_empty", lang))
        return
    ticket = await reply_to_ticket(ctx, staff.actor, ticket_id, text)
    await message.answer(ctx.t("bot_staff_reply_sent", lang, number=esc(ticket.number)))


async def on_reply_state(message: Message, ctx: AppContext, lang: str, state: FSMContext,
                         staff: StaffProfile) -> None:
    ticket_id = (await state.get_data()).get("reply_ticket")
    await state.set_state(None)
    await state.update_data(reply_ticket=None)
    if not isinstance(ticket_id, int):
        await message.answer(ctx.t("bot_pending_lost", lang))
        return
    await _send_reply(message, ctx, lang, staff, ticket_id, message.text or message.caption or "")


async def on_alert_reply(message: Message, ctx: AppContext, lang: str, staff: StaffProfile) -> None:
    """A Telegram reply to an alert message answers that alert's ticket."""
    from handlers.tickets import ticket_for_alert_reply

    assert message.reply_to_message is not None
    ticket_id = await ticket_for_alert_reply(ctx, message.chat.id, message.reply_to_message.message_id)
    if ticket_id is None:
        await message.answer(ctx.t("bot_staff_not_an_alert", lang))
        return
    await _send_reply(message, ctx, lang, staff, ticket_id, message.text or message.caption or "")


# ----------------------------------------------------------------- commands


async def on_queue(message: Message, ctx: AppContext, lang: str, staff: StaffProfile) -> None:
    from handlers.tickets import staff_queue

    await send_ticket_list(message, ctx, lang, ctx.t("bot_staff_queue_title", lang), await staff_queue(ctx, staff.actor))


async def on_my(message: Message, ctx: AppContext, lang: str, staff: StaffProfile) -> None:
    from handlers.tickets import staff_tickets

    await send_ticket_list(message, ctx, lang, ctx.t("bot_staff_my_title", lang), await staff_tickets(ctx, staff.actor))


async def on_ticket(message: Message, command: CommandObject, ctx: AppContext, lang: str, staff: StaffProfile) -> None:
    from handlers.tickets import get_staff_ticket

    ref = (command.args or "").strip()
    if not ref:
        await message.answer(ctx.t("bot_staff_ticket_usage", lang))
        return
    ticket = await get_staff_ticket(ctx, staff.actor, int(ref) if ref.isdigit() and len(ref) < 12 else ref)
    text = ticket_line(ctx, lang, ticket)
    if ticket.text:
        text += "\n\n" + esc(truncate(ticket.text, 3000))
    if ticket.assignee_name:
        text += "\n" + ctx.t("bot_staff_assignee", lang, name=esc(ticket.assignee_name))
    await message.answer(text, reply_markup=kb.staff_ticket_actions(ctx, lang, ticket.id))


async def on_stats(message: Message, command: CommandObject, ctx: AppContext, lang: str, staff: StaffProfile) -> None:
    from handlers.tickets import staff_statistics

    days = int(command.args) if (command.args or "").strip().isdigit() else 7
    days = max(1, min(days, 366))
    until = ctx.clock()
    stats = await staff_statistics(ctx, staff.actor, since=until - timedelta(days=days), until=until)
    await message.answer(render_stats(ctx, lang, stats, days))


def _duration(seconds: float | None) -> str:
    if seconds is None:
        return "—"
    minutes = int(seconds // 60)
    return f"{minutes // 60} h {minutes % 60:02d} min" if minutes >= 60 else f"{minutes} min"


def render_stats(ctx: AppContext, lang: str, stats: Any, days: int) -> str:
    lines = [ctx.t("bot_stats", lang, days=days, created=stats.created, resolved=stats.resolved,
                   open=stats.open_total, unassigned=stats.unassigned_open,
                   fr_breaches=stats.first_response_breaches, res_breaches=stats.resolution_breaches,
                   fr_median=_duration(stats.first_response_median_seconds),
                   res_median=_duration(stats.resolution_median_seconds),
                   csat=f"{stats.csat_average:.2f}" if stats.csat_average is not None else "—",
                   csat_count=stats.csat_count)]
    if stats.open_by_department:
        lines.append(ctx.t("bot_stats_by_department", lang))
        lines.extend(f"• {esc(row.name)}: {row.count}" for row in stats.open_by_department)
    if stats.open_by_assignee:
        lines.append(ctx.t("bot_stats_by_assignee", lang))
        lines.extend(f"• {esc(row.name)}: {row.count}" for row in stats.open_by_assignee)
    return "\n".join(lines)


async def on_duty(message: Message, command: CommandObject, ctx: AppContext, lang: str, staff: StaffProfile) -> None:
    from handlers.staff import set_on_duty

    arg = (command.args or "").strip().lower()
    if arg not in ("on", "off"):
        await message.answer(ctx.t("bot_duty_usage", lang, duty=ctx.t(
            "bot_duty_on" if staff.on_duty else "bot_duty_off", lang)))
        return
    await set_on_duty(ctx, staff.actor, arg == "on")
    await message.answer(ctx.t("bot_duty_on" if arg == "on" else "bot_duty_off", lang))


async def on_kb(message: Message, command: CommandObject, ctx: AppContext, lang: str, staff: StaffProfile) -> None:
    from handlers.knowledge import article_from_ticket
    from handlers.tickets import get_staff_ticket

    ref = (command.args or "").strip()
    if not ref:
        await message.answer(ctx.t("bot_kb_usage", lang))
        return
    ticket = await get_staff_ticket(ctx, staff.actor, int(ref) if ref.isdigit() and len(ref) < 12 else ref)
    article = await article_from_ticket(ctx, staff.actor, ticket.id)
    await message.answer(ctx.t("bot_kb_added", lang, number=esc(ticket.number), title=esc(article.title)))


async def on_staff_other(message: Message, ctx: AppContext, lang: str, staff: StaffProfile) -> None:
    if message.chat.type == "private":
        await message.answer(staff_help(ctx, lang, staff))


async def is_staff(_event: Any, staff: StaffProfile | None = None) -> bool:
    return staff is not None


def build_router(ctx: AppContext) -> Router:
    router = Router(name="staff")
    router.callback_query.register(on_ticket_button, on_loop(F.data.startswith("t:")))
    router.message.filter(is_staff)
    router.message.register(on_queue, Command("queue"))
    router.message.register(on_my, Command("my"))
    router.message.register(on_ticket, Command("ticket"))
    router.message.register(on_stats, Command("stats"))
    router.message.register(on_duty, Command("duty"))
    router.message.register(on_kb, Command("kb"))
    router.message.register(on_alert_reply, on_loop(F.reply_to_message.from_user.is_bot),
                            on_loop(~F.text.startswith("/")))
    router.message.register(on_reply_state, StateFilter(StaffReply.text), on_loop(~F.text.startswith("/")))
    return router


def build_fallback_router() -> Router:
    """After /start, /help and /cancel had their chance: anything else a staff member sends gets the help."""
    router = Router(name="staff-fallback")
    router.message.filter(is_staff)
    router.message.register(on_staff_other)
    return router
