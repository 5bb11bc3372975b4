"""The fake Bot API must behave like Telegram as aiogram sees it, or every test built on it lies."""

import asyncio

import pytest
from aiogram import Bot
from aiogram.client.session.aiohttp import AiohttpSession
from aiogram.client.telegram import TelegramAPIServer
from aiogram.exceptions import TelegramForbiddenError, TelegramRetryAfter, TelegramServerError
from aiogram.types import BufferedInputFile, InlineKeyboardButton, InlineKeyboardMarkup


@pytest.fixture
async def bot(fake_bot_api):
    bot = Bot(fake_bot_api.token, session=AiohttpSession(api=TelegramAPIServer.from_base(fake_bot_api.base_url)))
    yield bot
    await bot.session.close()


async def test_messages_are_recorded_and_parsed(bot, fake_bot_api):
    me = await bot.get_me()
    assert me.username == fake_bot_api.bot_username
    markup = InlineKeyboardMarkup(inline_keyboard=[[InlineKeyboardButton(text="Взять", callback_data="t:take:1")]])
    message = await bot.send_message(42, "<b>Привет</b>", parse_mode="HTML", reply_markup=markup)
    assert message.message_id >= 1000 and message.chat.id == 42
    [sent] = fake_bot_api.sent("sendMessage", chat_id=42)
    assert sent["text"] == "<b>Привет</b>" and sent["parse_mode"] == "HTML"
    assert sent["reply_markup"]["inline_keyboard"][0][0]["callback_data"] == "t:take:1"
    doc = await bot.send_document(-100, BufferedInputFile(b"%PDF-1.4", filename="act.pdf"), caption="Акт")
    assert doc.document.file_name == "act.pdf"
    [upload] = fake_bot_api.sent("sendDocument")
    assert upload["document"]["content"] == b"%PDF-1.4" and upload["chat_id"] == -100


async def test_injected_failures_map_to_aiogram_errors(bot, fake_bot_api):
    fake_bot_api.fail_next("sendMessage", 429, retry_after=3)
    with pytest.raises(TelegramRetryAfter) as info:
        await bot.send_message(1, "x")
    assert info.value.retry_after == 3
    fake_bot_api.fail_next("sendMessage", 403)
    with pytest.raises(TelegramForbiddenError):
        await bot.send_message(1, "x")
    fake_bot_api.fail_next("*", 502, times=2)
    for _ in range(2):
        with pytest.raises(TelegramServerError):
            await bot.send_message(1, "x")
    await bot.send_message(1, "finally")
    assert fake_bot_api.texts(1) == ["finally"] and len(fake_bot_api.rejected) == 4


async def test_flood_limits_are_enforced(bot, fake_bot_api):
    fake_bot_api.enforce_limits = True
    await bot.send_message(7, "first")
    with pytest.raises(TelegramRetryAfter):
        await bot.send_message(7, "too soon for the same chat")
    results = await asyncio.gather(*(bot.send_message(100 + i, "x") for i in range(40)), return_exceptions=True)
    assert sum(isinstance(r, TelegramRetryAfter) for r in results) >= 10  # 30/s overall
    for i in range(20):
        fake_bot_api._recent_all.clear()
        await bot.send_message(-5, f"group {i}")
    fake_bot_api._recent_all.clear()
    with pytest.raises(TelegramRetryAfter):
        await bot.send_message(-5, "21st in a minute")


async def test_wait_for_reports_what_happened(fake_bot_api):
    with pytest.raises(AssertionError, match="not met"):
        await fake_bot_api.wait_for(lambda calls: len(calls) > 0, timeout=0.2)
