"""Central error handling: expected use-case errors become polite answers; anything else is logged with the
update id and, once the update will not be retried, the user gets a short apology in their language.

In webhook mode a failed update is re-raised (the webhook answers 5xx, Telegram delivers it again) until its
last attempt; only then does the user see the apology, so a transient fault costs them nothing.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

from aiogram import Router
from aiogram.types import ErrorEvent, Update

from handlers.context import AppContext
from handlers.dto import InvalidRequest, NotFound, PermissionDenied, ServiceUnavailable, UseCaseError

log = logging.getLogger(__name__)


@dataclass
class Delivery:
    """How this update reached us: webhook attempt number, and whether another attempt will follow."""

    update_id: int
    attempt: int = 1
    final: bool = True
    # Set when the update failed and the user was given the apology: recorded as "failed", not "done".
    error: str | None = None


def use_case_error_text(ctx: AppContext, exc: UseCaseError, lang: str) -> str:
    if isinstance(exc, NotFound):
        return ctx.t("bot_not_found", lang)
    if isinstance(exc, PermissionDenied):
        return ctx.t("bot_not_allowed", lang)
    if isinstance(exc, ServiceUnavailable):
        return ctx.t("service_unavailable", lang, phone=ctx.config.company.phone)
    if isinstance(exc, InvalidRequest):
        return ctx.t("bot_invalid_request", lang)
    return ctx.t("error_apology", lang)


async def answer_update(update: Update, text: str) -> None:
    """Tell the user something whatever kind of update they sent; never raises."""
    try:
        if update.callback_query is not None:
            await update.callback_query.answer(text[:200], show_alert=True)
        elif update.message is not None:
            await update.message.answer(text)
        elif update.edited_message is not None:
            await update.edited_message.answer(text)
    except Exception as exc:  # Telegram itself may be the thing that is down
        log.warning("could not tell the user about the error of update %s: %s", update.update_id, exc)


async def on_error(event: ErrorEvent, ctx: AppContext, lang: str | None = None,
                   delivery: Delivery | None = None, **_: Any) -> bool:
    exc = event.exception
    update = event.update
    language = lang or ctx.t.default_language
    if isinstance(exc, ServiceUnavailable) and delivery is not None:
        # A back end (the database) is down: the request was not recorded, so let Telegram deliver it again
        # rather than lose it; on the last attempt the user is told and the update is recorded as failed.
        if not delivery.final:
            log.warning("update %s: %s (attempt %s, will be redelivered)", update.update_id, exc, delivery.attempt)
            raise exc
        delivery.error = f"ServiceUnavailable: {exc}"[:1000]
    if isinstance(exc, UseCaseError):
        # Expected: the use case refused (forged button, someone else's ticket, billing down).
        log.info("update %s: %s: %s", update.update_id, type(exc).__name__, exc)
        await answer_update(update, use_case_error_text(ctx, exc, language))
        return True
    if delivery is not None and not delivery.final:
        log.warning("update %s failed on attempt %s (will be redelivered): %r", update.update_id,
                    delivery.attempt, exc)
        raise exc
    log.error("update %s failed: %r", update.update_id, exc, exc_info=exc)
    if delivery is not None:
        delivery.error = f"{type(exc).__name__}: {exc}"[:1000]
    await answer_update(update, ctx.t("error_apology", language))
    return True


def build_router() -> Router:
    router = Router(name="errors")
    router.errors.register(on_error)
    return router
