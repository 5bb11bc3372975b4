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
from sqlalchemy import select

from bot.webhook import SECRET_HEADER, WEBHOOK_PATH, setup
from handlers.staff_invites import create_staff_invite
from service.container import Services
from service.http import create_app
from storage.models import AlertMessage, Ticket
from tests.fakes import updates as u
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


async def link_staff(env: BotEnv, email: str, telegram_id: int) -> None:
    invite = await create_staff_invite(env.services.ctx, email)
    texts = await env.texts(u.command(telegram_id, f"/start {invite.code}"))
    assert any("/queue" in text for text in texts), texts


async def deliver_outbox(env: BotEnv) -> None:
    from handlers.notifications.dispatcher import NotificationDispatcher

    dispatcher = NotificationDispatcher(env.services.ctx, poll_interval=0.05)
    while await dispatcher.run_once():
        pass


async def open_ticket_via_bot(env: BotEnv, user_id: int, text: str, topic: str = "no_connection") -> Ticket:
    """Report a problem; when the classifier is unsure, pick the topic from the offered buttons."""
    t = env.services.ctx.t
    assert await env.texts(u.message(user_id, t("menu_problem", "ru"))) == [t("bot_describe_problem", "ru")]
    sent = await env.send(u.message(user_id, text))
    markup = sent[-1].get("reply_markup") or {}
    if "inline_keyboard" in markup and any("c:topic:" in b.get("callback_data", "")
                                           for row in markup["inline_keyboard"] for b in row):
        sent = await env.send(u.callback(user_id, f"c:topic:{topic}"))
    async with env.services.uow() as uow:
        ticket = await uow.session.scalar(select(Ticket).order_by(Ticket.id.desc()).limit(1))
    assert ticket is not None
    assert any(ticket.number in str(m.get("text")) for m in sent), sent
    return ticket


async def ticket_row(env: BotEnv, ticket_id: int) -> Ticket:
    async with env.services.uow() as uow:
        ticket = await uow.session.get(Ticket, ticket_id)
        assert ticket is not None
        return ticket


def buttons(message: dict[str, Any]) -> list[str]:
    markup = message.get("reply_markup") or {}
    return [b.get("callback_data", "") for row in markup.get("inline_keyboard", []) for b in row]


async def alert_message_id(env: BotEnv, ticket_id: int, chat_id: int) -> int:
    """The Telegram message id the dispatcher recorded for the alert (what a staff reply points at)."""
    async with env.services.uow() as uow:
        message_id = await uow.session.scalar(select(AlertMessage.message_id).where(
            AlertMessage.ticket_id == ticket_id, AlertMessage.chat_id == chat_id).order_by(AlertMessage.id))
    assert message_id is not None
    return int(message_id)
