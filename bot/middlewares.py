"""Update middlewares: who is writing (staff, client, stranger), in which language, and how fast.

Registered as outer middlewares on the update observer after aiogram's own ErrorsMiddleware, so a failure
here (database down) still reaches the central error handler in bot/errors.py.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Any

from aiogram import BaseMiddleware
from aiogram.types import Chat, TelegramObject, Update, User

from handlers.context import AppContext
from handlers.dto import TelegramSender
from handlers.i18n import pick_language

log = logging.getLogger(__name__)

# A person types a few messages a minute; 20 updates in 10 s is a script or a stuck key.
FLOOD_LIMIT = 20
FLOOD_WINDOW_SECONDS = 10.0
LANGUAGE_KEY = "tg:lang:{user_id}"

Handler = Callable[[TelegramObject, dict[str, Any]], Awaitable[Any]]


class FloodLimitMiddleware(BaseMiddleware):
    """Per-user fixed-window limit (shared across processes through ctx.kv); one polite notice per window."""

    def __init__(self, ctx: AppContext, limit: int | None = None, window: float | None = None) -> None:
        self.ctx = ctx
        self.limit = limit or FLOOD_LIMIT
        self.window = window or FLOOD_WINDOW_SECONDS

    async def __call__(self, handler: Handler, event: TelegramObject, data: dict[str, Any]) -> Any:
        user: User | None = data.get("event_from_user")
        if user is None:
            return await handler(event, data)
        wait = await self.ctx.kv.rate_limiter.hit(f"tg:{user.id}", self.limit, self.window)
        if not wait:
            return await handler(event, data)
        # Dropped on purpose (acknowledged, not redelivered): the user is told once per window.
        first = await self.ctx.kv.kv.set_if_absent(f"tg:flood:{user.id}", "1", ttl=max(wait, 1.0))
        if first and isinstance(event, Update):
            lang = await stored_language(self.ctx, user.id) or pick_language(user.language_code,
                                                                              self.ctx.t.default_language)
            text = self.ctx.t("too_many_requests", lang)
            if event.callback_query is not None:
                await event.callback_query.answer(text, show_alert=True)
            elif event.message is not None:
                await event.message.answer(text)
        log.info("flood limit: update %s from user %s dropped", getattr(event, "update_id", "?"), user.id)
        return None


class IdentityMiddleware(BaseMiddleware):
    """Resolves the role server-side from the Telegram user id (never from anything the client sends)."""

    def __init__(self, ctx: AppContext) -> None:
        self.ctx = ctx

    async def __call__(self, handler: Handler, event: TelegramObject, data: dict[str, Any]) -> Any:
        from handlers.identification import identify_telegram_sender
        from handlers.staff import mark_reachable

        user: User | None = data.get("event_from_user")
        chat: Chat | None = data.get("event_chat")
        if user is None or user.is_bot:
            return None  # channel posts, other bots: nothing for us to do
        # The webhook has usually asked already, together with its redelivery check (bot/webhook.py).
        sender: TelegramSender | None = data.get("sender")
        if sender is None or data.get("sender_id") != user.id:
            sender = await identify_telegram_sender(self.ctx, user.id)
        # A staff member who is also a customer gets the staff experience.
        staff, client = sender.staff, sender.client if sender.staff is None else None
        if staff is not None and sender.staff_unreachable:
            await mark_reachable(self.ctx, user.id)
        if chat is not None and chat.type != "private" and staff is None:
            return None  # in department group chats only staff act; clients talk to the bot privately
        data["staff"], data["client"], data["sender"] = staff, client, sender
        preferred = await stored_language(self.ctx, user.id)
        profile_language = staff.language if staff is not None else client.language if client else None
        data["lang"] = preferred or profile_language or pick_language(user.language_code,
                                                                      self.ctx.t.default_language)
        return await handler(event, data)


async def stored_language(ctx: AppContext, user_id: int) -> str | None:
    value = await ctx.kv.kv.get(LANGUAGE_KEY.format(user_id=user_id))
    return value if value in ("ru", "en") else None


async def remember_language(ctx: AppContext, user_id: int, lang: str) -> None:
    await ctx.kv.kv.set(LANGUAGE_KEY.format(user_id=user_id), lang)
