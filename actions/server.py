"""The Rasa action server, mounted on our own aiohttp application (no second server, no Sanic).

Rasa calls `POST /webhook` with `{"next_action", "sender_id", "tracker", "domain", "domain_digest",
"version"}` (deflate-compressed when Rasa's COMPRESS_ACTION_SERVER_REQUEST is on) and reads back
`{"events": [...], "responses": [...]}`. rasa-sdk's own `ActionExecutor` runs the actions, so tracker
parsing, domain caching by digest and event validation behave exactly as under `rasa run actions`; this
module only replaces the Sanic transport and keeps its status codes and JSON error bodies:

    400  {"error", "action_name"}  the action rejected execution (ActionExecutionRejection) - or the body
                                   is not an action call at all ({"error": "Invalid body request"})
    404  {"error", "action_name"}  no such action (ActionNotFoundException)
    449  {"error", "action_name"}  the domain is needed but was not sent (ActionMissingDomainException);
                                   Rasa retries the call with the domain
    500  {"error", "action_name"}  anything else (with an incident id to find the log line; the exception
                                   text and the request body are not echoed: they may hold a PIN)

With RASA_ACTIONS_TOKEN set, every request must carry `Authorization: Bearer <token>` or `?token=<token>`
(what Rasa's endpoints.yml `headers:` / `token:` send); otherwise 401.
"""

from __future__ import annotations

import hmac
import json
import logging
import uuid
import warnings
from collections.abc import Sequence
from typing import Any

from aiohttp import web
from aiohttp.web_protocol import RequestPayloadError
from rasa_sdk import utils as sdk_utils
from rasa_sdk.executor import ActionExecutor
from rasa_sdk.interfaces import (
    Action,
    ActionExecutionRejection,
    ActionMissingDomainException,
    ActionNotFoundException,
)

from config import Settings
from handlers.context import AppContext

log = logging.getLogger(__name__)

ACTION_EXECUTOR = web.AppKey("rasa_action_executor", ActionExecutor)

# A tracker carries the whole conversation (Rasa sends every event): allow more than the app-wide 1 MB,
# but still bound what one request may make us hold in memory (after decompression).
MAX_ACTION_CALL_BYTES = 16 * 1024 * 1024
_READ_CHUNK = 64 * 1024


def setup(
    app: web.Application,
    ctx: AppContext,
    settings: Settings,
    actions: Sequence[Action] | None = None,
) -> list[str]:
    """Mount `POST /webhook` and `GET /actions`; returns the start-up banner lines.

    `actions` replaces the shipped catalogue (tests register their own probes this way).
    """
    if actions is None:
        from actions.catalog import build_actions

        actions = build_actions(ctx)
    executor = ActionExecutor()
    registry_log = logging.getLogger("rasa_sdk.executor")
    level = registry_log.level
    # rasa-sdk logs one INFO line per registered action; the banner line below says it once.
    registry_log.setLevel(max(level, logging.WARNING))
    try:
        for action in actions:
            # Instances, not classes: each action holds the AppContext it was built with.
            executor.register_action(action)
    finally:
        registry_log.setLevel(level)
    app[ACTION_EXECUTOR] = executor
    token = settings.rasa_actions_token.get_secret_value() if settings.rasa_actions_token else None
    webhook = _Webhook(executor, token)
    app.router.add_post("/webhook", webhook.run_action)
    app.router.add_get("/actions", webhook.list_actions)
    auth = "bearer token required" if token else "no token (set RASA_ACTIONS_TOKEN to require one)"
    return [f"  rasa     POST /webhook, GET /actions: {len(executor.actions)} actions, {auth}"]


def _error(status: int, message: str, action_name: str | None = None, **extra: Any) -> web.Response:
    body: dict[str, Any] = {"error": message}
    if action_name is not None:
        body["action_name"] = action_name
    body.update(extra)
    return web.json_response(body, status=status)


