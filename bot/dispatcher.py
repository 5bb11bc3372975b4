"""Assembles the Dispatcher: middlewares, then routers in the order their filters must be tried."""

from __future__ import annotations

from aiogram import Dispatcher
from aiogram.fsm.storage.base import BaseStorage
from aiogram.fsm.storage.memory import MemoryStorage

from bot import balance, documents, errors, fallback, menu, requests, settings, staff, start
from bot.middlewares import FloodLimitMiddleware, IdentityMiddleware
from handlers.context import AppContext


def build_dispatcher(ctx: AppContext, storage: BaseStorage | None = None) -> Dispatcher:
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
