"""Shared harness for the bot's end-to-end tests: the real aiohttp app with the Telegram adapter mounted in
webhook mode, pointed at the fake Bot API; updates are posted as Telegram posts them."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

from aiohttp.test_utils import TestClient
from pydantic import SecretStr

from bot.webhook import SECRET_HEADER, WEBHOOK_PATH, setup
from service.container import Services
from service.http import create_app
from tests.fakes.bot_api import FakeBotApi
from tests.helpers import http_client

SECRET = "test-webhook-secret_0123456789"


@dataclass
class BotEnv:
    client: TestClient
    api: FakeBotApi
    services: Services
    banner: list[str]

    async def post(self, update: dict[str, Any], *, secret: str | None = SECRET) -> Any:
        headers = {SECRET_HEADER: secret} if secret is not None else {}
        return await self.client.post(WEBHOOK_PATH, json=update, headers=headers)

    async def send(self, update: dict[str, Any]) -> list[dict[str, Any]]:
        """Post an update (must be acknowledged) and return the messages the bot sent meanwhile."""
        before = len(self.api.calls)
        response = await self.post(update)
        assert response.status == 200, await response.text()
        return [call.data for call in self.api.calls[before:] if call.method in ("sendMessage", "sendDocument")]

    async def texts(self, update: dict[str, Any]) -> list[str]:
        return [str(m.get("text") or m.get("caption") or "") for m in await self.send(update)]

    def calls_since(self, index: int, method: str | None = None) -> list[Any]:
        return [c for c in self.api.calls[index:] if method is None or c.method == method]


def connect(services: Services) -> None:
    """The ports production wires (classifier, knowledge base, sender...), when those features exist."""
    from service import wiring

    connect_ports = getattr(wiring, "connect_ports", None)
    if connect_ports is not None:
        connect_ports(services)


@asynccontextmanager
async def bot_app(services: Services, api: FakeBotApi, **overrides: Any) -> AsyncIterator[BotEnv]:
    settings = services.settings.model_copy(update={
        "bot_token": SecretStr(api.token),
        "telegram_api_server": api.base_url,
        "public_base_url": "https://frontoffice.example",
        "telegram_webhook_secret": SecretStr(SECRET),
        **overrides,
    })
    services.settings = settings
    connect(services)
    app = create_app(services)
    prefix = f"fotest:fsm:{uuid.uuid4().hex[:8]}"
    banner = setup(app, services.ctx, settings, fsm_prefix=prefix)
    try:
        async with http_client(app) as client:
            yield BotEnv(client, api, services, banner)
    finally:
        if services.kv.redis is not None:
            keys = [key async for key in services.kv.redis.scan_iter(match=f"{prefix}*", count=500)]
            if keys:
                await services.kv.redis.delete(*keys)
