"""Long polling, for installations without a public URL (the default on a laptop)."""

from __future__ import annotations

import logging

from aiogram import Bot, Dispatcher

log = logging.getLogger(__name__)


async def run_polling(dp: Dispatcher, bot: Bot) -> None:
    """Poll until cancelled. A webhook left set from an earlier webhook run would make getUpdates fail."""
    try:
        await bot.delete_webhook(drop_pending_updates=False)
    except Exception as exc:
        log.warning("deleteWebhook failed (%s); polling anyway", exc)
    # Errors inside handlers reach bot/errors.py (no `delivery`: each update is final, the user is told).
    await dp.start_polling(bot, handle_signals=False, close_bot_session=False,
                           allowed_updates=dp.resolve_used_update_types())
