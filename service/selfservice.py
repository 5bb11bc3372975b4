"""Wiring of the self-service feature: which billing source answers, download-link keys, its worker."""

from __future__ import annotations

from typing import Any

from service.billing_webhook import download_secret


def connect(services: Any) -> None:
    """Choose the billing source: the operator's HTTP API when BILLING_URL is set, our tables otherwise."""
    settings, ctx = services.settings, services.ctx
    if settings.billing_url:
        from storage.billing_http import HttpBilling

        header = settings.billing_auth_header.get_secret_value() if settings.billing_auth_header else None
        ctx.billing = HttpBilling(ctx, settings.billing_url, auth_header=header, paths=settings.billing_paths,
                                  budget=settings.billing_timeout, cache_seconds=settings.billing_cache_seconds)
    else:
        from storage.billing_embedded import EmbeddedBilling

        ctx.billing = EmbeddedBilling(ctx)
    if settings.smtp_url is not None:
        from storage.email_smtp import SmtpEmailSender

        company_email = services.config.company.email or "noreply@localhost"
        ctx.extras["email"] = SmtpEmailSender(settings.smtp_url.get_secret_value(), default_from=company_email)
    ctx.extras["download_secret"] = download_secret(settings)
    ctx.extras["public_base_url"] = settings.public_base_url or f"http://localhost:{settings.http_port}"


def workers(services: Any) -> list[Any]:
    from service.subscriptions_worker import SubscriptionsWorker

    return [SubscriptionsWorker(services.ctx)]
