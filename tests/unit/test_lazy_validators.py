"""aiogram's validators built on first use (bot/lazy_validators.py): same schemas, same results, less memory.

Each check runs in a fresh interpreter: the placeholders are process-wide, and the memory figure needs a
process that has done nothing else.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def _run(script: str) -> dict:
    done = subprocess.run([sys.executable, "-c", textwrap.dedent(script)], cwd=ROOT, capture_output=True,
                          text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_every_model_rebuilds_to_the_schema_aiogram_built() -> None:
    result = _run("""
        import json, re
        from bot.lazy_validators import aiogram_models, build_validators_on_first_use

        def schema(c):  # a rebuild makes new lambdas for literal fields: compare all but their addresses
            return re.sub(r" at 0x[0-9a-f]+", "", repr(c.__pydantic_core_schema__))

        models = aiogram_models()
        before = {c.__qualname__: schema(c) for c in models}
        assert build_validators_on_first_use() == len(models)
        assert build_validators_on_first_use() == 0  # idempotent
        pending = sum(1 for c in models if not c.__pydantic_complete__)
        for c in models:
            c.__pydantic_validator__.rebuild()  # what the first validation does
        different = [c.__qualname__ for c in models if schema(c) != before[c.__qualname__]]
        print(json.dumps({"models": len(models), "pending": pending, "different": different}))
    """)
    assert result["models"] > 500
    assert result["pending"] == result["models"]  # nothing compiled until used
    assert result["different"] == []


def test_updates_and_methods_give_the_same_results_and_memory_drops() -> None:
    result = _run("""
        import json
        from aiogram.methods import SendMessage
        from aiogram.types import (InlineKeyboardButton, InlineKeyboardMarkup, KeyboardButton, ReplyKeyboardMarkup,
                                   Update)

        def rss_mb():
            with open("/proc/self/status") as status:
                return next(int(line.split()[1]) for line in status if line.startswith("VmRSS:")) / 1024

        user = {"id": 5, "is_bot": False, "first_name": "Анна", "language_code": "ru"}
        chat = {"id": 5, "type": "private", "first_name": "Анна"}
        payloads = [
            {"update_id": 1, "message": {"message_id": 1, "date": 1700000000, "chat": chat, "from": user,
                                         "contact": {"phone_number": "+79161234567", "first_name": "Анна",
                                                     "user_id": 5}}},
            {"update_id": 2, "callback_query": {"id": "q", "from": user, "chat_instance": "c", "data": "take:7",
                                                "message": {"message_id": 9, "date": 1700000000, "chat": chat,
                                                            "text": "alert",
                                                            "reply_to_message": {"message_id": 8,
                                                                                 "date": 1700000000,
                                                                                 "chat": chat, "text": "x"}}}},
            {"update_id": 3, "message": {"message_id": 2, "date": 1700000000, "chat": chat, "from": user,
                                         "photo": [{"file_id": "f", "file_unique_id": "u", "width": 1,
                                                    "height": 1}], "caption": "роутер"}},
        ]

        def results():
            dumps = [Update.model_validate(p).model_dump(mode="json", exclude_none=True) for p in payloads]
            keyboard = InlineKeyboardMarkup(inline_keyboard=[[InlineKeyboardButton(text="a", callback_data="b")]])
            reply = ReplyKeyboardMarkup(keyboard=[[KeyboardButton(text="📱", request_contact=True)]])
            for markup in (keyboard, reply):
                dumps.append(SendMessage(chat_id=5, text="x", reply_markup=markup).model_dump(
                    mode="json", exclude_none=True, exclude={"parse_mode", "link_preview_options",
                                                             "protect_content", "disable_web_page_preview"}))
            try:
                Update.model_validate({"update_id": "not a number"})
            except Exception as exc:
                dumps.append(type(exc).__name__)
            return dumps

        eager_rss = rss_mb()
        eager = results()
        from bot.lazy_validators import lean_aiogram
        lean_aiogram()
        lean_rss = rss_mb()
        print(json.dumps({"same": results() == eager, "saved_mb": eager_rss - lean_rss}))
    """)
    assert result["same"]
    assert result["saved_mb"] > 40, result  # about 77 MB with aiogram 3.31 and pydantic 2.13
