"""`python main.py chat` and `python main.py staff invite`: the bot without Telegram, and invite codes."""

from __future__ import annotations

import argparse
import io
import re
from collections.abc import AsyncIterator

from bot.terminal import chat_session, cmd_staff_invite
from service.wiring import connect_ports


async def _script(*lines: str) -> AsyncIterator[str]:
    for line in lines:
        yield line


async def test_client_chat_in_the_terminal(demo_services):
    connect_ports(demo_services)
    out = io.StringIO()
    code = await chat_session(demo_services, user_id=900001, language="ru", staff_email=None, out=out,
                              lines=_script("1", "+79161234567", "1", "5", "Не работает интернет, горит красный",
                                            "/quit"))
    text = out.getvalue()
    assert code == 0
    assert "[1] 📱 Поделиться номером" in text  # reply buttons are numbered
    assert "Иванов Иван Иванович" in text
    assert "Лицевой счёт 200001" in text  # "1" pressed the Balance button
    # The problem either opened a ticket or offered topics as numbered inline buttons.
    assert re.search(r"№ \d{4}-\d{6}", text) or "   [1] " in text.split("Опишите проблему")[-1]


async def test_staff_chat_links_by_invite_and_sees_the_queue(demo_services):
    connect_ports(demo_services)
    out = io.StringIO()
    await chat_session(demo_services, user_id=900002, language="ru", staff_email="support.lead@svyazservice.example",
                       out=out, lines=_script("/queue", "/stats", "/quit"))
    text = out.getvalue()
    assert "Павел Лебедев" in text and "/queue" in text
    assert "Очередь отдела" in text or "Заявок нет" in text
    assert "CSAT" in text


async def test_staff_invite_command_prints_a_working_code(demo_services, business_config, capsys):
    args = argparse.Namespace(email="manager1@svyazservice.example", days=7)
    assert await cmd_staff_invite(args, demo_services.settings, business_config) == 0
    printed = capsys.readouterr().out
    code = re.search(r"/start (\S+)", printed).group(1)  # type: ignore[union-attr]
    from handlers.staff_invites import redeem_staff_invite

    profile = await redeem_staff_invite(demo_services.ctx, code, 424242)
    assert profile.name == "Анна Петрова" and profile.telegram_id == 424242
    args = argparse.Namespace(email="nobody@example.com", days=7)
    assert await cmd_staff_invite(args, demo_services.settings, business_config) == 1
