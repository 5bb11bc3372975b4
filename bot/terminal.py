"""`python main.py chat`: the Telegram bot in the terminal, against the real Dispatcher and database.

What you type becomes the update Telegram would send (a message, a button press, a shared contact); what the
bot would send through the Bot API is printed, with inline and reply buttons numbered. Alerts and answers
that go through the outbox are delivered by an in-process notification dispatcher and printed too (messages
to other chats are marked with their chat id). Type a button's number to press it, `/quit` to leave;
`/photo [caption]` sends a photo, `/contact +7...` shares a contact, `>N text` replies to message #N
(staff: reply to an alert). `--as-staff` links you to a staff member with a one-time invite first.
"""

from __future__ import annotations

import argparse
import asyncio
import html
import itertools
import logging
import re
import sys
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from datetime import UTC
from pathlib import Path
from typing import Any, TextIO

from aiogram import Bot
from aiogram.client.default import DefaultBotProperties
from aiogram.client.session.base import BaseSession
from aiogram.methods import TelegramMethod
from aiogram.types import InlineKeyboardMarkup, ReplyKeyboardMarkup, Update

from config import BusinessConfig, Settings

log = logging.getLogger(__name__)

TERMINAL_TOKEN = "1000000001:terminal-chat"
DEFAULT_CLIENT_ID = 100_000_001
DEFAULT_STAFF_ID = 100_000_002
DEFAULT_STAFF_EMAIL = "support.lead@svyazservice.example"
_TAG = re.compile(r"<[^>]+>")


def register(sub: Any) -> None:
    chat = sub.add_parser("chat", help="try the Telegram bot in the terminal (real dispatcher and database)")
    chat.add_argument("--as-staff", nargs="?", const=DEFAULT_STAFF_EMAIL, metavar="EMAIL",
                      help=f"be a staff member (default {DEFAULT_STAFF_EMAIL}); linked with a one-time invite")
    chat.add_argument("--user-id", type=int, help="your Telegram user id (default: a fixed test id)")
    chat.add_argument("--language", default="ru", help="your Telegram language_code (ru, en...)")
    chat.set_defaults(handler=cmd_chat)

    staff = sub.add_parser("staff", help="staff accounts")
    actions = staff.add_subparsers(dest="staff_command", metavar="ACTION", required=True)
    invite = actions.add_parser("invite", help="a one-time code linking a staff member's Telegram account")
    invite.add_argument("email")
    invite.add_argument("--days", type=int, default=7, help="days the code stays valid (default 7)")
    invite.set_defaults(handler=cmd_staff_invite)


# ------------------------------------------------------------------ a Bot API that prints


@dataclass
class Shown:
    number: int
    chat_id: int
    message_id: int
    text: str


@dataclass
class TerminalScreen:
    """Everything the bot "sent", printed; remembers the buttons of the last message to our chat."""

    out: TextIO
    me: int
    downloads: Path
    inline: list[tuple[str, str]] = field(default_factory=list)  # (label, callback data)
    reply: list[tuple[str, bool]] = field(default_factory=list)  # (label, requests contact)
    shown: dict[int, Shown] = field(default_factory=dict)
    _numbers: Any = field(default_factory=lambda: itertools.count(1))
    _message_ids: Any = field(default_factory=lambda: itertools.count(1))

    def plain(self, text: str) -> str:
        return html.unescape(_TAG.sub("", text))

    def message(self, chat_id: int, text: str, markup: Any) -> int:
        message_id = next(self._message_ids)
        number = next(self._numbers)
        self.shown[number] = Shown(number, chat_id, message_id, text)
        prefix = f"#{number} bot" if chat_id == self.me else f"#{number} bot → chat {chat_id}"
        self.out.write(f"\n{prefix}:\n{self.plain(text)}\n")
        if chat_id == self.me:
            self._buttons(markup)
        self.out.flush()
        return message_id

    def _buttons(self, markup: Any) -> None:
        if isinstance(markup, InlineKeyboardMarkup):
            self.inline = [(b.text, b.callback_data or "") for row in markup.inline_keyboard for b in row
                           if b.callback_data]
            for index, (label, _) in enumerate(self.inline, 1):
                self.out.write(f"   [{index}] {label}\n")
        elif isinstance(markup, ReplyKeyboardMarkup):
            self.inline = []
            self.reply = [(b.text, bool(b.request_contact)) for row in markup.keyboard for b in row]
            self.out.write("   keyboard: " + "  ".join(f"[{i}] {label}" for i, (label, _) in
                                                       enumerate(self.reply, 1)) + "\n")
        elif markup is not None and getattr(markup, "remove_keyboard", False):
            self.reply = []

    def note(self, text: str) -> None:
        self.out.write(f"   ({text})\n")
        self.out.flush()


