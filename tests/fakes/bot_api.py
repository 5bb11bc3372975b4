"""A fake Telegram Bot API server for tests and benchmarks.

It answers the methods the product uses with well-formed results (so aiogram parses them), records every
call, can be told to fail (429 with retry_after, 5xx, 403, 400) and can enforce Telegram's flood limits
(about 30 messages/s overall, 1 message/s per chat, 20 messages/min per group) the way the real server does:
by answering 429 with `retry_after`.

    api = FakeBotApi()
    await api.start()
    bot = Bot(api.token, session=AiohttpSession(api=TelegramAPIServer.from_base(api.base_url)))
    ...
    assert api.sent("sendMessage", chat_id=42)[0]["text"] == "..."
    await api.stop()
"""

from __future__ import annotations

import asyncio
import itertools
import json
import time
from collections import defaultdict, deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

SENDING_METHODS = {
    "sendMessage", "sendDocument", "sendPhoto", "sendVoice", "sendAudio", "sendVideo", "sendMediaGroup",
    "copyMessage", "forwardMessage", "sendLocation", "sendContact", "sendSticker",
}


@dataclass
class ApiCall:
    method: str
    data: dict[str, Any]
    at: float = field(default_factory=time.monotonic)
    status: int = 200


@dataclass
class _Failure:
    status: int
    description: str
    retry_after: int | None
    times: int


