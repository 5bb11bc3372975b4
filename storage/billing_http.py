"""The operator's billing over its JSON API (BILLING_URL), with the protections a live channel needs.

- every look-up has a total budget (2 s by default) so the IVR never waits on a slow billing;
- idempotent reads are retried on timeouts, connection errors and 5xx, within that budget;
- answers are cached shortly in the key-value store (Redis when configured), so repeated questions in one
  conversation do not hit billing again;
- a circuit breaker: after 5 consecutive failures billing is not called for 30 s and every look-up fails
  at once with ServiceUnavailable ("temporarily unavailable, here is the operator"); then one trial call
  decides whether it closes again.

The contract (paths are configurable with BILLING_PATHS) is documented and implemented by the reference
server in tests/fakes/billing_server.py.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from datetime import date, datetime
from decimal import Decimal
from typing import Any
from urllib.parse import quote

import aiohttp

from handlers.billing import BillingSource
from handlers.context import AppContext
from handlers.dto import BalanceInfo, DocumentFile, DocumentInfo, PaymentInfo, ServiceUnavailable

log = logging.getLogger(__name__)

DEFAULT_PATHS = {
    "account": "/accounts/{number}",
    "balance": "/accounts/{number}",
    "by_phone": "/accounts",  # ?phone=+7...
    "payments": "/accounts/{number}/payments",  # ?limit=&from=&to=
    "documents": "/accounts/{number}/documents",  # ?kind=a,b&from=&to=&limit=
    "document": "/documents/{id}",
    "download": "/documents/{id}/file",
}
MAX_DOWNLOAD_BYTES = 200 * 1024 * 1024


class CircuitBreaker:
    """closed -> (N consecutive failures) -> open -> (reset_after) -> half-open -> one trial -> closed|open."""

    def __init__(self, failure_threshold: int = 5, reset_after: float = 30.0,
                 clock: Any = time.monotonic) -> None:
        self.failure_threshold = failure_threshold
        self.reset_after = reset_after
        self._clock = clock
        self.failures = 0
        self.opened_at: float | None = None
        self._trial_running = False

    @property
    def state(self) -> str:
        if self.opened_at is None:
            return "closed"
        return "half-open" if self._clock() - self.opened_at >= self.reset_after else "open"

    def before_call(self) -> None:
        state = self.state
        if state == "open" or (state == "half-open" and self._trial_running):
            raise ServiceUnavailable("billing circuit is open")
        if state == "half-open":
            self._trial_running = True

    def succeeded(self) -> None:
        if self.opened_at is not None:
            log.info("billing answers again; circuit closed")
        self.failures, self.opened_at, self._trial_running = 0, None, False

    def failed(self) -> None:
        self._trial_running = False
        self.failures += 1
        if self.opened_at is not None or self.failures >= self.failure_threshold:
            if self.opened_at is None:
                log.error("billing failed %d times in a row; circuit open for %.0fs", self.failures,
                          self.reset_after)
            self.opened_at = self._clock()


class _Retryable(Exception):
    pass


class HttpBilling(BillingSource):
    def __init__(
        self,
        ctx: AppContext,
        base_url: str,
        *,
        auth_header: str | None = None,
        paths: dict[str, str] | None = None,
        budget: float = 2.0,
        attempts: int = 3,
        cache_seconds: float = 30.0,
        breaker: CircuitBreaker | None = None,
    ) -> None:
        self._ctx = ctx
        self.base_url = base_url.rstrip("/")
        self.paths = {**DEFAULT_PATHS, **(paths or {})}
        self._headers: dict[str, str] = {"Accept": "application/json"}
        if auth_header:
            name, _, value = auth_header.partition(":")
            if value:
                self._headers[name.strip()] = value.strip()
            else:  # a bare token means a bearer token
                self._headers["Authorization"] = f"Bearer {auth_header.strip()}"
        self.budget = budget
        self.attempts = max(1, attempts)
        self.cache_seconds = cache_seconds
        self.breaker = breaker or CircuitBreaker()
        self._session: aiohttp.ClientSession | None = None

    def _client(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession(headers=self._headers,
                                                  connector=aiohttp.TCPConnector(limit=100, ttl_dns_cache=300))
        return self._session

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()

    def _url(self, key: str, **values: Any) -> str:
        return self.base_url + self.paths[key].format(**{k: quote(str(v), safe="") for k, v in values.items()})

    # ------------------------------------------------------------------ transport

    async def _get(self, url: str, params: dict[str, str], *, raw: bool = False, budget: float | None = None) -> Any:
        """GET with retries inside one time budget; None for 404. ServiceUnavailable for anything else."""
        self.breaker.before_call()
        deadline = time.monotonic() + (budget or self.budget)
        last: str = ""
        for attempt in range(self.attempts):
            remaining = deadline - time.monotonic()
            if remaining <= 0.05:
                break
            try:
                timeout = aiohttp.ClientTimeout(total=remaining)
                async with self._client().get(url, params=params, timeout=timeout) as response:
                    if response.status == 404:
                        self.breaker.succeeded()
                        return None
                    if response.status >= 500 or response.status == 429:
                        raise _Retryable(f"HTTP {response.status}")
                    if response.status >= 400:
                        # Our request or credentials are wrong: retrying will not help; an operator must act.
                        log.error("billing refused %s: HTTP %s", url, response.status)
                        self.breaker.failed()
                        raise ServiceUnavailable(f"billing answered HTTP {response.status}")
                    if raw:
                        if (response.content_length or 0) > MAX_DOWNLOAD_BYTES:
                            raise ServiceUnavailable("file too large")
                        body = await response.content.read(MAX_DOWNLOAD_BYTES + 1)
                        result: Any = (body, response.headers.get("Content-Type", "application/octet-stream"),
                                       _filename(response.headers.get("Content-Disposition")))
                    else:
                        result = await response.json(content_type=None)
                self.breaker.succeeded()
                return result
            except (_Retryable, aiohttp.ClientError, TimeoutError, json.JSONDecodeError, ValueError) as exc:
                last = f"{type(exc).__name__}: {exc}"
                if attempt + 1 < self.attempts:
                    await asyncio.sleep(min(0.05 * 2**attempt, max(0.0, deadline - time.monotonic())))
        self.breaker.failed()
        raise ServiceUnavailable(f"billing unavailable ({last or 'out of time'})")

    async def _cached_json(self, cache_key: str, url: str, params: dict[str, str]) -> Any:
        key = f"billing:{cache_key}"
        if self.cache_seconds > 0:
            hit = await self._ctx.kv.kv.get(key)
            if hit is not None:
                return json.loads(hit)
        data = await self._get(url, params)
        if self.cache_seconds > 0:
            await self._ctx.kv.kv.set(key, json.dumps(data), ttl=self.cache_seconds)
        return data

    # ------------------------------------------------------------------ BillingSource

    async def account_balance(self, number: str) -> BalanceInfo | None:
        data = await self._cached_json(f"balance:{number}", self._url("balance", number=number), {})
        if data is None:
            return None
        try:
            return BalanceInfo(
                account_number=str(data.get("number", number)), balance=Decimal(str(data["balance"])),
                currency=str(data.get("currency") or "RUB"), status=str(data.get("status") or "active"),
                tariff=data.get("tariff"),
                paid_until=date.fromisoformat(data["paid_until"]) if data.get("paid_until") else None,
                last_payments=tuple(_payment(p) for p in data.get("last_payments") or ()),
            )
        except (KeyError, ValueError, TypeError, ArithmeticError) as exc:
            raise ServiceUnavailable(f"billing sent an unreadable account: {exc}") from None

    async def recent_payments(self, number: str, limit: int = 5) -> list[PaymentInfo]:
        data = await self._cached_json(f"payments:{number}:{limit}", self._url("payments", number=number),
                                       {"limit": str(limit)})
        return _payments(data)

    async def payments_between(self, number: str, start: datetime, end: datetime) -> list[PaymentInfo]:
        params = {"from": start.isoformat(), "to": end.isoformat(), "limit": "1000"}
        data = await self._get(self._url("payments", number=number), params)
        return sorted(_payments(data), key=lambda p: p.paid_at)

    async def documents(
        self,
        number: str,
        *,
        kinds: tuple[str, ...] = (),
        period_start: date | None = None,
        period_end: date | None = None,
        limit: int = 50,
    ) -> list[DocumentInfo]:
        params = {"limit": str(limit)}
        if kinds:
            params["kind"] = ",".join(kinds)
        if period_start:
            params["from"] = period_start.isoformat()
        if period_end:
            params["to"] = period_end.isoformat()
        key = "docs:" + number + ":" + "&".join(f"{k}={v}" for k, v in sorted(params.items()))
        data = await self._cached_json(key, self._url("documents", number=number), params)
        if data is None:
            return []
        try:
            return [_document(d, number) for d in data.get("documents", [])]
        except (KeyError, ValueError, TypeError, ArithmeticError) as exc:
            raise ServiceUnavailable(f"billing sent unreadable documents: {exc}") from None

    async def document(self, document_id: int) -> DocumentInfo | None:
        data = await self._cached_json(f"doc:{document_id}", self._url("document", id=document_id), {})
        if data is None:
            return None
        try:
            return _document(data, str(data.get("account", "")))
        except (KeyError, ValueError, TypeError, ArithmeticError) as exc:
            raise ServiceUnavailable(f"billing sent an unreadable document: {exc}") from None

    async def document_content(self, document_id: int) -> DocumentFile | None:
        got = await self._get(self._url("download", id=document_id), {}, raw=True, budget=max(self.budget, 15.0))
        if got is None:
            return None
        body, content_type, filename = got
        return DocumentFile(filename=filename or f"document-{document_id}.pdf", content_type=content_type.split(";")[0],
                            size=len(body), content=body)

    async def accounts_by_phone(self, phone_e164: str) -> list[str]:
        data = await self._cached_json(f"phone:{phone_e164}", self._url("by_phone"), {"phone": phone_e164})
        return [str(n) for n in (data or {}).get("accounts", [])]


def _filename(disposition: str | None) -> str | None:
    if not disposition or "filename=" not in disposition:
        return None
    name = disposition.split("filename=", 1)[1].split(";")[0].strip().strip('"')
    return name.replace("/", "_").replace("\\", "_")[:150] or None


def _payment(p: dict[str, Any]) -> PaymentInfo:
    paid_at = datetime.fromisoformat(str(p["paid_at"]).replace("Z", "+00:00"))
    if paid_at.tzinfo is None:
        raise ValueError("paid_at without a time zone")
    return PaymentInfo(paid_at=paid_at, amount=Decimal(str(p["amount"])), currency=str(p.get("currency") or "RUB"),
                       method=p.get("method"))


def _payments(data: Any) -> list[PaymentInfo]:
    if data is None:
        return []
    try:
        return [_payment(p) for p in data.get("payments", [])]
    except (KeyError, ValueError, TypeError, ArithmeticError) as exc:
        raise ServiceUnavailable(f"billing sent unreadable payments: {exc}") from None


def _optional_date(value: Any) -> date | None:
    return date.fromisoformat(value) if value else None


def _document(d: dict[str, Any], account: str) -> DocumentInfo:
    return DocumentInfo(
        id=int(d["id"]), account_number=str(d.get("account") or account), kind=str(d["kind"]),
        number=str(d["number"]), issued_on=date.fromisoformat(d["issued_on"]),
        period_start=_optional_date(d.get("period_start")), period_end=_optional_date(d.get("period_end")),
        amount=Decimal(str(d["amount"])) if d.get("amount") is not None else None,
    )