class TerminalSession(BaseSession):
    """An aiogram session that answers Bot API methods locally and prints what would reach Telegram."""

    def __init__(self, screen: TerminalScreen) -> None:
        super().__init__()
        self.screen = screen

    async def close(self) -> None:
        return None

    async def stream_content(self, url: str, headers: Any = None, timeout: int = 30, chunk_size: int = 65536,
                             raise_for_status: bool = True) -> AsyncIterator[bytes]:  # pragma: no cover
        raise RuntimeError("no files to download in the terminal")
        yield b""

    async def make_request(self, bot: Bot, method: TelegramMethod[Any], timeout: int | None = None) -> Any:
        name = method.__api_method__
        data = method.model_dump(warnings=False)
        chat_id = data.get("chat_id")
        chat_id = int(chat_id) if isinstance(chat_id, int | str) and str(chat_id).lstrip("-").isdigit() else 0
        if name == "getMe":
            return method.__returning__.model_validate(
                {"id": bot.id, "is_bot": True, "first_name": "Front office", "username": "frontoffice_bot"})
        if name == "sendMessage":
            message_id = self.screen.message(chat_id, method.text, method.reply_markup)  # type: ignore[attr-defined]
            return self._message(bot, chat_id, message_id, text=method.text)  # type: ignore[attr-defined]
        if name == "sendDocument":
            document = method.document  # type: ignore[attr-defined]
            filename = getattr(document, "filename", None) or "document"
            content = getattr(document, "data", None)
            path = self.screen.downloads / Path(filename).name
            if isinstance(content, bytes):
                self.screen.downloads.mkdir(parents=True, exist_ok=True)
                path.write_bytes(content)
            caption = method.caption or ""  # type: ignore[attr-defined]
            message_id = self.screen.message(chat_id, f"📎 {filename} ({path})\n{caption}",
                                             method.reply_markup)  # type: ignore[attr-defined]
            return self._message(bot, chat_id, message_id, caption=caption)
        if name == "answerCallbackQuery":
            if method.text:  # type: ignore[attr-defined]
                self.screen.note(f"popup: {method.text}")  # type: ignore[attr-defined]
            return True
        if name == "editMessageReplyMarkup":
            self.screen.inline = []
            return True
        if name == "deleteMessage":
            self.screen.note("your message was deleted")
            return True
        returning = method.__returning__
        return True if returning is bool else None

    def _message(self, bot: Bot, chat_id: int, message_id: int, **content: Any) -> Any:
        from aiogram.types import Message

        chat = {"id": chat_id, "type": "private" if chat_id > 0 else "group", "title": "group"}
        return Message.model_validate({
            "message_id": message_id, "date": int(time.time()), "chat": chat,
            "from": {"id": bot.id, "is_bot": True, "first_name": "Front office"},
            **{k: v for k, v in content.items() if v},
        }, context={"bot": bot})


# ------------------------------------------------------------------ synthetic updates