class FakeBotApi:
    def __init__(self, token: str = "123456789:TEST-fake-token", bot_username: str = "frontoffice_test_bot"):
        self.token = token
        self.bot_id = int(token.split(":")[0])
        self.bot_username = bot_username
        self.calls: list[ApiCall] = []
        self.rejected: list[ApiCall] = []  # calls answered with an error (429, injected failures)
        self.enforce_limits = False
        self.global_per_second = 30
        self.per_chat_per_second = 1
        self.group_per_minute = 20
        self.delay = 0.0  # seconds added to every answer (slow Telegram)
        self.webhook: dict[str, Any] | None = None
        self._failures: dict[str, deque[_Failure]] = defaultdict(deque)
        self._message_ids = itertools.count(1000)
        self._recent_all: deque[float] = deque()
        self._recent_chat: dict[int, deque[float]] = defaultdict(deque)
        self._runner: web.AppRunner | None = None
        self._changed = asyncio.Event()
        self.base_url = ""
        self.files: dict[str, bytes] = {}

    # ------------------------------------------------------------------ lifecycle

    async def start(self, host: str = "127.0.0.1", port: int = 0) -> str:
        app = web.Application(client_max_size=60 * 1024 * 1024)
        app.router.add_post("/bot{token}/{method}", self._handle)
        app.router.add_get("/bot{token}/{method}", self._handle)
        app.router.add_get("/file/bot{token}/{path:.*}", self._file)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, host, port)
        await site.start()
        sockets = site._server.sockets  # type: ignore[union-attr]
        self.base_url = f"http://{host}:{sockets[0].getsockname()[1]}"
        return self.base_url

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    # ------------------------------------------------------------------ test controls

    def fail_next(self, method: str, status: int, description: str = "", retry_after: int | None = None,
                  times: int = 1) -> None:
        """The next `times` calls of `method` ("*" for any) get this error instead of a result."""
        default = {429: "Too Many Requests: retry after {}", 403: "Forbidden: bot was blocked by the user",
                   400: "Bad Request: chat not found", 500: "Internal Server Error", 502: "Bad Gateway"}
        text = description or default.get(status, "Error").format(retry_after or 1)
        self._failures[method].append(_Failure(status, text, retry_after, times))

    def sent(self, method: str = "sendMessage", chat_id: int | None = None) -> list[dict[str, Any]]:
        return [c.data for c in self.calls
                if c.method == method and (chat_id is None or c.data.get("chat_id") == chat_id)]

    def texts(self, chat_id: int | None = None) -> list[str]:
        return [d.get("text", "") for d in self.sent("sendMessage", chat_id)]

    def clear(self) -> None:
        self.calls.clear()
        self.rejected.clear()

    async def wait_for(self, predicate: Callable[[list[ApiCall]], bool], timeout: float = 5.0) -> None:
        deadline = time.monotonic() + timeout
        while not predicate(self.calls):
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                methods = [f"{c.method}({c.data.get('chat_id')})" for c in self.calls[-10:]]
                raise AssertionError(f"condition not met within {timeout}s; last calls: {methods}")
            self._changed.clear()
            try:
                await asyncio.wait_for(self._changed.wait(), min(remaining, 0.1))
            except TimeoutError:
                pass

    # ------------------------------------------------------------------ server

    async def _parse(self, request: web.Request) -> dict[str, Any]:
        data: dict[str, Any] = {}
        if request.content_type == "application/json":
            body = await request.json()
            data.update(body if isinstance(body, dict) else {})
        elif request.content_type.startswith("multipart/"):
            reader = await request.multipart()
            async for part in reader:
                if part.filename:  # type: ignore[union-attr]
                    data[part.name] = {"filename": part.filename, "content": await part.read()}  # type: ignore
                else:
                    data[part.name] = await part.text()  # type: ignore[union-attr]
        else:
            data.update(await request.post())
        data.update(request.query)
        for key, value in list(data.items()):
            if isinstance(value, str) and value.startswith("attach://") and value[9:] in data:
                data[key] = data.pop(value[9:])  # aiogram uploads files as separate parts
            elif isinstance(value, str):
                data[key] = _decode_value(value)
        return data

    async def _handle(self, request: web.Request) -> web.Response:
        method = request.match_info["method"]
        if request.match_info["token"] != self.token:
            return _error(401, "Unauthorized")
        data = await self._parse(request)
        call = ApiCall(method, data)
        if self.delay:
            await asyncio.sleep(self.delay)
        failure = self._take_failure(method)
        if failure is not None:
            call.status = failure.status
            self.rejected.append(call)
            self._changed.set()
            return _error(failure.status, failure.description, failure.retry_after)
        if method in SENDING_METHODS and self.enforce_limits:
            retry = self._flood_wait(data.get("chat_id"))
            if retry:
                call.status = 429
                self.rejected.append(call)
                self._changed.set()
                return _error(429, f"Too Many Requests: retry after {retry}", retry)
        self.calls.append(call)
        self._changed.set()
        return web.json_response({"ok": True, "result": self._result(method, data)})

    async def _file(self, request: web.Request) -> web.Response:
        content = self.files.get(request.match_info["path"])
        return web.Response(body=content) if content is not None else web.Response(status=404)

    def _take_failure(self, method: str) -> _Failure | None:
        for key in (method, "*"):
            queue = self._failures.get(key)
            if queue:
                failure = queue[0]
                failure.times -= 1
                if failure.times <= 0:
                    queue.popleft()
                return failure
        return None

    def _flood_wait(self, chat_id: Any) -> int:
        """Seconds to wait when this send breaks a limit, else 0 (the send is counted)."""
        now = time.monotonic()
        while self._recent_all and now - self._recent_all[0] >= 1.0:
            self._recent_all.popleft()
        if len(self._recent_all) >= self.global_per_second:
            return 1
        if isinstance(chat_id, int):
            recent = self._recent_chat[chat_id]
            window, limit = (60.0, self.group_per_minute) if chat_id < 0 else (1.0, self.per_chat_per_second)
            while recent and now - recent[0] >= window:
                recent.popleft()
            if len(recent) >= limit:
                return max(1, int(window - (now - recent[0])) + 1) if chat_id < 0 else 1
            recent.append(now)
        self._recent_all.append(now)
        return 0

    def _result(self, method: str, data: dict[str, Any]) -> Any:
        bot_user = {"id": self.bot_id, "is_bot": True, "first_name": "Front office", "username": self.bot_username}
        if method == "getMe":
            return {**bot_user, "can_join_groups": True, "can_read_all_group_messages": False,
                    "supports_inline_queries": False}
        if method == "setWebhook":
            self.webhook = data
            return True
        if method == "deleteWebhook":
            self.webhook = None
            return True
        if method == "getWebhookInfo":
            return {"url": (self.webhook or {}).get("url", ""), "has_custom_certificate": False,
                    "pending_update_count": 0}
        if method == "getUpdates":
            return []
        if method == "getFile":
            file_id = str(data.get("file_id"))
            return {"file_id": file_id, "file_unique_id": file_id[-8:], "file_size": len(self.files.get(file_id, b"")),
                    "file_path": file_id}
        if method in SENDING_METHODS or method.startswith("edit"):
            chat_id = data.get("chat_id", 0)
            message: dict[str, Any] = {
                "message_id": int(data.get("message_id") or next(self._message_ids)),
                "date": int(time.time()),
                "chat": {"id": chat_id, "type": "private" if isinstance(chat_id, int) and chat_id > 0 else "group",
                         **({"title": "Group"} if isinstance(chat_id, int) and chat_id < 0 else {"first_name": "U"})},
                "from": bot_user,
            }
            if "text" in data:
                message["text"] = str(data["text"])
            if method == "sendDocument":
                document = data.get("document")
                name = document.get("filename") if isinstance(document, dict) else "file"
                message["document"] = {"file_id": f"doc{message['message_id']}", "file_unique_id": "u",
                                       "file_name": name}
                if "caption" in data:
                    message["caption"] = str(data["caption"])
            return message
        return True  # answerCallbackQuery, sendChatAction, setMyCommands, deleteMessage, ...


def _decode_value(value: str) -> Any:
    """aiogram sends every field as a form string: numbers as digits, objects as JSON."""
    if value.lstrip("-").isdigit() and len(value) < 20:
        return int(value)
    if value[:1] in "[{":
        try:
            return json.loads(value)
        except ValueError:
            return value
    if value in ("true", "false"):
        return value == "true"
    return value


def _error(status: int, description: str, retry_after: int | None = None) -> web.Response:
    body: dict[str, Any] = {"ok": False, "error_code": status, "description": description}
    if retry_after is not None:
        body["parameters"] = {"retry_after": retry_after}
    return web.json_response(body, status=status)
