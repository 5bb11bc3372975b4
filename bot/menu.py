"""Main menu (reply keyboard), /help and /cancel (work in every state), and "My manager"."""

from __future__ import annotations

from aiogram import F, Router
from aiogram.filters import Command
from aiogram.fsm.context import FSMContext
from aiogram.types import Message

from bot import keyboards as kb
from bot.filters import on_loop
from bot.texts import esc, labels
from handlers.context import AppContext
from handlers.dto import ClientProfile, StaffProfile


async def require_client(message: Message, ctx: AppContext, lang: str, client: ClientProfile | None) -> bool:
    """True when the sender is an identified client who gave consent; otherwise asks them to identify."""
    if client is not None and client.has_consent:
        return True
    from bot.start import ask_to_identify

    await message.answer(ctx.t("bot_identify_first", lang))
    await ask_to_identify(message, ctx, lang)
    return False


async def on_help(message: Message, ctx: AppContext, lang: str, staff: StaffProfile | None = None,
                  client: ClientProfile | None = None) -> None:
    if staff is not None:
        from bot.staff import staff_help

        await message.answer(staff_help(ctx, lang, staff))
        return
    markup = kb.main_menu(ctx, lang) if client is not None and client.has_consent else None
    await message.answer(ctx.t("bot_help", lang, phone=esc(ctx.config.company.phone)), reply_markup=markup)


async def on_cancel(message: Message, ctx: AppContext, lang: str, state: FSMContext,
                    client: ClientProfile | None = None, staff: StaffProfile | None = None) -> None:
    had_state = await state.get_state() is not None
    await state.clear()
    text = ctx.t("bot_cancelled" if had_state else "bot_nothing_to_cancel", lang)
    markup = kb.main_menu(ctx, lang) if staff is None and client is not None and client.has_consent else None
    await message.answer(text, reply_markup=markup)


async def on_manager(message: Message, ctx: AppContext, lang: str, state: FSMContext,
                     client: ClientProfile | None = None) -> None:
    await state.clear()
    if not await require_client(message, ctx, lang, client):
        return
    assert client is not None
    if client.manager_name:
        text = ctx.t("bot_manager_info", lang, name=esc(client.manager_name))
    else:
        text = ctx.t("bot_no_manager", lang, phone=esc(ctx.config.company.phone))
    await message.answer(text, reply_markup=kb.inline(
        [[(ctx.t("bot_write_to_manager", lang), kb.client_data("ask", "human"))]]))


def build_router(ctx: AppContext) -> Router:
    router = Router(name="menu")
    router.message.register(on_help, Command("help"))
    router.message.register(on_cancel, Command("cancel"))
    router.message.register(on_manager, on_loop(F.text.in_(labels(ctx, "menu_manager"))))
    return router
