"""Ports: what use cases need from the outside world, implemented by adapters.

`MessageSender` is implemented with aiogram in `bot/sender.py`; tests use fakes that subclass it.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass


class DeliveryError(Exception):
    """Sending failed; the subclass says whether and when to try again."""


class RetryAfter(DeliveryError):
    """The messenger asked us to slow down (Telegram 429): wait `seconds`, then retry."""

    def __init__(self, seconds: float) -> None:
        super().__init__(f"retry after {seconds}s")
        self.seconds = seconds


class RecipientUnreachable(DeliveryError):
    """The recipient blocked the bot or the chat is gone (Telegram 403, 'chat not found'): do not retry."""


class TemporaryFailure(DeliveryError):
    """Server error or timeout: retry with backoff."""


class PermanentFailure(DeliveryError):
    """The message itself is unacceptable (Telegram 400 other than a missing chat): do not retry."""


@dataclass(frozen=True)
class Button:
    text: str
    callback_data: str | None = None
    url: str | None = None


@dataclass(frozen=True)
class SentMessage:
    chat_id: int
    message_id: int


class MessageSender(ABC):
    @abstractmethod
    async def send_message(
        self,
        chat_id: int,
        text: str,
        *,
        buttons: list[list[Button]] | None = None,
        parse_mode: str | None = "HTML",
        reply_to_message_id: int | None = None,
    ) -> SentMessage: ...

    @abstractmethod
    async def send_document(
        self, chat_id: int, filename: str, content: bytes, *, caption: str | None = None
    ) -> SentMessage: ...
