"""Greeting, consent and identification: contact sharing (own contact only) or account number + PIN."""

from __future__ import annotations

import logging

from aiogram import F, Router
from aiogram.filters import CommandObject, CommandStart, StateFilter
from aiogram.fsm.context import FSMContext
from aiogram.types import CallbackQuery, Message

from bot import keyboards as kb
from bot.filters import on_loop
from bot.fsm import Identify
from bot.texts import esc, labels
from handlers.context import AppContext
from handlers.dto import ClientProfile, InvalidRequest, NotFound, StaffProfile

log = logging.getLogger(__name__)
PROSPECT_KEY = "tg:prospect:{user_id}"


async def greet_client(message: Message, ctx: AppContext, lang: str, client: ClientProfile) -> None:
    await message.answer(ctx.t("bot_welcome_back", lang, name=esc(client.name)),
                         reply_markup=kb.main_menu(ctx, lang))


async def ask_to_identify(message: Message, ctx: AppContext, lang: str) -> None:
    """The consent step: sharing the phone number means agreeing to personal-data processing."""
    await message.answer(ctx.t("bot_share_contact", lang), reply_markup=kb.share_contact(ctx, lang))


async def on_start(message: Message, command: CommandObject, ctx: AppContext, lang: str, state: FSMContext,
                   client: ClientProfile | None = None, staff: StaffProfile | None = None) -> None:
    await state.clear()
    code = (command.args or "").strip()
    if code and message.from_user is not None:
        await _redeem_invite(message, ctx, lang, code)
        return
    if staff is not None:
        from bot.staff import staff_help

        await message.answer(staff_help(ctx, lang, staff), reply_markup=kb.remove())
        return
    if client is not None and client.has_consent:
        await greet_client(message, ctx, lang, client)
        return
    await message.answer(ctx.t("bot_greeting", lang))
    await ask_to_identify(message, ctx, lang)


async def _redeem_invite(message: Message, ctx: AppContext, lang: str, code: str) -> None:
    from handlers.staff_invites import redeem_staff_invite

    assert message.from_user is not None
    try:
        profile = await redeem_staff_invite(ctx, code, message.from_user.id)
    except (InvalidRequest, NotFound):
        await message.answer(ctx.t("bot_invite_invalid", lang))
        return
    log.info("staff %s linked to Telegram user %s by invite", profile.staff_id, message.from_user.id)
    from bot.staff import staff_help

    lang = profile.language
    await message.answer(ctx.t("bot_staff_linked", lang, name=esc(profile.name)), reply_markup=kb.remove())
    await message.answer(staff_help(ctx, lang, profile))


async def on_contact(message: Message, ctx: AppContext, lang: str, state: FSMContext) -> None:
    from handlers.identification import identify_by_phone, link_telegram, record_consent

    contact = message.contact
    sender = message.from_user
    assert contact is not None and sender is not None
    if contact.user_id != sender.id:
        # A forwarded card or someone else's number proves nothing about who is writing.
        await message.answer(ctx.t("bot_contact_not_own", lang), reply_markup=kb.share_contact(ctx, lang))
        return
    await state.clear()
    profile = await identify_by_phone(ctx, contact.phone_number)
    if profile is None:
        await ctx.kv.kv.set(PROSPECT_KEY.format(user_id=sender.id), contact.phone_number[:32], ttl=90 * 86400)
        await message.answer(ctx.t("bot_phone_unknown", lang), reply_markup=kb.main_menu(ctx, lang))
        await message.answer(ctx.t("bot_offer_account_pin", lang), reply_markup=kb.inline(
            [[(ctx.t("bot_use_account_button", lang), kb.client_data("ident", "pin"))]]))
        return
    await link_telegram(ctx, profile.customer_id, sender.id)
    await record_consent(ctx, profile.customer_id)
    await greet_client(message, ctx, lang, profile)


async def start_account_pin(message: Message, ctx: AppContext, lang: str, state: FSMContext) -> None:
    await state.set_state(Identify.account)
    await message.answer(ctx.t("bot_ask_account", lang), reply_markup=kb.remove())


async def on_ident_button(query: CallbackQuery, ctx: AppContext, lang: str, state: FSMContext) -> None:
    await query.answer()
    if isinstance(query.message, Message):
        await start_account_pin(query.message, ctx, lang, state)


async def on_account(message: Message, ctx: AppContext, lang: str, state: FSMContext) -> None:
    number = (message.text or "").strip()
    if not number.isdigit() or len(number) > 20:
        await message.answer(ctx.t("bot_account_malformed", lang))
        return
    await state.update_data(account=number)
    await state.set_state(Identify.pin)
    await message.answer(ctx.t("bot_ask_pin", lang))


async def on_pin(message: Message, ctx: AppContext, lang: str, state: FSMContext) -> None:
    from handlers.identification import identify_by_account_pin, link_telegram, record_consent

    pin = (message.text or "").strip()
    try:  # the PIN should not stay in the chat history
        await message.delete()
    except Exception as exc:
        log.debug("could not delete the PIN message: %s", exc)
    data = await state.get_data()
    number = str(data.get("account", ""))
    check = await identify_by_account_pin(ctx, number, pin)
    if not check.ok or check.client is None:
        if check.locked_until is not None:
            await state.clear()
            minutes = max(1, int((check.locked_until - ctx.clock()).total_seconds() // 60) + 1)
            await message.answer(ctx.t("bot_pin_locked", lang, minutes=minutes),
                                 reply_markup=kb.share_contact(ctx, lang))
        else:
            await message.answer(ctx.t("bot_pin_wrong", lang, attempts=check.attempts_left))
        return
    assert message.from_user is not None
    await state.clear()
    await link_telegram(ctx, check.client.customer_id, message.from_user.id)
    # The account prompt told the client that continuing means consent (there was no contact button).
    await record_consent(ctx, check.client.customer_id)
    await greet_client(message, ctx, lang, check.client)


def build_router(ctx: AppContext) -> Router:
    router = Router(name="start")
    router.message.register(on_start, CommandStart())
    router.message.register(on_contact, on_loop(F.contact))
    router.message.register(start_account_pin, on_loop(F.text.in_(labels(ctx, "bot_use_account_button"))))
    router.callback_query.register(on_ident_button, on_loop(F.data == kb.client_data("ident", "pin")))
    router.message.register(on_account, StateFilter(Identify.account), on_loop(F.text))
    router.message.register(on_pin, StateFilter(Identify.pin), on_loop(F.text))
    return router
