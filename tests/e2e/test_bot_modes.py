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


def test_no_filter_or_handler_runs_in_a_worker_thread(services):
    """aiogram runs a synchronous filter or handler (a bare `F.text` too) through asyncio.to_thread; on the
    message path that cost a thread hand-off per check (bot/filters.py). Every one must be a coroutine."""
    from bot.dispatcher import build_dispatcher

    dp = build_dispatcher(services.ctx)
    in_threads = []
    for router in dp.chain_tail:
        for name, observer in router.observers.items():
            for handler in observer.handlers:
                for obj in (handler, *(handler.filters or ())):
                    if not obj.awaitable:
                        in_threads.append(f"{router.name}.{name}: {obj.callback!r}")
            for obj in observer._handler.filters or ():
                if not obj.awaitable:
                    in_threads.append(f"{router.name}.{name} router filter: {obj.callback!r}")
    assert in_threads == []