class UpdateFactory:
    def __init__(self, user_id: int, language: str, first_name: str = "Terminal") -> None:
        self.user = {"id": user_id, "is_bot": False, "first_name": first_name, "language_code": language}
        self.chat = {"id": user_id, "type": "private", "first_name": first_name}
        # Unique across sessions: intake de-duplicates on `tg:<update_id>` in the same database.
        self._ids = itertools.count(int(time.time() * 1000))
        self._message_ids = itertools.count(1)

    def _message(self, **content: Any) -> dict[str, Any]:
        return {"update_id": next(self._ids), "message": {
            "message_id": next(self._message_ids), "date": int(time.time()), "from": self.user, "chat": self.chat,
            **content}}

    def text(self, text: str, reply_to: Shown | None = None, bot_id: int = 0) -> dict[str, Any]:
        content: dict[str, Any] = {"text": text}
        if text.startswith("/"):
            content["entities"] = [{"offset": 0, "length": len(text.split()[0]), "type": "bot_command"}]
        if reply_to is not None:
            content["reply_to_message"] = {
                "message_id": reply_to.message_id, "date": int(time.time()), "text": reply_to.text[:4096],
                "chat": {"id": reply_to.chat_id, "type": "private" if reply_to.chat_id > 0 else "group",
                         "title": "group"},
                "from": {"id": bot_id, "is_bot": True, "first_name": "Front office"}}
        return self._message(**content)

    def contact(self, phone: str) -> dict[str, Any]:
        return self._message(contact={"phone_number": phone, "first_name": self.user["first_name"],
                                      "user_id": self.user["id"]})

    def photo(self, caption: str) -> dict[str, Any]:
        content: dict[str, Any] = {"photo": [{"file_id": f"terminal-photo-{time.time_ns()}",
                                              "file_unique_id": "terminal", "width": 640, "height": 480}]}
        if caption:
            content["caption"] = caption
        return self._message(**content)

    def press(self, data: str) -> dict[str, Any]:
        return {"update_id": next(self._ids), "callback_query": {
            "id": str(time.time_ns()), "from": self.user, "chat_instance": "terminal", "data": data,
            "message": {"message_id": 1, "date": int(time.time()), "chat": self.chat,
                        "from": {"id": 1, "is_bot": True, "first_name": "Front office"}, "text": "…"}}}


# ------------------------------------------------------------------ the session


async def _lines(stream: TextIO) -> AsyncIterator[str]:
    while True:
        line = await asyncio.to_thread(stream.readline)
        if not line:
            return
        yield line.rstrip("\n")


