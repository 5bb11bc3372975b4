"""Settings through the webhook: language, notifications, /forget; and the conversation relay rules."""

from __future__ import annotations

from decimal import Decimal

from handlers.identification import identify_by_telegram
from handlers.subscriptions import get_subscriptions
from tests.e2e.bot_harness import bot_app, buttons
from tests.fakes import updates as u

CLIENT = 6680001


async def test_language_notifications_and_forget(demo_services, fake_bot_api):
    services = demo_services
    t = services.ctx.t
    async with bot_app(services, fake_bot_api) as env:
        await env.send(u.contact(CLIENT, "+79161234567"))
        sent = await env.send(u.message(CLIENT, t("menu_settings", "ru")))
        data = buttons(sent[0])
        assert {"c:lang:en", "c:sub:low_balance", "c:subset:low_balance", "c:sub:payment_received",
                "c:forget:ask"} <= set(data)

        # Language: the menu and every answer switch to English, and the choice is kept on the record.
        sent = await env.send(u.callback(CLIENT, "c:lang:en"))
        assert sent[0]["text"] == t("bot_language_set", "en")
        assert sent[0]["reply_markup"]["keyboard"][0][0]["text"] == t("menu_balance", "en")
        client = await identify_by_telegram(services.ctx, CLIENT)
        assert client is not None and client.language == "en"
        assert "Balance" in (await env.texts(u.message(CLIENT, t("menu_balance", "en"))))[0]

        # Low-balance threshold: a bad number is explained, a good one is saved and switches the notice on.
        await env.send(u.callback(CLIENT, "c:subset:low_balance"))
        assert await env.texts(u.message(CLIENT, "lots")) == [t("bot_sub_bad_number", "en")]
        await env.send(u.message(CLIENT, "350,5"))
        subs = {s.kind: s for s in await get_subscriptions(services.ctx, client)}
        assert subs["low_balance"].enabled and subs["low_balance"].threshold == Decimal("350.50")
        await env.send(u.callback(CLIENT, "c:sub:payment_received"))
        subs = {s.kind: s for s in await get_subscriptions(services.ctx, client)}
        assert subs["payment_received"].enabled
        await env.send(u.callback(CLIENT, "c:subset:service_end"))
        assert await env.texts(u.message(CLIENT, "99")) == [t("bot_sub_bad_days", "en")]
        await env.send(u.message(CLIENT, "5"))
        subs = {s.kind: s for s in await get_subscriptions(services.ctx, client)}
        assert subs["service_end"].enabled and subs["service_end"].days_before == 5

        # /forget: confirm, then the personal data is gone and the bot no longer knows the client.
        sent = await env.send(u.command(CLIENT, "/forget"))
        assert "c:forget:yes" in buttons(sent[0])
        assert await env.texts(u.callback(CLIENT, "c:forget:no")) == [t("bot_forget_kept", "en")]
        assert await identify_by_telegram(services.ctx, CLIENT) is not None
        assert await env.texts(u.callback(CLIENT, "c:forget:yes")) == [t("bot_forget_done", "en")]
        assert await identify_by_telegram(services.ctx, CLIENT) is None
        async with services.uow() as uow:
            customer = await uow.customers.get(client.customer_id)
            assert customer is not None and customer.consent_at is None and "Иванов" not in customer.name
        # Balance now asks to identify again.
        texts = await env.texts(u.message(CLIENT, t("menu_balance", "en")))
        assert t("bot_identify_first", "en") in texts


async def test_prospect_can_forget_the_shared_phone(services, fake_bot_api):
    t = services.ctx.t
    async with bot_app(services, fake_bot_api) as env:
        assert await env.texts(u.command(CLIENT, "/forget")) == [t("bot_forget_nothing", "ru")]
        await env.send(u.contact(CLIENT, "+79990001122"))  # no such customer: a prospect
        assert await services.ctx.kv.kv.get(f"tg:prospect:{CLIENT}") == "+79990001122"
        sent = await env.send(u.command(CLIENT, "/forget"))
        assert "c:forget:yes" in buttons(sent[0])
        assert await env.texts(u.callback(CLIENT, "c:forget:yes")) == [t("bot_forget_done", "ru")]
        assert await services.ctx.kv.kv.get(f"tg:prospect:{CLIENT}") is None


async def test_unidentified_user_is_asked_to_identify_for_personal_data(services, fake_bot_api):
    t = services.ctx.t
    async with bot_app(services, fake_bot_api) as env:
        for key in ("menu_balance", "menu_documents", "menu_requests", "menu_manager"):
            texts = await env.texts(u.message(CLIENT, t(key, "ru")))
            assert texts[0] == t("bot_identify_first", "ru"), key
        assert await env.texts(u.callback(CLIENT, "c:dp:invoice.6m")) == [t("bot_identify_first", "ru"),
                                                                        t("bot_share_contact", "ru")]
