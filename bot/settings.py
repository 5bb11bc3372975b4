"""Settings: language, client notifications (low balance threshold, payment received, service end date)
and /forget (withdraw consent, erase personal data on our side)."""

from __future__ import annotations

import logging
from decimal import Decimal, InvalidOperation
from typing import Any

from aiogram import F, Router
from aiogram.filters import Command, StateFilter
from aiogram.fsm.context import FSMContext
from aiogram.types import CallbackQuery, Message

from bot import keyboards as kb
from bot.filters import on_loop
from bot.fsm import Settings as SettingsState
from bot.menu import require_client
from bot.middlewares import remember_language
from bot.texts import labels
from handlers.callbacks import decode
from handlers.context import AppContext
from handlers.dto import ClientProfile, StaffProfile

log = logging.getLogger(__name__)
SUBSCRIPTION_KINDS = ("low_balance", "payment_received", "service_end")


def _field(item: Any, name: str) -> Any:
    return item.get(name) if isinstance(item, dict) else getattr(item, name, None)


async def _subscriptions(ctx: AppContext, client: ClientProfile) -> dict[str, Any]:
    from handlers.subscriptions import get_subscriptions

    found = await get_subscriptions(ctx, client)
    items = found.values() if isinstance(found, dict) else found
    return {str(_field(item, "kind")): item for item in items}


def _on_off(ctx: AppContext, lang: str, enabled: bool) -> str:
    return ctx.t("bot_on" if enabled else "bot_off", lang)


async def render_settings(ctx: AppContext, lang: str, client: ClientProfile | None) -> tuple[str, Any]:
    lines = [ctx.t("bot_settings_title", lang), ctx.t("bot_settings_language", lang)]
    rows: list[list[tuple[str, str]]] = [[("Русский", kb.client_data("lang", "ru")),
                                          ("English", kb.client_data("lang", "en"))]]
    if client is not None and client.has_consent:
        subs = await _subscriptions(ctx, client)
        for kind in SUBSCRIPTION_KINDS:
            item = subs.get(kind)
            enabled = bool(_field(item, "enabled")) if item is not None else False
            threshold = _field(item, "threshold") if item is not None else None
            days = _field(item, "days_before") if item is not None else None
            lines.append(ctx.t(f"bot_sub_{kind}", lang, state=_on_off(ctx, lang, enabled),
                               threshold=threshold if threshold is not None else "—",
                               days=days if days is not None else "—"))
            row = [(ctx.t(f"bot_sub_{kind}_button", lang, state=_on_off(ctx, lang, not enabled)),
                    kb.client_data("sub", kind))]
            if kind == "low_balance":
                row.append((ctx.t("bot_sub_threshold_button", lang), kb.client_data("subset", kind)))
            if kind == "service_end":
                row.append((ctx.t("bot_sub_days_button", lang), kb.client_data("subset", kind)))
            rows.append(row)
        rows.append([(ctx.t("bot_forget_button", lang), kb.client_data("forget", "ask"))])
    return "\n".join(lines), kb.inline(rows)


async def on_settings(message: Message, ctx: AppContext, lang: str, state: FSMContext,
                      client: ClientProfile | None = None) -> None:
    await state.set_state(None)
    text, markup = await render_settings(ctx, lang, client)
    await message.answer(text, reply_markup=markup)


async def on_language(query: CallbackQuery, ctx: AppContext, client: ClientProfile | None = None,
                      staff: StaffProfile | None = None) -> None:
    from handlers.preferences import set_client_language, set_staff_language

    callback = decode(query.data)
    if callback is None or callback.value not in ("ru", "en"):
        await query.answer()
        return
    lang = callback.value
    await remember_language(ctx, query.from_user.id, lang)
    if client is not None:
        await set_client_language(ctx, client.customer_id, lang)
    if staff is not None:
        await set_staff_language(ctx, staff.staff_id, lang)
    await query.answer(ctx.t("bot_language_set", lang))
    if isinstance(query.message, Message):
        markup = kb.main_menu(ctx, lang) if client is not None and client.has_consent else None
        await query.message.answer(ctx.t("bot_language_set", lang), reply_markup=markup)


async def on_toggle(query: CallbackQuery, ctx: AppContext, lang: str, client: ClientProfile | None = None) -> None:
    from handlers.subscriptions import set_subscription

    callback = decode(query.data)
    await query.answer()
    if callback is None or callback.value not in SUBSCRIPTION_KINDS or not isinstance(query.message, Message):
        return
    if not await require_client(query.message, ctx, lang, client):
        return
    assert client is not None
    item = (await _subscriptions(ctx, client)).get(callback.value)
    enabled = not (bool(_field(item, "enabled")) if item is not None else False)
    await set_subscription(ctx, client, callback.value, enabled=enabled,
                           threshold=_field(item, "threshold") if item is not None else None,
                           days_before=_field(item, "days_before") if item is not None else None)
    text, markup = await render_settings(ctx, lang, client)
    await query.message.answer(text, reply_markup=markup)


