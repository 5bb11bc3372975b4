"""Reply and inline keyboards. Callback data always goes through handlers.callbacks (validated format)."""

from __future__ import annotations

from collections.abc import Sequence
from functools import lru_cache
from typing import Any

from aiogram.types import (
    InlineKeyboardButton,
    InlineKeyboardMarkup,
    KeyboardButton,
    ReplyKeyboardMarkup,
    ReplyKeyboardRemove,
)

from handlers.callbacks import CLIENT, TICKET, Callback
from handlers.context import AppContext
from handlers.ports import Button

MENU_KEYS = (
    ("menu_balance", "menu_documents"),
    ("menu_requests", "menu_manager"),
    ("menu_problem", "menu_settings"),
)
ALL_MENU_KEYS = tuple(key for row in MENU_KEYS for key in row)


def client_data(action: str, value: object) -> str:
    return Callback(CLIENT, action, str(value)).encode()


def ticket_data(action: str, value: object) -> str:
    return Callback(TICKET, action, str(value)).encode()


def main_menu(ctx: AppContext, lang: str) -> ReplyKeyboardMarkup:
    # Sent with most replies (every opened ticket): built once per translator and language, not per update
    # (seven validated pydantic models each time). Nothing modifies a keyboard after building it.
    return _main_menu(ctx.t, lang)


@lru_cache(maxsize=16)
def _main_menu(translate: Any, lang: str) -> ReplyKeyboardMarkup:
    return ReplyKeyboardMarkup(
        keyboard=[[KeyboardButton(text=translate(key, lang)) for key in row] for row in MENU_KEYS],
        resize_keyboard=True,
        is_persistent=True,
    )


def share_contact(ctx: AppContext, lang: str) -> ReplyKeyboardMarkup:
    return ReplyKeyboardMarkup(
        keyboard=[
            [KeyboardButton(text=ctx.t("bot_share_contact_button", lang), request_contact=True)],
            [KeyboardButton(text=ctx.t("bot_use_account_button", lang))],
        ],
        resize_keyboard=True,
        one_time_keyboard=True,
    )


def remove() -> ReplyKeyboardRemove:
    return ReplyKeyboardRemove()


def inline(rows: Sequence[Sequence[tuple[str, str]]]) -> InlineKeyboardMarkup:
    """Rows of (text, callback_data)."""
    return InlineKeyboardMarkup(
        inline_keyboard=[[InlineKeyboardButton(text=text, callback_data=data) for text, data in row] for row in rows]
    )


def from_buttons(rows: Sequence[Sequence[Button]] | None) -> InlineKeyboardMarkup | None:
    """Port-level buttons (handlers.ports.Button) to an aiogram inline keyboard."""
    if not rows:
        return None
    return InlineKeyboardMarkup(
        inline_keyboard=[
            [InlineKeyboardButton(text=b.text, callback_data=b.callback_data, url=b.url) for b in row]
            for row in rows
        ]
    )


def staff_ticket_actions(ctx: AppContext, lang: str, ticket_id: int) -> InlineKeyboardMarkup:
    return inline([
        [(ctx.t("bot_btn_take", lang), ticket_data("take", ticket_id)),
         (ctx.t("bot_btn_reply", lang), ticket_data("reply", ticket_id))],
        [(ctx.t("bot_btn_resolve", lang), ticket_data("resolve", ticket_id)),
         (ctx.t("bot_btn_reassign", lang), ticket_data("reassign", ticket_id))],
        [(ctx.t("bot_btn_history", lang), ticket_data("history", ticket_id))],
    ])
