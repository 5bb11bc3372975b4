"""The aiogram MessageSender maps Bot API answers to the port's errors (against the fake Bot API)."""

from __future__ import annotations

import pytest

from bot.sender import AiogramSender, make_bot
from handlers.ports import Button, PermanentFailure, RecipientUnreachable, RetryAfter, TemporaryFailure


@pytest.fixture
async def sender(fake_bot_api):  # type: ignore[no-untyped-def]
    bot = make_bot(fake_bot_api.token, fake_bot_api.base_url)
    try:
        yield AiogramSender(bot)
    finally:
        await bot.session.close()


async def test_message_with_buttons_reply_and_document(sender, fake_bot_api) -> None:
    sent = await sender.send_message(42, "<b>hi</b>", buttons=[[Button("Take", callback_data="t:take:1"),
                                                               Button("Site", url="https://example.com")]],
                                     reply_to_message_id=7)
    assert sent.chat_id == 42 and sent.message_id > 0
    [call] = fake_bot_api.sent("sendMessage", chat_id=42)
    assert call["parse_mode"] == "HTML" and call["reply_parameters"]["message_id"] == 7
    assert call["reply_markup"]["inline_keyboard"][0][0]["callback_data"] == "t:take:1"
    doc = await sender.send_document(42, "act.pdf", b"%PDF", caption="Акт")
    assert doc.message_id != sent.message_id
    [upload] = fake_bot_api.sent("sendDocument", chat_id=42)
    assert upload["document"]["content"] == b"%PDF" and upload["document"]["filename"] == "act.pdf"


@pytest.mark.parametrize(("status", "description", "error"), [
    (429, "", RetryAfter),
    (403, "Forbidden: bot was blocked by the user", RecipientUnreachable),
    (400, "Bad Request: chat not found", RecipientUnreachable),
    (400, "Bad Request: can't parse entities: unsupported start tag", PermanentFailure),
    (500, "Internal Server Error", TemporaryFailure),
    (502, "Bad Gateway", TemporaryFailure),
])
async def test_errors_are_translated(sender, fake_bot_api, status, description, error) -> None:
    fake_bot_api.fail_next("sendMessage", status, description, retry_after=3 if status == 429 else None)
    with pytest.raises(error) as raised:
        await sender.send_message(1, "x")
    if status == 429:
        assert raised.value.seconds == 3


async def test_unreachable_server_is_temporary() -> None:
    from tests.helpers import free_port

    bot = make_bot("1:x", f"http://127.0.0.1:{free_port()}")
    try:
        with pytest.raises(TemporaryFailure):
            await AiogramSender(bot).send_message(1, "x")
    finally:
        await bot.session.close()
