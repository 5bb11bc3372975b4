"""The one aiohttp application: operations endpoints, shared middlewares, and the adapters' routes."""

from __future__ import annotations

import logging
import time
import uuid
from typing import Any

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, Counter, Histogram, generate_latest

from service.container import Services
from service.openapi import openapi_json

log = logging.getLogger(__name__)

SERVICES = web.AppKey("services", Services)

HTTP_REQUESTS = Counter("frontoffice_http_requests_total", "HTTP requests", ["route", "method", "status"])
HTTP_LATENCY = Histogram(
    "frontoffice_http_request_seconds", "HTTP request latency", ["route"],
    buckets=(0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 15),
)
# Telegram updates and Twilio forms are small; anything larger is refused before it is read.
MAX_BODY_BYTES = 1024 * 1024


def _route_name(request: web.Request) -> str:
    resource = request.match_info.route.resource
    return resource.canonical if resource is not None else "unmatched"


# Any token is a valid HTTP method to aiohttp; a label per made-up one would let a client grow the metrics
# without bound.
_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
_SERIES: dict[tuple[str, str, int], tuple[Any, Any]] = {}


def _series(route: str, method: str, status: int) -> tuple[Any, Any]:
    """The request counter and latency histogram of one route, method and status; `labels()` looks them up
    with locking and string handling on every call, so the pair is kept (a few dozen at most)."""
    method = method if method in _METHODS else "other"
    key = (route, method, status)
    pair = _SERIES.get(key)
    if pair is None:
        pair = HTTP_REQUESTS.labels(route, method, str(status)), HTTP_LATENCY.labels(route)
        if len(_SERIES) < 10_000:
            _SERIES[key] = pair
    return pair


@web.middleware
async def observe(request: web.Request, handler: web.Handler) -> web.StreamResponse:
    """Metrics per route, and a last line of defence: an unexpected error is logged, never shown."""
    started = time.perf_counter()
    status = 500
    try:
        response = await handler(request)
        status = response.status
        return response
    except web.HTTPException as exc:
        status = exc.status
        raise
    except Exception:
        incident = uuid.uuid4().hex[:12]
        log.exception("unhandled error on %s %s (incident %s)", request.method, request.path, incident)
        return web.json_response({"error": "internal error", "incident": incident}, status=500)
    finally:
        requests, latency = _series(_route_name(request), request.method, status)
        requests.inc()
        latency.observe(time.perf_counter() - started)


async def health(_request: web.Request) -> web.Response:
    return web.json_response({"status": "ok"})


async def ready(request: web.Request) -> web.Response:
    services = request.app[SERVICES]
    checks: dict[str, str] = {}
    try:
        await services.check_database(timeout=2.0)
        checks["database"] = "ok"
    except Exception as exc:
        checks["database"] = f"down: {type(exc).__name__}"
    if services.settings.redis_url:
        try:
            await services.check_redis(timeout=2.0)
            checks["redis"] = "ok"
        except Exception as exc:
            checks["redis"] = f"down: {type(exc).__name__}"
    down = [name for name, state in checks.items() if state != "ok"]
    # Informational: without the model requests are served as "unsure", so it never makes us unready.
    classifier = services.ctx.classifier
    if classifier is not None and hasattr(classifier, "ready"):
        checks["topic_model"] = "ok" if classifier.ready else "loading"
    seeding = services.extras.get("first_run_seed")
    if seeding is not None and not seeding.done():
        # The first start's demo data is still going in (a couple of seconds): not ready for traffic yet.
        checks["demo_data"] = "seeding"
        down.append("demo_data")
    body = {"status": "ok" if not down else "unavailable", "checks": checks, "down": down}
    return web.json_response(body, status=503 if down else 200)


async def metrics(_request: web.Request) -> web.Response:
    response = web.Response(body=generate_latest(REGISTRY))
    response.content_type = CONTENT_TYPE_LATEST.split(";")[0]
    response.charset = "utf-8"
    return response


def create_app(services: Services) -> web.Application:
    app = web.Application(middlewares=[observe], client_max_size=MAX_BODY_BYTES)
    app[SERVICES] = services
    app.router.add_get("/health", health)
    app.router.add_get("/ready", ready)
    app.router.add_get("/metrics", metrics)
    app.router.add_get("/openapi.json", openapi_json)
    return app