async def chat_session(services: Any, *, user_id: int, language: str, staff_email: str | None,
                       lines: AsyncIterator[str], out: TextIO, settle: Callable[[], Any] | None = None) -> int:
    """Run the bot for one terminal user until the input ends or `/quit`; returns the exit code."""
    from aiogram.fsm.storage.memory import MemoryStorage

    from bot.dispatcher import build_dispatcher
    from bot.sender import AiogramSender
    from handlers.notifications.dispatcher import NotificationDispatcher

    ctx = services.ctx
    screen = TerminalScreen(out=out, me=user_id, downloads=Path(ctx.data_dir) / "chat_downloads")
    bot = Bot(TERMINAL_TOKEN, session=TerminalSession(screen), default=DefaultBotProperties(parse_mode="HTML"))
    ctx.extras["bot"] = bot
    ctx.sender = AiogramSender(bot)  # alerts and answers from the outbox are printed as well
    dp = build_dispatcher(ctx, MemoryStorage())
    updates = UpdateFactory(user_id, language)
    outbox = NotificationDispatcher(ctx, poll_interval=0.2)

    async def feed(raw: dict[str, Any]) -> None:
        await dp.feed_update(bot, Update.model_validate(raw, context={"bot": bot}))
        # Deliver what the update queued in the outbox (alerts, answers) before the next prompt.
        while await outbox.run_once():
            pass

    out.write("Front office bot in the terminal. Type a message, a button number, /photo [caption], "
              "/contact +7..., >N text to reply to message #N, /quit to leave.\n")
    if staff_email:
        from handlers.staff_invites import create_staff_invite

        invite = await create_staff_invite(ctx, staff_email)
        out.write(f"(linking you to {invite.name} <{invite.email}> with /start {invite.code})\n")
        await feed(updates.text(f"/start {invite.code}"))
    else:
        await feed(updates.text("/start"))
    pending_contact = False
    async for line in lines:
        line = line.strip()
        if line in ("/quit", "/exit"):
            break
        if pending_contact:
            pending_contact = False
            await feed(updates.contact(line or "+79161234567"))
            continue
        if not line:
            continue
        if line.isdigit() and screen.inline and 1 <= int(line) <= len(screen.inline):
            await feed(updates.press(screen.inline[int(line) - 1][1]))
        elif line.isdigit() and not screen.inline and screen.reply and 1 <= int(line) <= len(screen.reply):
            label, wants_contact = screen.reply[int(line) - 1]
            if wants_contact:
                out.write("phone number to share as your own contact (e.g. +79161234567): ")
                out.flush()
                pending_contact = True
            else:
                await feed(updates.text(label))
        elif line.startswith("/contact"):
            await feed(updates.contact(line.removeprefix("/contact").strip() or "+79161234567"))
        elif line.startswith("/photo"):
            await feed(updates.photo(line.removeprefix("/photo").strip()))
        elif line.startswith(">") and line[1:].split(" ", 1)[0].isdigit():
            number, _, text = line[1:].partition(" ")
            shown = screen.shown.get(int(number))
            if shown is None:
                screen.note(f"no message #{number}")
                continue
            await feed(updates.text(text, reply_to=shown, bot_id=bot.id))
        else:
            await feed(updates.text(line))
    await bot.session.close()
    out.write("bye\n")
    return 0


async def cmd_chat(args: argparse.Namespace, settings: Settings, config: BusinessConfig) -> int:
    from service.container import build_services

    # aiogram logs every update at INFO: noise between the chat lines.
    logging.getLogger("aiogram.event").setLevel(max(logging.WARNING, logging.getLogger().level))
    services = await build_services(settings, config)
    try:
        user_id = args.user_id or (DEFAULT_STAFF_ID if args.as_staff else DEFAULT_CLIENT_ID)
        return await chat_session(services, user_id=user_id, language=args.language, staff_email=args.as_staff,
                                  lines=_lines(sys.stdin), out=sys.stdout)
    finally:
        await services.close()


async def cmd_staff_invite(args: argparse.Namespace, settings: Settings, config: BusinessConfig) -> int:
    from handlers.dto import NotFound
    from handlers.staff_invites import create_staff_invite
    from service.container import build_services

    services = await build_services(settings, config)
    try:
        try:
            invite = await create_staff_invite(services.ctx, args.email, valid_for=_days(args.days))
        except NotFound as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 1
        username = await _bot_username(settings)
        expires = invite.expires_at.astimezone(UTC).strftime("%Y-%m-%d %H:%M UTC")
        print(f"Invite for {invite.name} <{invite.email}>, valid until {expires}, works once:")
        if username:
            print(f"  https://t.me/{username}?start={invite.code}")
        print(f"  or send the bot: /start {invite.code}")
        return 0
    finally:
        await services.close()


def _days(days: int) -> Any:
    from datetime import timedelta

    return timedelta(days=max(1, min(days, 90)))


async def _bot_username(settings: Settings) -> str | None:
    if settings.bot_token is None:
        return None
    from bot.sender import make_bot

    bot = make_bot(settings.bot_token.get_secret_value(), settings.telegram_api_server)
    try:
        me = await asyncio.wait_for(bot.get_me(), 10)
        return me.username
    except Exception as exc:  # the code is still usable without the link
        log.warning("could not ask Telegram for the bot's name: %s", exc)
        return None
    finally:
        await bot.session.close()
