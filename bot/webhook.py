"""POST /telegram/webhook, and choosing between webhook and long polling at start-up.

Delivery guarantees:
- a request without the right `X-Telegram-Bot-Api-Secret-Token` gets 401 and touches nothing;
- an update is acknowledged (200) only after the dispatcher has finished with it, i.e. after its effects are
  committed; a failure answers 500 so Telegram delivers it again;
- a repeated `update_id` is ignored (processed_updates, source "telegram");
- an update failing MAX_ATTEMPTS times is recorded as failed, the user gets an apology, and it is
  acknowledged, so one poisonous update cannot block the bot's queue.
A crash after the effects but before the processed mark means one redelivery: the use cases are idempotent on
`tg:<update_id>` (no second ticket), and the worst case is a repeated reply.
"""

from __future__ import annotations

import asyncio
import hmac
import logging
import os
import secrets
from pathlib import Path
from typing import Any

from aiogram import Bot, Dispatcher
from aiogram.dispatcher.middlewares.user_context import UserContextMiddleware
from aiogram.types import Update
from aiohttp import web
from pydantic import ValidationError

from bot.delivery_log import already_processed, mark_processed
from bot.dispatcher import build_dispatcher
from bot.errors import Delivery
from bot.fsm import build_storage
from bot.sender import make_bot
from config import Settings
from handlers.context import AppContext

log = logging.getLogger(__name__)

WEBHOOK_PATH = "/telegram/webhook"
SECRET_HEADER = "X-Telegram-Bot-Api-Secret-Token"
MAX_ATTEMPTS = 3
FAILURES_KEY = "tg:failures:{update_id}"
SECRET_FILE = "telegram_webhook_secret"

TELEGRAM_DISPATCHER = web.AppKey("telegram_dispatcher", Dispatcher)
TELEGRAM_BOT = web.AppKey("telegram_bot", Bot)


def webhook_secret(settings: Settings) -> str:
    """TELEGRAM_WEBHOOK_SECRET, or one generated once and kept under DATA_DIR (readable by us only)."""
    if settings.telegram_webhook_secret is not None:
        return settings.telegram_webhook_secret.get_secret_value()
    path = Path(settings.data_dir) / SECRET_FILE
    try:
        value = path.read_text().strip()
        if value:
            return value
    except FileNotFoundError:
        pass
    path.parent.mkdir(parents=True, exist_ok=True)
    value = secrets.token_urlsafe(32)  # Telegram allows A-Z a-z 0-9 _ - up to 256 characters
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(value)
    return value


INT64 = 2**63 - 1

# Updates handled at once by this process; the others wait their turn (before any database or Redis work).
# Each update holds up to two database connections at a time, and the engine keeps 20 (storage/db.py); past
# that the pool would open and close an overflow connection per unit of work. The work is CPU-bound, so more
# parallelism would only lengthen every update's latency, not raise throughput.
MAX_UPDATES_IN_FLIGHT = 10


def _check_int_range(value: Any, depth: int = 0) -> None:
    """Telegram ids fit in 64 bits; a larger number (forged or corrupted) would only fail later in the
    database, so it is refused here as unparsable."""
    if depth > 20:
        raise ValueError("update nested too deeply")
    if isinstance(value, dict):
        for item in value.values():
            _check_int_range(item, depth + 1)
    elif isinstance(value, list):
        for item in value:
            _check_int_range(item, depth + 1)
    elif isinstance(value, int) and not isinstance(value, bool) and abs(value) > INT64:
        raise ValueError("integer out of the 64-bit range")


