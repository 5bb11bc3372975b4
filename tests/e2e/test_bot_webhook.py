"""The Telegram webhook's guarantees: secret, acknowledgement after commit, redelivery, poisonous updates."""

from __future__ import annotations

import pytest
from sqlalchemy import func, select

from storage.models import Interaction, ProcessedUpdate
from tests.e2e.bot_harness import bot_app
from tests.fakes import updates as u

CLIENT_ID = 5550001


async def _processed(services, update_id: int) -> ProcessedUpdate | None:
    async with services.uow() as uow:
        return await uow.processed_updates.get("telegram", str(update_id))


async def test_banner_and_set_webhook_with_secret(services, fake_bot_api):
    async with bot_app(services, fake_bot_api) as env:
        assert any("webhook https://frontoffice.example/telegram/webhook" in line for line in env.banner)
        await fake_bot_api.wait_for(lambda calls: any(c.method == "setWebhook" for c in calls))
        call = next(c for c in fake_bot_api.calls if c.method == "setWebhook")
        assert call.data["url"] == "https://frontoffice.example/telegram/webhook"
        assert call.data["secret_token"] == "test-webhook-secret_0123456789"


@pytest.mark.parametrize("secret", [None, "wrong", ""])
async def test_wrong_or_missing_secret_is_401_and_touches_nothing(services, fake_bot_api, secret):
    async with bot_app(services, fake_bot_api) as env:
        update = u.command(CLIENT_ID, "/start")
        response = await env.post(update, secret=secret)
        assert response.status == 401
        assert await _processed(services, update["update_id"]) is None
        assert fake_bot_api.sent() == []


async def test_malformed_update_is_refused(services, fake_bot_api):
    async with bot_app(services, fake_bot_api) as env:
        response = await env.client.post("/telegram/webhook", data=b"{not json",
                                         headers={"X-Telegram-Bot-Api-Secret-Token": "test-webhook-secret_0123456789"})
        assert response.status == 400
        response = await env.post({"update_id": "x", "message": 5})
        assert response.status == 400
        # Well-formed JSON with an update id that still does not parse: recorded as failed, acknowledged.
        response = await env.post({"update_id": 77, "message": {"message_id": "nope"}})
        assert response.status == 200
        row = await _processed(services, 77)
        assert row is not None and row.status == "failed"
        huge = u.command(CLIENT_ID, "/start")
        huge["message"]["from"]["id"] = 2**64
        assert (await env.post(huge)).status == 200
        assert (await _processed(services, huge["update_id"])).status == "failed"


async def test_start_greets_and_asks_for_contact_with_consent(services, fake_bot_api):
    async with bot_app(services, fake_bot_api) as env:
        sent = await env.send(u.command(CLIENT_ID, "/start"))
        t = services.ctx.t
        assert [m["text"] for m in sent] == [t("bot_greeting", "ru"), t("bot_share_contact", "ru")]
        keyboard = sent[1]["reply_markup"]["keyboard"]
        assert keyboard[0][0]["request_contact"] is True
        assert "согласие на обработку персональных данных" in sent[1]["text"]
        sent = await env.send(u.command(CLIENT_ID + 1, "/start", language_code="en-GB"))
        assert sent[0]["text"] == t("bot_greeting", "en")


async def test_redelivered_update_is_ignored(services, fake_bot_api):
    async with bot_app(services, fake_bot_api) as env:
        update = u.command(CLIENT_ID, "/start")
        first = await env.send(update)
        again = await env.send(update)
        assert len(first) == 2 and again == []
        row = await _processed(services, update["update_id"])
        assert row is not None and row.status == "done"


