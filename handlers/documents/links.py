"""Signed, expiring download links for files too large to send through the messenger.

The link carries the document id and an expiry, signed with HMAC-SHA256; the HTTP route that serves it
(service/billing_webhook.py) checks the signature and the expiry before touching the database.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import time

from handlers.context import AppContext

LINK_TTL_SECONDS = 7 * 24 * 3600
DOWNLOAD_PATH = "/documents/download/"


def _secret(ctx: AppContext) -> bytes:
    secret = ctx.extras.get("download_secret")
    if not secret:
        raise RuntimeError("download links need ctx.extras['download_secret'] (set by service wiring)")
    return secret.encode() if isinstance(secret, str) else secret


def make_token(ctx: AppContext, document_id: int, now: float | None = None) -> str:
    expires = int((now or time.time()) + LINK_TTL_SECONDS)
    body = f"{document_id}.{expires}"
    sig = hmac.new(_secret(ctx), body.encode(), hashlib.sha256).digest()[:18]
    return f"{body}.{base64.urlsafe_b64encode(sig).decode().rstrip('=')}"


def check_token(ctx: AppContext, token: str, now: float | None = None) -> int | None:
    """The document id of a valid, unexpired token; None otherwise."""
    try:
        doc, expires, sig = token.split(".")
        document_id, expires_at = int(doc), int(expires)
    except ValueError:
        return None
    expected = hmac.new(_secret(ctx), f"{document_id}.{expires_at}".encode(), hashlib.sha256).digest()[:18]
    try:
        given = base64.urlsafe_b64decode(sig + "=" * (-len(sig) % 4))
    except ValueError:
        return None
    if not hmac.compare_digest(expected, given) or expires_at < (now or time.time()):
        return None
    return document_id


def download_url(ctx: AppContext, document_id: int) -> str:
    base = (ctx.extras.get("public_base_url") or "").rstrip("/")
    return f"{base}{DOWNLOAD_PATH}{make_token(ctx, document_id)}"