class _Webhook:
    def __init__(self, executor: ActionExecutor, token: str | None) -> None:
        self._executor = executor
        self._token = token
        self._warned_versions: set[str | None] = set()

    def _authorised(self, request: web.Request) -> bool:
        if self._token is None:
            return True
        header = request.headers.get("Authorization", "")
        scheme, _, credentials = header.partition(" ")
        offered = credentials.strip() if scheme.lower() == "bearer" else request.query.get("token", "")
        return hmac.compare_digest(offered.encode(), self._token.encode())

    async def list_actions(self, request: web.Request) -> web.Response:
        if not self._authorised(request):
            return _error(401, "Missing or wrong bearer token")
        return web.json_response([item.model_dump() for item in self._executor.list_actions()])

    async def run_action(self, request: web.Request) -> web.Response:
        if not self._authorised(request):
            return _error(401, "Missing or wrong bearer token")
        try:
            body = await _read_body(request)
        except _BodyTooLarge:
            return _error(413, f"Request body larger than {MAX_ACTION_CALL_BYTES} bytes")
        except RequestPayloadError:
            # aiohttp inflates deflate/gzip bodies itself; a corrupt stream ends up here.
            return _error(
                400,
                "Invalid body request: cannot decode Content-Encoding "
                f"{request.headers.get('Content-Encoding', '')!r}",
            )
        action_call = _parse_action_call(body)
        if isinstance(action_call, str):
            return _error(400, f"Invalid body request: {action_call}")
        self._check_version(action_call.get("version"))
        action_name = action_call["next_action"]
        try:
            result = await self._executor.run(action_call)
        except ActionExecutionRejection as exc:
            log.debug("%s", exc)
            return _error(400, exc.message, exc.action_name)
        except ActionNotFoundException as exc:
            log.error("%s", exc)
            return _error(404, exc.message, exc.action_name)
        except ActionMissingDomainException as exc:
            log.debug("%s", exc)
            return _error(449, exc.message, exc.action_name)
        except Exception:
            incident = uuid.uuid4().hex[:12]
            log.exception("Rasa action %r failed (incident %s)", action_name, incident)
            return _error(
                500,
                f"Custom action '{action_name}' failed (incident {incident})",
                action_name,
                incident=incident,
            )
        return web.json_response(result.model_dump() if result else None)

    def _check_version(self, version: Any) -> None:
        """rasa-sdk's compatibility check, logged once per Rasa version instead of warned on every call."""
        key = version if isinstance(version, str) else None
        if key in self._warned_versions:
            return
        self._warned_versions.add(key)
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            sdk_utils.check_version_compatibility(key)
        for warning in caught:
            log.warning("%s", warning.message)


class _BodyTooLarge(Exception):
    pass


async def _read_body(request: web.Request) -> bytes:
    """The (already inflated) body, read in chunks up to MAX_ACTION_CALL_BYTES."""
    if request.content_length is not None and request.content_length > MAX_ACTION_CALL_BYTES:
        raise _BodyTooLarge
    chunks: list[bytes] = []
    size = 0
    while chunk := await request.content.read(_READ_CHUNK):
        size += len(chunk)
        if size > MAX_ACTION_CALL_BYTES:
            raise _BodyTooLarge
        chunks.append(chunk)
    return b"".join(chunks)


def _parse_action_call(body: bytes) -> dict[str, Any] | str:
    """The action call, or a short reason why this is not one (shown to the caller in the 400 body)."""
    if not body.strip():
        return "empty body"
    try:
        call = json.loads(body)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        return f"not JSON ({exc.__class__.__name__}: {exc})"[:200]
    if not isinstance(call, dict):
        return "expected a JSON object"
    if not isinstance(call.get("next_action"), str) or not call["next_action"]:
        return "'next_action' missing"
    tracker = call.get("tracker")
    if not isinstance(tracker, dict):
        return "'tracker' missing or not an object"
    if "sender_id" not in tracker:
        # Rasa's tracker state always has it; the top-level sender_id fills in for hand-made calls.
        if not isinstance(call.get("sender_id"), str):
            return "'tracker.sender_id' missing"
        tracker["sender_id"] = call["sender_id"]
    if not isinstance(tracker["sender_id"], str):
        tracker["sender_id"] = str(tracker["sender_id"])
    for key, kind in (("slots", dict), ("latest_message", dict), ("events", list)):
        if tracker.get(key) is not None and not isinstance(tracker[key], kind):
            return f"'tracker.{key}' must be {'an object' if kind is dict else 'a list'}"
    domain = call.get("domain")
    if domain is not None and not isinstance(domain, dict):
        return "'domain' must be an object"
    return call
