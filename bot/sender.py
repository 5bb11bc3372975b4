"""The aiogram implementation of `handlers.ports.MessageSender`, used by the notification dispatcher.

Telegram's answers become the port's errors, which tell the dispatcher what to do next:
429 → RetryAfter (wait exactly that long), 403 / "chat not found" → RecipientUnreachable (fall back, do
not retry), any other 400 → PermanentFailure (the message itself is bad), 5xx / network / timeout →
TemporaryFailure (retry with backoff).
"""

from __future__ import annotations

import asyncio

from aiogram import Bot
from aiogram.client.default import DefaultBotProperties
from aiogram.client.session.aiohttp import AiohttpSession
from aiogram.client.telegram import TelegramAPIServer
from aiogram.exceptions import (
    RestartingTelegram,
    TelegramBadRequest,
    TelegramForbiddenError,
    TelegramMigrateToChat,
    TelegramNetworkError,
    TelegramNotFound,
    TelegramRetryAfter,
    TelegramServerError,
    TelegramUnauthorizedError,
)
from aiogram.types import BufferedInputFile, InlineKeyboardButton, InlineKeyboardMarkup, ReplyParameters

from bot.lazy_validators import lean_aiogram
from handlers.ports import (
    Button,
    MessageSender,
    PermanentFailure,
    RecipientUnreachable,
    RetryAfter,
    SentMessage,
    TemporaryFailure,
)

SEND_TIMEOUT = 20  # seconds for one Bot API call; documents get more


def make_bot(token: str, api_server: str = "https://api.telegram.org") -> Bot:
    """A Bot pointed at `api_server` (Telegram itself, a local Bot API server or a test double)."""
    lean_aiogram()  # every process that talks to Telegram builds one: ~80 MB less (see bot/lazy_validators.py)
    session = AiohttpSession(api=TelegramAPIServer.from_base(api_server.rstrip("/")))
    # HTML by default, like the bot adapter: the two share this Bot (ctx.extras["bot"]).
    return Bot(token, session=session, default=DefaultBotProperties(parse_mode="HTML"))


def _markup(buttons: list[list[Button]] | None) -> InlineKeyboardMarkup | None:
    if not buttons:
        return None
    rows = [[InlineKeyboardButton(text=b.text, callback_data=b.callback_data, url=b.url) for b in row]
            for row in buttons if row]
    return InlineKeyboardMarkup(inline_keyboard=rows) if rows else None


def translate_error(exc: BaseException) -> Exception:
    """aiogram's exception → the port's DeliveryError (returned, so callers `raise ... from exc`)."""
    if isinstance(exc, TelegramRetryAfter):
        return RetryAfter(float(exc.retry_after))
    if isinstance(exc, TelegramForbiddenError):
        return RecipientUnreachable(str(exc))
    if isinstance(exc, TelegramMigrateToChat):
        return RecipientUnreachable(f"group moved to {exc.migrate_to_chat_id}")
    if isinstance(exc, TelegramBadRequest | TelegramNotFound):
        text = str(exc).lower()
        if "chat not found" in text or "user not found" in text or "bot was kicked" in text or \
                "peer_id_invalid" in text or "have no rights" in text:
            return RecipientUnreachable(str(exc))
        return PermanentFailure(str(exc))
    if isinstance(exc, TelegramUnauthorizedError):
        # A revoked token is an outage of ours, not a bad message: keep the notifications for later.
        return TemporaryFailure(f"bot token rejected: {exc}")
    if isinstance(exc, TelegramServerError | RestartingTelegram | TelegramNetworkError | asyncio.TimeoutError |
                  TimeoutError | OSError):
        return TemporaryFailure(str(exc) or type(exc).__name__)
    return TemporaryFailure(f"{type(exc).__name__}: {exc}")


class AiogramSender(MessageSender):
    def __init__(self, bot: Bot) -> None:
        self.bot = bot

    async def send_message(self, chat_id: int, text: str, *, buttons: list[list[Button]] | None = None,
                           parse_mode: str | None = "HTML", reply_to_message_id: int | None = None) -> SentMessage:
        reply = ReplyParameters(message_id=reply_to_message_id, allow_sending_without_reply=True) \
            if reply_to_message_id else None
        try:
            message = await self.bot.send_message(chat_id, text, parse_mode=parse_mode, reply_markup=_markup(buttons),
                                                  reply_parameters=reply, request_timeout=SEND_TIMEOUT)
        except Exception as exc:
            raise translate_error(exc) from exc
        return SentMessage(chat_id=message.chat.id, message_id=message.message_id)

    async def send_document(self, chat_id: int, filename: str, content: bytes, *,
                            caption: str | None = None) -> SentMessage:
        try:
            message = await self.bot.send_document(chat_id, BufferedInputFile(content, filename=filename),
                                                   caption=caption, parse_mode="HTML" if caption else None,
                                                   request_timeout=max(SEND_TIMEOUT, 120))
        except Exception as exc:
            raise translate_error(exc) from exc
        return SentMessage(chat_id=message.chat.id, message_id=message.message_id)

    async def close(self) -> None:
        await self.bot.session.close()