async def on_ask_value(query: CallbackQuery, ctx: AppContext, lang: str, state: FSMContext,
                       client: ClientProfile | None = None) -> None:
    callback = decode(query.data)
    await query.answer()
    if callback is None or callback.value not in ("low_balance", "service_end") or not isinstance(
            query.message, Message):
        return
    if not await require_client(query.message, ctx, lang, client):
        return
    if callback.value == "low_balance":
        await state.set_state(SettingsState.threshold)
        await query.message.answer(ctx.t("bot_sub_ask_threshold", lang))
    else:
        await state.set_state(SettingsState.days_before)
        await query.message.answer(ctx.t("bot_sub_ask_days", lang))


async def on_threshold(message: Message, ctx: AppContext, lang: str, state: FSMContext,
                       client: ClientProfile | None = None) -> None:
    from handlers.subscriptions import set_subscription

    raw = (message.text or "").strip().replace(" ", "").replace(",", ".")
    try:
        value = Decimal(raw)
    except InvalidOperation:
        value = Decimal(-1)
    if not value.is_finite() or value < 0 or value > Decimal("10000000"):
        await message.answer(ctx.t("bot_sub_bad_number", lang))
        return
    await state.set_state(None)
    if not await require_client(message, ctx, lang, client):
        return
    assert client is not None
    await set_subscription(ctx, client, "low_balance", enabled=True, threshold=value.quantize(Decimal("0.01")))
    text, markup = await render_settings(ctx, lang, client)
    await message.answer(text, reply_markup=markup)


async def on_days(message: Message, ctx: AppContext, lang: str, state: FSMContext,
                  client: ClientProfile | None = None) -> None:
    from handlers.subscriptions import set_subscription

    raw = (message.text or "").strip()
    if not raw.isdigit() or not 1 <= int(raw) <= 60:
        await message.answer(ctx.t("bot_sub_bad_days", lang))
        return
    await state.set_state(None)
    if not await require_client(message, ctx, lang, client):
        return
    assert client is not None
    await set_subscription(ctx, client, "service_end", enabled=True, days_before=int(raw))
    text, markup = await render_settings(ctx, lang, client)
    await message.answer(text, reply_markup=markup)


async def _prospect_phone(ctx: AppContext, user_id: int | None) -> str | None:
    """A person whose shared phone matched no customer: the phone is all we keep (for their requests)."""
    return await ctx.kv.kv.get(f"tg:prospect:{user_id}") if user_id is not None else None


async def on_forget_command(message: Message, ctx: AppContext, lang: str, client: ClientProfile | None = None) -> None:
    user_id = message.chat.id if message.chat.type == "private" else None
    if client is None and await _prospect_phone(ctx, user_id) is None:
        await message.answer(ctx.t("bot_forget_nothing", lang))
        return
    await message.answer(ctx.t("bot_forget_confirm", lang), reply_markup=kb.inline([[
        (ctx.t("bot_forget_yes", lang), kb.client_data("forget", "yes")),
        (ctx.t("bot_forget_no", lang), kb.client_data("forget", "no")),
    ]]))


async def on_forget_button(query: CallbackQuery, ctx: AppContext, lang: str, state: FSMContext,
                           client: ClientProfile | None = None) -> None:
    from handlers.identification import forget_client

    callback = decode(query.data)
    await query.answer()
    if callback is None or not isinstance(query.message, Message):
        return
    if callback.value == "ask":
        await on_forget_command(query.message, ctx, lang, client)
        return
    if callback.value != "yes":
        await query.message.answer(ctx.t("bot_forget_kept", lang))
        return
    prospect = await _prospect_phone(ctx, query.from_user.id)
    if client is None and prospect is None:  # the identity comes from the server, not from the button
        await query.message.answer(ctx.t("bot_forget_nothing", lang))
        return
    if client is not None:
        await forget_client(ctx, client.customer_id)
        log.info("customer %s withdrew consent and was anonymised", client.customer_id)
    await state.clear()
    await ctx.kv.kv.delete(f"tg:prospect:{query.from_user.id}")
    await query.message.answer(ctx.t("bot_forget_done", lang), reply_markup=kb.remove())


def build_router(ctx: AppContext) -> Router:
    router = Router(name="settings")
    router.message.register(on_settings, on_loop(F.text.in_(labels(ctx, "menu_settings"))))
    router.message.register(on_settings, Command("settings"))
    router.message.register(on_forget_command, Command("forget"))
    router.callback_query.register(on_language, on_loop(F.data.startswith("c:lang:")))
    router.callback_query.register(on_toggle, on_loop(F.data.startswith("c:sub:")))
    router.callback_query.register(on_ask_value, on_loop(F.data.startswith("c:subset:")))
    router.callback_query.register(on_forget_button, on_loop(F.data.startswith("c:forget:")))
    router.message.register(on_threshold, StateFilter(SettingsState.threshold), on_loop(F.text))
    router.message.register(on_days, StateFilter(SettingsState.days_before), on_loop(F.text))
    return router
