"""Reference billing server: the HTTP contract `storage.billing_http.HttpBilling` speaks, runnable in tests.

Contract (JSON, UTF-8; every request carries the configured auth header, e.g. `Authorization: Bearer T`;
amounts are decimal strings, dates ISO 8601, times ISO 8601 with a zone):

    GET /accounts/{number}
        200 {"number", "balance", "currency", "status": active|paused|terminated, "tariff", "paid_until"}
        404 unknown account
    GET /accounts?phone=+79161234567          200 {"accounts": ["200001", ...]}
    GET /accounts/{number}/payments?limit=N[&from=ISO&to=ISO]
        200 {"payments": [{"paid_at", "amount", "currency", "method"}, ...]}  newest first, from <= paid_at < to
    GET /accounts/{number}/documents?[kind=a,b][&from=YYYY-MM-DD][&to=YYYY-MM-DD][&limit=N]
        200 {"documents": [{"id": int, "account", "kind", "number", "issued_on", "period_start", "period_end",
                            "amount"}, ...]}  newest first; a period matches documents overlapping it
    GET /documents/{id}                       200 the document object | 404
    GET /documents/{id}/file                  200 the file (Content-Type, Content-Disposition) | 404 no file
    401 when the auth header is wrong.

Test controls: `fail_next(status, times)`, `delay` (seconds before answering), `requests` (paths seen).
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Any

from aiohttp import web

from tests.helpers import free_port


@dataclass
class FakeAccount:
    number: str
    balance: str
    currency: str = "RUB"
    status: str = "active"
    tariff: str | None = None
    paid_until: str | None = None
    phones: tuple[str, ...] = ()
    payments: list[dict[str, Any]] = field(default_factory=list)


class BillingServer:
    def __init__(self, token: str = "secret-token") -> None:
        self.token = token
        self.accounts: dict[str, FakeAccount] = {}
        self.documents: dict[int, dict[str, Any]] = {}
        self.files: dict[int, tuple[bytes, str, str]] = {}
        self.delay = 0.0
        self.requests: list[str] = []
        self._failures: list[int] = []
        self._runner: web.AppRunner | None = None
        self.port = 0

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def auth_header(self) -> str:
        return f"Authorization: Bearer {self.token}"

    def fail_next(self, status: int = 500, times: int = 1) -> None:
        self._failures += [status] * times

    async def start(self) -> None:
        app = web.Application(middlewares=[self._control])
        app.router.add_get("/accounts", self._by_phone)
        app.router.add_get("/accounts/{number}", self._account)
        app.router.add_get("/accounts/{number}/payments", self._payments)
        app.router.add_get("/accounts/{number}/documents", self._documents)
        app.router.add_get("/documents/{id}", self._document)
        app.router.add_get("/documents/{id}/file", self._file)
        self._runner = web.AppRunner(app)
        await self._runner.setup()
        self.port = free_port()
        await web.TCPSite(self._runner, "127.0.0.1", self.port).start()

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()

    @web.middleware
    async def _control(self, request: web.Request, handler: Any) -> web.StreamResponse:
        self.requests.append(request.path_qs)
        if self.delay:
            await asyncio.sleep(self.delay)
        if self._failures:
            return web.json_response({"error": "injected"}, status=self._failures.pop(0))
        if request.headers.get("Authorization") != f"Bearer {self.token}":
            return web.json_response({"error": "unauthorized"}, status=401)
        return await handler(request)

    async def _by_phone(self, request: web.Request) -> web.Response:
        phone = request.query.get("phone", "")
        return web.json_response({"accounts": [a.number for a in self.accounts.values() if phone in a.phones]})

    def _get_account(self, request: web.Request) -> FakeAccount:
        account = self.accounts.get(request.match_info["number"])
        if account is None:
            raise web.HTTPNotFound()
        return account

    async def _account(self, request: web.Request) -> web.Response:
        a = self._get_account(request)
        return web.json_response({"number": a.number, "balance": a.balance, "currency": a.currency,
                                  "status": a.status, "tariff": a.tariff, "paid_until": a.paid_until})

    async def _payments(self, request: web.Request) -> web.Response:
        a = self._get_account(request)
        rows = sorted(a.payments, key=lambda p: p["paid_at"], reverse=True)
        if "from" in request.query:
            start = datetime.fromisoformat(request.query["from"])
            rows = [p for p in rows if datetime.fromisoformat(p["paid_at"]) >= start]
        if "to" in request.query:
            end = datetime.fromisoformat(request.query["to"])
            rows = [p for p in rows if datetime.fromisoformat(p["paid_at"]) < end]
        return web.json_response({"payments": rows[: int(request.query.get("limit", "50"))]})

    async def _documents(self, request: web.Request) -> web.Response:
        a = self._get_account(request)
        kinds = set(filter(None, request.query.get("kind", "").split(",")))
        start = date.fromisoformat(request.query["from"]) if "from" in request.query else None
        end = date.fromisoformat(request.query["to"]) if "to" in request.query else None
        rows = []
        for doc in self.documents.values():
            if doc["account"] != a.number or (kinds and doc["kind"] not in kinds):
                continue
            d_start = date.fromisoformat(doc.get("period_start") or doc["issued_on"])
            d_end = date.fromisoformat(doc.get("period_end") or doc["issued_on"])
            if (start and d_end < start) or (end and d_start > end):
                continue
            rows.append(doc)
        rows.sort(key=lambda d: (d["issued_on"], d["id"]), reverse=True)
        return web.json_response({"documents": rows[: int(request.query.get("limit", "50"))]})

    async def _document(self, request: web.Request) -> web.Response:
        doc = self.documents.get(int(request.match_info["id"]))
        if doc is None:
            raise web.HTTPNotFound()
        return web.json_response(doc)

    async def _file(self, request: web.Request) -> web.Response:
        stored = self.files.get(int(request.match_info["id"]))
        if stored is None:
            raise web.HTTPNotFound()
        body, content_type, filename = stored
        return web.Response(body=body, content_type=content_type,
                            headers={"Content-Disposition": f'attachment; filename="{filename}"'})
