"""Last router: unknown commands, content we cannot handle (stickers, polls, locations...), stale buttons."""

from __future__ import annotations

from aiogram import F, Router
from aiogram.types import CallbackQuery, Message

from bot.filters import on_loop
from handlers.context import AppContext


async def on_unknown_command(message: Message, ctx: AppContext, lang: str) -> None:
    await message.answer(ctx.t("bot_unknown_command", lang))


async def on_unsupported(message: Message, ctx: AppContext, lang: str) -> None:
    if message.chat.type == "private":
        await message.answer(ctx.t("bot_unsupported_content", lang))


async def on_stale_button(query: CallbackQuery, ctx: AppContext, lang: str) -> None:
    await query.answer(ctx.t("bot_button_stale", lang), show_alert=True)


def build_router() -> Router:
    router = Router(name="fallback")
    router.message.register(on_unknown_command, on_loop(F.text.startswith("/")))
    router.message.register(on_unsupported)
    router.callback_query.register(on_stale_button)
    return router
