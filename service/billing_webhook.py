"""HTTP routes of the self-service feature.

`POST /billing/events` — the operator's billing pushes payments and balance changes. Contract:

    X-Billing-Signature: sha256=<hex HMAC-SHA256 of the raw body with BILLING_WEBHOOK_SECRET>
    {"id": "evt-1", "type": "payment", "account": "200001", "amount": "500.00",
     "paid_at": "2026-11-20T10:00:00Z", "payment_id": "P-778", "method": "card", "balance": "1150.00"}
    {"id": "evt-2", "type": "balance", "account": "200001", "balance": "-20.00",
     "paid_until": "2026-12-01", "status": "active"}
    or {"events": [ ...up to 500 of the above... ]}

Answers: 200 {"results": [...]} (also for an event already processed: deliveries may repeat); 400 malformed;
401 missing or wrong signature (nothing is read further); 413 too large; 422 unknown account (do not retry);
503 webhook not configured or database down (retry later).

`GET /documents/download/{token}` — files over the messenger's 50 MB limit, behind a signed expiring link.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import secrets
from datetime import UTC, date, datetime
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any

from aiohttp import web
from sqlalchemy.exc import SQLAlchemyError

from handlers.context import AppContext
from handlers.dto import NotFound, ServiceUnavailable, UseCaseError

log = logging.getLogger(__name__)

CTX_KEY = web.AppKey("selfservice_ctx", AppContext)
SECRET_KEY = web.AppKey("billing_webhook_secret", str)
MAX_EVENTS = 500
MAX_BODY = 512 * 1024


class BadEvent(ValueError):
    pass


def signature(secret: str, body: bytes) -> str:
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def download_secret(settings: Any) -> str:
    """Key for signed download links: DOWNLOAD_LINK_SECRET, else derived from the billing webhook secret,
    else a random one kept in DATA_DIR so every process of this installation agrees on it."""
    explicit = getattr(settings, "download_link_secret", None)
    if explicit is not None:
        return explicit.get_secret_value()
    if settings.billing_webhook_secret is not None:
        return hashlib.sha256(b"download:" + settings.billing_webhook_secret.get_secret_value().encode()).hexdigest()
    path = Path(settings.data_dir) / ".download-secret"
    try:
        return path.read_text().strip()
    except FileNotFoundError:
        path.parent.mkdir(parents=True, exist_ok=True)
        value = secrets.token_hex(32)
        path.write_text(value)
        path.chmod(0o600)
        return value


def setup(app: web.Application, ctx: AppContext, settings: Any = None) -> list[str]:
    app[CTX_KEY] = ctx
    secret = settings.billing_webhook_secret.get_secret_value() if settings and settings.billing_webhook_secret else ""
    app[SECRET_KEY] = secret
    app.router.add_post("/billing/events", billing_events)
    app.router.add_get("/documents/download/{token}", download)
    state = "enabled" if secret else "disabled (set BILLING_WEBHOOK_SECRET)"
    return [f"billing webhook: POST /billing/events, {state}", "document downloads: GET /documents/download/…"]


async def billing_events(request: web.Request) -> web.Response:
    ctx, secret = request.app[CTX_KEY], request.app[SECRET_KEY]
    if not secret:
        return web.json_response({"error": "billing webhook is not configured"}, status=503)
    if request.content_length is not None and request.content_length > MAX_BODY:
        return web.json_response({"error": "body too large"}, status=413)
    body = await request.content.read(MAX_BODY + 1)
    if len(body) > MAX_BODY:
        return web.json_response({"error": "body too large"}, status=413)
    given = request.headers.get("X-Billing-Signature", "")
    if not given.startswith("sha256="):
        given = "sha256=" + given
    if not hmac.compare_digest(given.encode(), signature(secret, body).encode()):
        return web.json_response({"error": "bad signature"}, status=401)
    try:
        data = json.loads(body)
        events = data["events"] if isinstance(data, dict) and "events" in data else [data]
        if not isinstance(events, list) or not events or len(events) > MAX_EVENTS:
            raise BadEvent(f"expected 1..{MAX_EVENTS} events")
        parsed = [_parse(event) for event in events]
    except (ValueError, KeyError, TypeError) as exc:
        return web.json_response({"error": f"malformed event: {exc}"}, status=400)
    results = []
    try:
        for event in parsed:
            results.append(await _apply(ctx, event))
    except NotFound as exc:
        return web.json_response({"error": str(exc), "results": results}, status=422)
    except (SQLAlchemyError, OSError, ServiceUnavailable) as exc:
        log.warning("billing event not applied, billing will retry: %s", exc)
        return web.json_response({"error": "temporarily unavailable", "results": results}, status=503)
    return web.json_response({"results": results})


def _decimal(value: Any, field: str) -> Decimal:
    try:
        number = Decimal(str(value))
    except (InvalidOperation, ValueError):
        raise BadEvent(f"{field} must be a number") from None
    if not number.is_finite() or abs(number) > Decimal("1e12"):
        raise BadEvent(f"{field} out of range")
    return number.quantize(Decimal("0.01"))


def _parse(event: Any) -> dict[str, Any]:
    if not isinstance(event, dict):
        raise BadEvent("an event must be an object")
    event_id = str(event.get("id") or "").strip()
    kind = event.get("type")
    account = str(event.get("account") or "").strip()
    if not event_id or len(event_id) > 150:
        raise BadEvent("id is required (at most 150 characters)")
    if not account or len(account) > 40:
        raise BadEvent("account is required")
    out: dict[str, Any] = {"id": event_id, "type": kind, "account": account}
    if "balance" in event and event["balance"] is not None:
        out["balance"] = _decimal(event["balance"], "balance")
    if kind == "payment":
        out["amount"] = _decimal(event.get("amount"), "amount")
        paid_at = datetime.fromisoformat(str(event.get("paid_at") or "").replace("Z", "+00:00"))
        out["paid_at"] = paid_at if paid_at.tzinfo else paid_at.replace(tzinfo=UTC)
        out["payment_id"] = str(event.get("payment_id") or event_id)[:100]
        out["method"] = str(event["method"])[:40] if event.get("method") else None
    elif kind == "balance":
        if "balance" not in out:
            raise BadEvent("balance is required")
        out["paid_until"] = date.fromisoformat(event["paid_until"]) if event.get("paid_until") else None
        out["status"] = event.get("status")
    else:
        raise BadEvent("type must be payment or balance")
    return out


async def _apply(ctx: AppContext, event: dict[str, Any]) -> dict[str, Any]:
    from handlers.subscriptions import apply_balance_change, record_payment
    from storage.models import ProcessedUpdate

    async with ctx.uow() as uow:
        if await uow.processed_updates.get("billing", event["id"]) is not None:
            return {"id": event["id"], "status": "duplicate"}
    if event["type"] == "payment":
        new = await record_payment(ctx, event["account"], event["amount"], event["paid_at"], event["payment_id"],
                                   event["method"], balance_after=event.get("balance"))
        status = "recorded" if new else "duplicate"
    else:
        await apply_balance_change(ctx, event["account"], event["balance"], event_id=event["id"],
                                   paid_until=event["paid_until"], status=event["status"])
        status = "applied"
    async with ctx.uow() as uow:
        if await uow.processed_updates.get("billing", event["id"]) is None:
            uow.processed_updates.add(ProcessedUpdate(source="billing", key=event["id"], processed_at=ctx.clock()))
            await uow.commit()
    return {"id": event["id"], "status": status}


async def download(request: web.Request) -> web.StreamResponse:
    from handlers.billing import billing_of
    from handlers.documents.links import check_token

    ctx = request.app[CTX_KEY]
    document_id = check_token(ctx, request.match_info["token"])
    if document_id is None:
        return web.json_response({"error": "link expired or invalid"}, status=404)
    try:
        stored = await billing_of(ctx).document_content(document_id)
    except UseCaseError:
        return web.json_response({"error": "temporarily unavailable"}, status=503)
    if stored is None or stored.path is None:
        return web.json_response({"error": "not found"}, status=404)
    response = web.FileResponse(stored.path)
    response.headers["Content-Disposition"] = f'attachment; filename="document-{document_id}{Path(stored.path).suffix}"'
    return response