async def test_failure_is_5xx_then_recorded_and_acknowledged_after_three_tries(services, fake_bot_api, monkeypatch):
    import bot.start as start

    calls = 0

    async def broken(*_args, **_kwargs):
        nonlocal calls
        calls += 1
        raise RuntimeError("database exploded")

    monkeypatch.setattr(start, "ask_to_identify", broken)
    async with bot_app(services, fake_bot_api) as env:
        update = u.command(CLIENT_ID, "/start")
        assert (await env.post(update)).status == 500
        assert (await env.post(update)).status == 500
        assert await _processed(services, update["update_id"]) is None
        before = len(fake_bot_api.calls)
        assert (await env.post(update)).status == 200
        row = await _processed(services, update["update_id"])
        assert row is not None and row.status == "failed" and "database exploded" in (row.error or "")
        apology = services.ctx.t("error_apology", "ru")
        assert apology in [c.data.get("text") for c in env.calls_since(before, "sendMessage")]
        assert (await env.post(update)).status == 200  # and then it is never tried again
        assert calls == 3


async def test_back_end_down_means_redelivery_not_loss(services, fake_bot_api, monkeypatch):
    import bot.start as start
    from handlers.dto import ServiceUnavailable

    async def down(*_args, **_kwargs):
        raise ServiceUnavailable("database unreachable")

    monkeypatch.setattr(start, "ask_to_identify", down)
    async with bot_app(services, fake_bot_api) as env:
        update = u.command(CLIENT_ID, "/start")
        # Down for longer than the attempts a bad update gets: an outage must never use them up.
        for _ in range(5):
            assert (await env.post(update)).status == 503
        assert await _processed(services, update["update_id"]) is None
        monkeypatch.undo()
        sent = await env.send(update)  # Telegram delivers it again once we are back
        assert sent[-1]["text"] == services.ctx.t("bot_share_contact", "ru")
        row = await _processed(services, update["update_id"])
        assert row is not None and row.status == "done"


async def test_forged_contact_is_refused(demo_services, fake_bot_api):
    services = demo_services
    async with bot_app(services, fake_bot_api) as env:
        # Someone forwards Ivanov's contact card: it must not identify the sender as Ivanov.
        sent = await env.send(u.contact(CLIENT_ID, "+79161234567", contact_user_id=999))
        assert sent[0]["text"] == services.ctx.t("bot_contact_not_own", "ru")
        sent = await env.send(u.contact(CLIENT_ID, "+79161234567", contact_user_id=0))  # no user_id at all
        assert sent[0]["text"] == services.ctx.t("bot_contact_not_own", "ru")
        from handlers.identification import identify_by_telegram

        assert await identify_by_telegram(services.ctx, CLIENT_ID) is None


async def test_own_contact_identifies_links_and_records_consent(demo_services, fake_bot_api):
    services = demo_services
    async with bot_app(services, fake_bot_api) as env:
        sent = await env.send(u.contact(CLIENT_ID, "79161234567"))
        assert "Иванов Иван Иванович" in sent[0]["text"]
        assert sent[0]["reply_markup"]["keyboard"][0][0]["text"] == services.ctx.t("menu_balance", "ru")
        from handlers.identification import identify_by_telegram

        client = await identify_by_telegram(services.ctx, CLIENT_ID)
        assert client is not None and client.has_consent and "200001" in client.account_numbers
        sent = await env.send(u.command(CLIENT_ID, "/start"))
        assert "Иванов Иван Иванович" in sent[0]["text"]


async def test_unknown_phone_then_account_and_pin(demo_services, fake_bot_api):
    services = demo_services
    t = services.ctx.t
    async with bot_app(services, fake_bot_api) as env:
        sent = await env.send(u.contact(CLIENT_ID, "+79990000000"))
        assert sent[0]["text"] == t("bot_phone_unknown", "ru")
        assert sent[1]["reply_markup"]["inline_keyboard"][0][0]["callback_data"] == "c:ident:pin"
        assert (await env.texts(u.callback(CLIENT_ID, "c:ident:pin")))[0] == t("bot_ask_account", "ru")
        assert await env.texts(u.message(CLIENT_ID, "abc")) == [t("bot_account_malformed", "ru")]
        assert await env.texts(u.message(CLIENT_ID, "100002")) == [t("bot_ask_pin", "ru")]
        before = len(fake_bot_api.calls)
        texts = await env.texts(u.message(CLIENT_ID, "9999"))
        assert texts == [t("bot_pin_wrong", "ru", attempts=4)]
        assert env.calls_since(before, "deleteMessage"), "the PIN message must be deleted"
        texts = await env.texts(u.message(CLIENT_ID, "0002"))
        assert "ООО" in texts[0] or "АО" in texts[0] or "ИП" in texts[0]
        from handlers.identification import identify_by_telegram

        client = await identify_by_telegram(services.ctx, CLIENT_ID)
        assert client is not None and "100002" in client.account_numbers and client.has_consent


