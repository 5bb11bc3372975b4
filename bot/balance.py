"""Balance, last payments, paid-until date and how to pay."""

from __future__ import annotations

from decimal import Decimal

from aiogram import F, Router
from aiogram.fsm.context import FSMContext
from aiogram.types import Message

from bot import keyboards as kb
from bot.filters import on_loop
from bot.menu import require_client
from bot.texts import esc, labels
from handlers.context import AppContext
from handlers.dto import BalanceInfo, ClientProfile, NotFound, ServiceUnavailable


def money(amount: Decimal, currency: str, lang: str) -> str:
    sign = "-" if amount < 0 else ""
    whole = f"{abs(amount):,.2f}".replace(",", "\u00a0")
    if lang == "ru":
        whole = whole.replace(".", ",")
    symbol = {"RUB": "₽", "USD": "$", "EUR": "€"}.get(currency, currency)
    return f"{sign}{whole}\u00a0{symbol}"


def render_balance(ctx: AppContext, lang: str, info: BalanceInfo) -> str:
    status = ctx.t(f"bot_account_status_{info.status}", lang) if ctx.t.has(f"bot_account_status_{info.status}") \
        else esc(info.status)
    parts = [ctx.t("bot_balance", lang, account=esc(info.account_number),
                   balance=money(info.balance, info.currency, lang), status=status)]
    if info.tariff:
        parts.append(ctx.t("bot_balance_tariff", lang, tariff=esc(info.tariff)))
    if info.paid_until:
        parts.append(ctx.t("bot_balance_paid_until", lang, date=info.paid_until.strftime("%d.%m.%Y")))
    if info.last_payments:
        parts.append(ctx.t("bot_balance_payments", lang))
        for payment in info.last_payments:
            parts.append(f"• {payment.paid_at.strftime('%d.%m.%Y')} — {money(payment.amount, payment.currency, lang)}")
    if info.balance < 0:
        parts.append(ctx.t("bot_balance_negative", lang))
    parts.append("")
    parts.append(ctx.t("bot_how_to_pay", lang, methods=esc(ctx.config.company.payment_methods.get(lang))))
    return "\n".join(parts)


async def send_balance(message: Message, ctx: AppContext, lang: str, client: ClientProfile) -> None:
    from handlers.billing import get_balance

    numbers = client.account_numbers or ()
    if not numbers:
        await message.answer(ctx.t("bot_no_accounts", lang))
        return
    try:
        # Companies often have several accounts: show each (bounded, a message per account).
        for number in numbers[:5]:
            info = await get_balance(ctx, client, number)
            await message.answer(render_balance(ctx, lang, info), reply_markup=kb.main_menu(ctx, lang))
    except ServiceUnavailable:
        await message.answer(ctx.t("billing_unavailable", lang), reply_markup=kb.inline(
            [[(ctx.t("bot_call_operator", lang), kb.client_data("ask", "human"))]]))
    except NotFound:
        await message.answer(ctx.t("bot_no_accounts", lang))


async def on_balance(message: Message, ctx: AppContext, lang: str, state: FSMContext,
                     client: ClientProfile | None = None) -> None:
    await state.clear()
    if await require_client(message, ctx, lang, client):
        assert client is not None
        await send_balance(message, ctx, lang, client)


def build_router(ctx: AppContext) -> Router:
    router = Router(name="balance")
    router.message.register(on_balance, on_loop(F.text.in_(labels(ctx, "menu_balance"))))
    return router
