"""Builders of Telegram update JSON exactly as the Bot API delivers it to a webhook."""

from __future__ import annotations

import itertools
import time
from typing import Any

_update_ids = itertools.count(700_000_000)
_message_ids = itertools.count(1000)


def next_update_id() -> int:
    return next(_update_ids)


def user(user_id: int, first_name: str = "Ivan", language_code: str | None = "ru", **extra: Any) -> dict[str, Any]:
    data: dict[str, Any] = {"id": user_id, "is_bot": False, "first_name": first_name}
    if language_code is not None:
        data["language_code"] = language_code
    data.update(extra)
    return data


def private_chat(user_id: int, first_name: str = "Ivan") -> dict[str, Any]:
    return {"id": user_id, "first_name": first_name, "type": "private"}


def group_chat(chat_id: int, title: str = "Department") -> dict[str, Any]:
    return {"id": chat_id, "title": title, "type": "supergroup"}


def message(user_id: int, text: str | None = None, *, update_id: int | None = None, chat: dict[str, Any] | None = None,
            language_code: str | None = "ru", reply_to: dict[str, Any] | None = None, **content: Any
            ) -> dict[str, Any]:
    """A message update; `content` adds photo=..., document=..., sticker=..., contact=... as Telegram does."""
    msg: dict[str, Any] = {
        "message_id": next(_message_ids),
        "from": user(user_id, language_code=language_code),
        "chat": chat or private_chat(user_id),
        "date": int(time.time()),
    }
    if text is not None:
        msg["text"] = text
        if text.startswith("/"):
            command = text.split()[0]
            msg["entities"] = [{"offset": 0, "length": len(command), "type": "bot_command"}]
    if reply_to is not None:
        msg["reply_to_message"] = reply_to
    msg.update(content)
    return {"update_id": update_id if update_id is not None else next_update_id(), "message": msg}


def command(user_id: int, text: str, **kwargs: Any) -> dict[str, Any]:
    return message(user_id, text, **kwargs)


def contact(user_id: int, phone: str, *, contact_user_id: int | None = None, first_name: str = "Ivan",
            **kwargs: Any) -> dict[str, Any]:
    """Shared contact; `contact_user_id` differs from `user_id` for a forwarded or someone else's card."""
    card: dict[str, Any] = {"phone_number": phone, "first_name": first_name}
    owner = user_id if contact_user_id is None else contact_user_id
    if owner:
        card["user_id"] = owner
    return message(user_id, None, contact=card, **kwargs)


def photo(user_id: int, caption: str | None = None, file_id: str = "AgACAgIAAxkBAAIBPhotoFileId", **kwargs: Any
          ) -> dict[str, Any]:
    sizes = [
        {"file_id": file_id + "_s", "file_unique_id": "AQADs", "width": 90, "height": 90, "file_size": 1200},
        {"file_id": file_id, "file_unique_id": "AQADm", "width": 1280, "height": 960, "file_size": 120_000},
    ]
    extra: dict[str, Any] = {"photo": sizes}
    if caption is not None:
        extra["caption"] = caption
    return message(user_id, None, **extra, **kwargs)


def document(user_id: int, file_name: str = "scan.pdf", caption: str | None = None, **kwargs: Any) -> dict[str, Any]:
    extra: dict[str, Any] = {"document": {"file_id": "BQACAgIAAxkBAAIBDocFileId", "file_unique_id": "AgADd",
                                          "file_name": file_name, "mime_type": "application/pdf",
                                          "file_size": 52_000}}
    if caption is not None:
        extra["caption"] = caption
    return message(user_id, None, **extra, **kwargs)


def voice(user_id: int, **kwargs: Any) -> dict[str, Any]:
    return message(user_id, None, voice={"file_id": "AwACAgIAAxkBAAIBVoiceFileId", "file_unique_id": "AgADv",
                                         "duration": 7, "mime_type": "audio/ogg", "file_size": 21_000}, **kwargs)


def sticker(user_id: int, **kwargs: Any) -> dict[str, Any]:
    return message(user_id, None, sticker={
        "file_id": "CAACAgIAAxkBAAIBStickerId", "file_unique_id": "AgADs", "type": "regular", "width": 512,
        "height": 512, "is_animated": False, "is_video": False, "emoji": "👍", "set_name": "HotCherry",
    }, **kwargs)


def location(user_id: int, **kwargs: Any) -> dict[str, Any]:
    return message(user_id, None, location={"latitude": 55.7558, "longitude": 37.6173}, **kwargs)


def poll(user_id: int, **kwargs: Any) -> dict[str, Any]:
    return message(user_id, None, poll={
        "id": "5368843612345678901", "question": "Что лучше?",
        "options": [{"persistent_id": "0", "text": "А", "voter_count": 0},
                    {"persistent_id": "1", "text": "Б", "voter_count": 0}],
        "total_voter_count": 0, "is_closed": False, "is_anonymous": True, "type": "regular",
        "allows_multiple_answers": False, "allows_revoting": False, "members_only": False,
    }, **kwargs)


def bot_message(chat_id: int, message_id: int, text: str, bot_id: int = 123456789) -> dict[str, Any]:
    """A message the bot sent earlier (what `reply_to_message` carries when someone replies to it)."""
    return {"message_id": message_id, "from": {"id": bot_id, "is_bot": True, "first_name": "Front office",
                                               "username": "frontoffice_test_bot"},
            "chat": private_chat(chat_id) if chat_id > 0 else group_chat(chat_id), "date": int(time.time()),
            "text": text}


def callback(user_id: int, data: str, *, message_id: int = 1, chat_id: int | None = None, text: str = "…",
             update_id: int | None = None, language_code: str | None = "ru") -> dict[str, Any]:
    chat = chat_id if chat_id is not None else user_id
    return {
        "update_id": update_id if update_id is not None else next_update_id(),
        "callback_query": {
            "id": str(4_000_000_000_000 + next(_message_ids)),
            "from": user(user_id, language_code=language_code),
            "message": bot_message(chat, message_id, text),
            "chat_instance": "-5000000000000000000",
            "data": data,
        },
    }
