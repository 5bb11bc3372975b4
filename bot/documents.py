"""Documents: pick kind and period with inline buttons (or from free text), then receive the files."""

from __future__ import annotations

import logging
from datetime import date, timedelta

from aiogram import F, Router
from aiogram.fsm.context import FSMContext
from aiogram.types import BufferedInputFile, CallbackQuery, Message

from bot import keyboards as kb
from bot.filters import on_loop
from bot.menu import require_client
from bot.texts import CAPTION_LIMIT, esc, labels, truncate
from handlers.callbacks import decode
from handlers.context import AppContext
from handlers.dto import DOCUMENT_KINDS, ClientProfile, DocumentQuery, ServiceUnavailable

log = logging.getLogger(__name__)
MAX_FILES_PER_REQUEST = 10
PERIODS = ("tm", "lm", "lq", "6m", "ty", "ly")
PENDING_PERIOD = "doc_period"


def _month_start(day: date) -> date:
    return day.replace(day=1)


def period_range(code: str, today: date) -> tuple[date, date]:
    """Button period codes to date ranges (inclusive)."""
    this_month = _month_start(today)
    if code == "tm":
        return this_month, today
    if code == "lm":
        end = this_month - timedelta(days=1)
        return _month_start(end), end
    if code == "lq":
        quarter_start = date(today.year, 3 * ((today.month - 1) // 3) + 1, 1)
        end = quarter_start - timedelta(days=1)
        return date(end.year, 3 * ((end.month - 1) // 3) + 1, 1), end
    if code == "6m":
        start = this_month
        for _ in range(5):
            start = _month_start(start - timedelta(days=1))
        return start, today
    if code == "ty":
        return date(today.year, 1, 1), today
    if code == "ly":
        return date(today.year - 1, 1, 1), date(today.year - 1, 12, 31)
    raise ValueError(code)


def kinds_keyboard(ctx: AppContext, lang: str):  # type: ignore[no-untyped-def]
    buttons = [(ctx.t(f"bot_doc_kind_{kind}", lang), kb.client_data("dk", kind)) for kind in DOCUMENT_KINDS]
    return kb.inline([buttons[i:i + 2] for i in range(0, len(buttons), 2)])


def periods_keyboard(ctx: AppContext, lang: str, kind: str):  # type: ignore[no-untyped-def]
    buttons = [(ctx.t(f"bot_period_{code}", lang), kb.client_data("dp", f"{kind}.{code}")) for code in PERIODS]
    return kb.inline([buttons[i:i + 2] for i in range(0, len(buttons), 2)])


async def ask_for_missing(message: Message, ctx: AppContext, lang: str, state: FSMContext,
                          query: DocumentQuery) -> None:
    """The request lacks the kind or the period: ask with buttons, remembering what we already know."""
    if not query.kinds:
        if query.period_start is not None:
            await state.update_data({PENDING_PERIOD: [query.period_start.isoformat(),
                                                      (query.period_end or query.period_start).isoformat()]})
        await message.answer(ctx.t("bot_doc_which_kind", lang), reply_markup=kinds_keyboard(ctx, lang))
        return
    kind = query.kinds[0]
    await message.answer(ctx.t("bot_doc_which_period", lang, kind=ctx.t(f"bot_doc_kind_{kind}", lang)),
                         reply_markup=periods_keyboard(ctx, lang, kind))


async def send_documents(message: Message, ctx: AppContext, lang: str, client: ClientProfile,
                         query: DocumentQuery) -> None:
    from handlers.documents import get_document_file, list_documents

    try:
        found = await list_documents(ctx, client, query)
    except ServiceUnavailable:
        await message.answer(ctx.t("billing_unavailable", lang))
        return
    if not found:
        kind = query.kinds[0] if query.kinds else None
        markup = periods_keyboard(ctx, lang, kind) if kind and kind != "contract" else None
        await message.answer(ctx.t("bot_doc_none", lang), reply_markup=markup)
        return
    chosen = found[:MAX_FILES_PER_REQUEST]
    await message.answer(ctx.t("bot_doc_sending", lang, count=len(chosen)))
    for info in chosen:
        file = await get_document_file(ctx, client, info.id)
        caption = truncate(ctx.t("bot_doc_caption", lang, kind=ctx.t(f"bot_doc_kind_{info.kind}", lang),
                                 number=esc(info.number), date=info.issued_on.strftime("%d.%m.%Y")),
                           CAPTION_LIMIT)
        if file.content is not None:
            await message.answer_document(BufferedInputFile(file.content, filename=file.filename), caption=caption)
        elif file.download_url:
            await message.answer(caption + "\n" + ctx.t("bot_doc_download", lang, url=esc(file.download_url)))
    if len(found) > len(chosen):
        await message.answer(ctx.t("bot_doc_more", lang, count=len(found) - len(chosen)))


async def on_documents(message: Message, ctx: AppContext, lang: str, state: FSMContext,
                       client: ClientProfile | None = None) -> None:
    await state.clear()
    if await require_client(message, ctx, lang, client):
        await message.answer(ctx.t("bot_doc_which_kind", lang), reply_markup=kinds_keyboard(ctx, lang))


async def on_kind(query: CallbackQuery, ctx: AppContext, lang: str, state: FSMContext,
                  client: ClientProfile | None = None) -> None:
    callback = decode(query.data)
    await query.answer()
    if callback is None or callback.value not in DOCUMENT_KINDS or not isinstance(query.message, Message):
        return
    if not await require_client(query.message, ctx, lang, client):
        return
    assert client is not None
    kind = callback.value
    pending = (await state.get_data()).get(PENDING_PERIOD)
    if kind == "contract" or pending:
        start = date.fromisoformat(pending[0]) if pending and kind != "contract" else None
        end = date.fromisoformat(pending[1]) if pending and kind != "contract" else None
        await state.update_data({PENDING_PERIOD: None})
        await send_documents(query.message, ctx, lang, client, DocumentQuery((kind,), start, end))
        return
    await query.message.answer(ctx.t("bot_doc_which_period", lang, kind=ctx.t(f"bot_doc_kind_{kind}", lang)),
                               reply_markup=periods_keyboard(ctx, lang, kind))


async def on_period(query: CallbackQuery, ctx: AppContext, lang: str, client: ClientProfile | None = None) -> None:
    callback = decode(query.data)
    await query.answer()
    if callback is None or "." not in callback.value or not isinstance(query.message, Message):
        return
    kind, code = callback.value.split(".", 1)
    if kind not in DOCUMENT_KINDS or code not in PERIODS:
        return
    if not await require_client(query.message, ctx, lang, client):
        return
    assert client is not None
    start, end = period_range(code, ctx.clock().date())
    await send_documents(query.message, ctx, lang, client, DocumentQuery((kind,), start, end))


def build_router(ctx: AppContext) -> Router:
    router = Router(name="documents")
    router.message.register(on_documents, on_loop(F.text.in_(labels(ctx, "menu_documents"))))
    router.callback_query.register(on_kind, on_loop(F.data.startswith("c:dk:")))
    router.callback_query.register(on_period, on_loop(F.data.startswith("c:dp:")))
    return router
