"""Assembles the Dispatcher: middlewares, then routers in the order their filters must be tried."""

from __future__ import annotations

from typing import Any

from aiogram import Dispatcher
from aiogram.fsm.storage.base import BaseStorage
from aiogram.fsm.storage.memory import MemoryStorage

from bot import balance, documents, errors, fallback, menu, requests, settings, staff, start
from bot.lazy_validators import lean_aiogram
from bot.middlewares import FloodLimitMiddleware, IdentityMiddleware
from handlers.context import AppContext

# pydantic keeps parametrised generics in a weak cache: aiogram's `Response[Message]`, built for every Bot API
# answer, is collected at each GC cycle and rebuilt (about 30 ms of CPU each time). Holding the ones we use
# makes every later answer take the cached class.
_RESPONSE_MODELS: list[Any] = []
_USED_METHODS = ("SendMessage", "SendDocument", "AnswerCallbackQuery", "EditMessageReplyMarkup", "DeleteMessage",
                 "GetMe", "SetWebhook", "DeleteWebhook", "GetUpdates", "GetFile", "SendChatAction")


def keep_response_models() -> None:
    if _RESPONSE_MODELS:
        return
    from aiogram import methods
    from aiogram.methods.base import Response

    for name in _USED_METHODS:
        method = getattr(methods, name, None)
        if method is not None:
            _RESPONSE_MODELS.append(Response[method.__returning__])  # type: ignore[name-defined]


def build_dispatcher(ctx: AppContext, storage: BaseStorage | None = None) -> Dispatcher:
    lean_aiogram()
    keep_response_models()
    dp = Dispatcher(storage=storage or MemoryStorage())
    dp["ctx"] = ctx
    # After aiogram's own error and user-context middlewares: failures here reach bot/errors.py.
    dp.update.outer_middleware(FloodLimitMiddleware(ctx))
    dp.update.outer_middleware(IdentityMiddleware(ctx))
    dp.include_routers(
        errors.build_router(),
        staff.build_router(ctx),  # staff buttons, replies to alerts, staff commands
        menu.build_router(ctx),  # /help, /cancel: work in every state
        start.build_router(ctx),  # /start, contact, account + PIN
        staff.build_fallback_router(),
        balance.build_router(ctx),
        documents.build_router(ctx),
        settings.build_router(ctx),
        requests.build_router(ctx),  # free text, media, conversation, my requests, rating
        fallback.build_router(),  # unsupported content, unknown commands, stale buttons
    )
    return dp