async def test_unsupported_content_gets_a_polite_answer(services, fake_bot_api):
    async with bot_app(services, fake_bot_api) as env:
        expected = services.ctx.t("bot_unsupported_content", "ru")
        for update in (u.sticker(CLIENT_ID), u.poll(CLIENT_ID), u.location(CLIENT_ID)):
            assert await env.texts(update) == [expected]
        async with services.uow() as uow:
            assert await uow.session.scalar(select(func.count()).select_from(Interaction)) == 0


async def test_50kb_message_is_handled_and_kept_whole(demo_services, fake_bot_api):
    services = demo_services
    async with bot_app(services, fake_bot_api) as env:
        await env.send(u.contact(CLIENT_ID, "+79161234567"))
        text = "Не работает интернет. " + "Подробности: " * 4000  # about 52,000 characters
        update = u.message(CLIENT_ID, text)
        sent = await env.send(update)
        assert sent, "the client must get an answer"
        assert all(len(m.get("text", "")) <= 4096 for m in sent)
        async with services.uow() as uow:
            interaction = await uow.interactions.by_external_id(f"tg:{update['update_id']}")
        assert interaction is not None
        from storage.models import Ticket

        if interaction.ticket_id is not None:
            async with services.uow() as uow:
                ticket = await uow.session.get(Ticket, interaction.ticket_id)
            assert ticket is not None and ticket.text == text
        # A redelivery of the same big update opens nothing new.
        assert await env.send(update) == []


async def test_unknown_command_and_cancel_and_help(services, fake_bot_api):
    async with bot_app(services, fake_bot_api) as env:
        t = services.ctx.t
        assert await env.texts(u.command(CLIENT_ID, "/nonsense")) == [t("bot_unknown_command", "ru")]
        assert await env.texts(u.command(CLIENT_ID, "/cancel")) == [t("bot_nothing_to_cancel", "ru")]
        assert "/cancel" in (await env.texts(u.command(CLIENT_ID, "/help")))[0]


async def test_forged_and_stale_callback_data(services, fake_bot_api):
    async with bot_app(services, fake_bot_api) as env:
        t = services.ctx.t
        for data in ("t:resolve:1", "t:take:99999999999999999999", "x:y:z", "garbage", "c:unknown:1"):
            before = len(fake_bot_api.calls)
            assert (await env.post(u.callback(CLIENT_ID, data))).status == 200
            answers = env.calls_since(before, "answerCallbackQuery")
            assert answers and answers[0].data.get("text") in (t("bot_not_allowed", "ru"), t("bot_button_stale", "ru"))


async def test_flood_limit_answers_politely_once(services, fake_bot_api, monkeypatch):
    import bot.middlewares

    # A fixed window: a long one, so the 25 updates do not straddle two windows on a slow machine.
    monkeypatch.setattr(bot.middlewares, "FLOOD_WINDOW_SECONDS", 3600.0)
    async with bot_app(services, fake_bot_api) as env:
        texts: list[str] = []
        for _ in range(25):
            texts += await env.texts(u.command(CLIENT_ID, "/help"))
        notice = services.ctx.t("too_many_requests", "ru")
        assert texts.count(notice) == 1
        assert len([x for x in texts if x != notice]) == 20