class WebhookHandler:
    def __init__(self, ctx: AppContext, dp: Dispatcher, bot: Bot, secret: str) -> None:
        self.ctx, self.dp, self.bot = ctx, dp, bot
        self._secret = secret.encode()
        self._in_flight = asyncio.Semaphore(MAX_UPDATES_IN_FLIGHT)

    async def handle(self, request: web.Request) -> web.Response:
        given = request.headers.get(SECRET_HEADER, "").encode()
        if not hmac.compare_digest(given, self._secret):
            log.warning("webhook call with a wrong or missing secret from %s", request.remote)
            return web.json_response({"ok": False, "error": "unauthorized"}, status=401)
        try:
            payload = await request.json()
            update_id = payload["update_id"]
            if not isinstance(update_id, int) or isinstance(update_id, bool):
                raise TypeError("update_id is not an integer")
        except (ValueError, KeyError, TypeError) as exc:
            # Not an update at all: redelivering it would not help.
            log.warning("webhook: malformed request: %s", str(exc)[:200])
            return web.json_response({"ok": False, "error": "malformed update"}, status=400)
        try:
            _check_int_range(payload)
            update = Update.model_validate(payload, context={"bot": self.bot})
        except (ValidationError, ValueError) as exc:
            # An update we cannot parse (a newer Bot API shape?): keep the evidence and let the queue move on.
            log.error("webhook: update %s does not parse: %s", update_id, str(exc)[:500])
            await self._mark(str(update_id), "failed", f"unparsable update: {str(exc)[:900]}", 1)
            return web.json_response({"ok": True, "failed": True})
        async with self._in_flight:
            return await self.process(update)

    async def process(self, update: Update) -> web.Response:
        key = str(update.update_id)
        try:
            seen, known = await self._look_up(update, key)
        except Exception as exc:
            if not is_infrastructure_error(exc):
                raise
            log.warning("update %s: back end unavailable (%s); Telegram will redeliver", key, type(exc).__name__)
            return web.json_response({"ok": False, "error": "temporarily unavailable"}, status=503)
        if seen:
            return web.json_response({"ok": True, "duplicate": True})
        failures_key = FAILURES_KEY.format(update_id=key)
        failures = int(await self.ctx.kv.kv.get(failures_key) or 0)
        delivery = Delivery(update.update_id, attempt=failures + 1, final=failures + 1 >= MAX_ATTEMPTS)
        try:
            await self.dp.feed_update(self.bot, update, delivery=delivery, **known)
        except Exception as exc:  # re-raised by bot/errors.py while another attempt is coming
            if is_infrastructure_error(exc):
                # The database or Redis is down: not the update's fault. Telegram keeps redelivering for
                # hours, so answer "later" without using up the update's attempts; nothing is lost.
                log.warning("update %s: back end unavailable (%s); Telegram will redeliver", key,
                            type(exc).__name__)
                return web.json_response({"ok": False, "error": "temporarily unavailable"}, status=503)
            failures = await self.ctx.kv.kv.incr(failures_key, ttl=24 * 3600)
            if failures >= MAX_ATTEMPTS:
                log.error("update %s failed %s times; recorded as failed and acknowledged", key, failures)
                await self._mark(key, "failed", f"{type(exc).__name__}: {exc}"[:1000], failures)
                return web.json_response({"ok": True, "failed": True})
            return web.json_response({"ok": False, "error": "temporary failure, retry"}, status=500)
        if delivery.error is not None:
            await self._mark(key, "failed", delivery.error, delivery.attempt)
        else:
            await self._mark(key, "done", None, delivery.attempt)
        return web.json_response({"ok": True})

    async def _look_up(self, update: Update, key: str) -> tuple[bool, dict[str, Any]]:
        """Whether the update was handled before and, for a person's update, who sent it: one statement
        (handlers.identification.identify_telegram_sender), which bot/middlewares.py then takes as it is."""
        from handlers.identification import identify_telegram_sender

        user = UserContextMiddleware.resolve_event_context(update).user
        if user is None or user.is_bot:
            return await already_processed(self.ctx, key), {}
        sender = await identify_telegram_sender(self.ctx, user.id, update_key=key)
        return sender.already_handled, {"sender": sender, "sender_id": user.id}

    async def _mark(self, key: str, status: str, error: str | None, attempts: int) -> None:
        # One statement; a concurrent delivery of the same update that marked it first wins (bot/delivery_log.py).
        await mark_processed(self.ctx, key, status, error, attempts)


def is_infrastructure_error(exc: BaseException) -> bool:
    """Errors that say a back end is unreachable, not that the update is bad."""
    from redis.exceptions import ConnectionError as RedisConnectionError
    from redis.exceptions import TimeoutError as RedisTimeoutError
    from sqlalchemy.exc import DBAPIError, OperationalError

    from handlers.dto import ServiceUnavailable

    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:  # look through "raise ... from"
        seen.add(id(current))
        if isinstance(current, ServiceUnavailable | OperationalError | RedisConnectionError | RedisTimeoutError
                      | ConnectionError | TimeoutError) or (
                isinstance(current, DBAPIError) and current.connection_invalidated):
            return True
        current = current.__cause__ or current.__context__
    return False


async def _set_webhook(bot: Bot, dp: Dispatcher, url: str, secret: str) -> None:
    delay = 1.0
    while True:
        try:
            await bot.set_webhook(url, secret_token=secret, allowed_updates=dp.resolve_used_update_types(),
                                  max_connections=40)
            log.info("Telegram webhook set to %s", url)
            return
        except Exception as exc:  # Telegram unreachable at start-up: keep trying, the HTTP app is up anyway
            log.error("setWebhook failed (%s); retrying in %.0fs", exc, delay)
            await asyncio.sleep(delay)
            delay = min(delay * 2, 60)


def setup(app: web.Application, ctx: AppContext, settings: Settings, *, fsm_prefix: str = "fo:fsm",
          bot: Bot | None = None) -> list[str]:
    """Mount the Telegram adapter; returns the start-up banner lines.

    Webhook mode when PUBLIC_BASE_URL is set, long polling otherwise; nothing when BOT_TOKEN is unset.
    The Bot is shared through `ctx.extras["bot"]` (the outbox sender uses the same one).
    """
    if settings.bot_token is None:
        return ["  telegram off (BOT_TOKEN not set)"]
    bot = bot or ctx.extras.get("bot") or make_bot(settings.bot_token.get_secret_value(),
                                                     settings.telegram_api_server)
    ctx.extras["bot"] = bot
    dp = build_dispatcher(ctx, build_storage(settings.redis_url, fsm_prefix))
    app[TELEGRAM_DISPATCHER] = dp
    app[TELEGRAM_BOT] = bot
    background: list[asyncio.Task[Any]] = []

    if settings.public_base_url:
        secret = webhook_secret(settings)
        url = settings.public_base_url + WEBHOOK_PATH
        app.router.add_post(WEBHOOK_PATH, WebhookHandler(ctx, dp, bot, secret).handle)

        async def on_startup(_app: web.Application) -> None:
            background.append(asyncio.create_task(_set_webhook(bot, dp, url, secret), name="telegram:setWebhook"))

        line = f"  telegram webhook {url} (secret header checked)"
    else:
        from bot.polling import run_polling

        async def on_startup(_app: web.Application) -> None:
            background.append(asyncio.create_task(run_polling(dp, bot), name="telegram:polling"))

        line = f"  telegram long polling via {settings.telegram_api_server} (set PUBLIC_BASE_URL for webhooks)"

    async def on_cleanup(_app: web.Application) -> None:
        for task in background:
            task.cancel()
        await asyncio.gather(*background, return_exceptions=True)
        await dp.storage.close()
        await bot.session.close()

    app.on_startup.append(on_startup)
    app.on_cleanup.append(on_cleanup)
    return [line]


