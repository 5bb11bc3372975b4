"""How the Telegram adapter starts: off without BOT_TOKEN, long polling without PUBLIC_BASE_URL."""

from __future__ import annotations

from pydantic import SecretStr

from bot.webhook import setup
from service.http import create_app
from tests.helpers import http_client


async def test_telegram_off_without_token(services):
    app = create_app(services)
    lines = setup(app, services.ctx, services.settings)
    assert lines == ["  telegram off (BOT_TOKEN not set)"]
    async with http_client(app) as client:
        assert (await client.post("/telegram/webhook", json={})).status in (404, 405)


async def test_long_polling_without_public_url(services, fake_bot_api):
    settings = services.settings.model_copy(update={"bot_token": SecretStr(fake_bot_api.token),
                                                    "telegram_api_server": fake_bot_api.base_url})
    app = create_app(services)
    lines = setup(app, services.ctx, settings)
    assert "long polling" in lines[0]
    async with http_client(app) as client:
        await fake_bot_api.wait_for(lambda calls: any(c.method == "getUpdates" for c in calls), timeout=10)
        assert any(c.method == "deleteWebhook" for c in fake_bot_api.calls)
        assert (await client.post("/telegram/webhook", json={})).status in (404, 405)
