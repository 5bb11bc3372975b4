"""The OpenAPI document of the HTTP API, served at /openapi.json.

Built from the routes actually mounted (an adapter that is switched off is not listed), with a description
of each known endpoint. A mounted route without a description is still listed, so the document never hides
an entry point from fuzzing; tests check that every route has one.
"""

from __future__ import annotations

from typing import Any

from aiohttp import web

JSON = "application/json"
FORM = "application/x-www-form-urlencoded"
XML = "application/xml"

_ERROR = {"type": "object", "properties": {"error": {"type": "string"}}}
_TWIML = {"description": "TwiML for the telephony provider", "content": {XML: {"schema": {"type": "string"}},
                                                                        "text/xml": {"schema": {"type": "string"}}}}
_FORBIDDEN = {"description": "missing or invalid X-Twilio-Signature, or not from loopback without a token",
              "content": {"text/plain": {"schema": {"type": "string"}}, JSON: {"schema": _ERROR}}}
_TWILIO_HEADER = [{"name": "X-Twilio-Signature", "in": "header", "required": False, "schema": {"type": "string"}}]
_CALL_FIELDS = {
    "CallSid": {"type": "string", "maxLength": 64},
    "AccountSid": {"type": "string", "maxLength": 64},
    "From": {"type": "string", "maxLength": 40},
    "To": {"type": "string", "maxLength": 40},
    "CallStatus": {"type": "string", "enum": ["queued", "ringing", "in-progress", "completed", "busy", "failed",
                                              "no-answer", "canceled"]},
    "Direction": {"type": "string"},
}


def _twilio_step(summary: str, extra: dict[str, Any]) -> dict[str, Any]:
    return {
        "summary": summary,
        "parameters": _TWILIO_HEADER,
        "requestBody": {"required": False, "content": {FORM: {"schema": {
            "type": "object", "properties": {**_CALL_FIELDS, **extra}}}}},
        "responses": {"200": _TWIML, "403": _FORBIDDEN},
    }


OPERATIONS: dict[tuple[str, str], dict[str, Any]] = {
    ("GET", "/health"): {
        "summary": "Liveness",
        "responses": {"200": {"description": "the process serves requests",
                              "content": {JSON: {"schema": {"type": "object"}}}}},
    },
    ("GET", "/ready"): {
        "summary": "Readiness: the database and Redis answer",
        "responses": {
            "200": {"description": "ready", "content": {JSON: {"schema": {"type": "object"}}}},
            "503": {"description": "names what is down", "content": {JSON: {"schema": {"type": "object"}}}},
        },
    },
    ("GET", "/metrics"): {
        "summary": "Prometheus metrics",
        "responses": {"200": {"description": "text exposition format",
                              "content": {"text/plain": {"schema": {"type": "string"}}}}},
    },
    ("GET", "/openapi.json"): {
        "summary": "This document",
        "responses": {"200": {"description": "OpenAPI 3.0", "content": {JSON: {"schema": {"type": "object"}}}}},
    },
    ("POST", "/telegram/webhook"): {
        "summary": "Telegram Bot API updates (webhook mode)",
        "parameters": [{"name": "X-Telegram-Bot-Api-Secret-Token", "in": "header", "required": False,
                        "schema": {"type": "string"}}],
        "requestBody": {"required": True, "content": {JSON: {"schema": {
            "type": "object", "properties": {"update_id": {"type": "integer"}, "message": {"type": "object"},
                                             "callback_query": {"type": "object"}}}}}},
        "responses": {
            "200": {"description": "processed (or ignored as a repeat); Telegram stops redelivering"},
            "400": {"description": "not a Telegram update"},
            "401": {"description": "wrong or missing secret token; nothing was processed"},
            "413": {"description": "body too large"},
            "503": {"description": "temporarily unable to process; Telegram will redeliver"},
        },
    },
    ("POST", "/ivr/twilio/voice"): _twilio_step("A call arrives", {}),
    ("POST", "/ivr/twilio/gather"): _twilio_step("Keypad or speech input", {
        "Digits": {"type": "string", "maxLength": 32}, "SpeechResult": {"type": "string"},
        "Confidence": {"type": "string"}}),
    ("POST", "/ivr/twilio/menu"): _twilio_step("Main-menu input", {
        "Digits": {"type": "string", "maxLength": 32}, "SpeechResult": {"type": "string"}}),
    ("POST", "/ivr/twilio/recording"): _twilio_step("A voice message was recorded", {
        "RecordingUrl": {"type": "string"}, "RecordingDuration": {"type": "string"},
        "RecordingSid": {"type": "string"}}),
    ("POST", "/ivr/twilio/recording-status"): _twilio_step("Recording status callback", {
        "RecordingUrl": {"type": "string"}, "RecordingStatus": {"type": "string"},
        "RecordingSid": {"type": "string"}}),
    ("POST", "/ivr/twilio/dial-result"): _twilio_step("Result of a transfer", {
        "DialCallStatus": {"type": "string"}, "DialCallDuration": {"type": "string"}}),
    ("POST", "/ivr/twilio/status"): {
        **_twilio_step("Call status callback", {"CallDuration": {"type": "string"}}),
        "responses": {"200": {"description": "recorded"}, "204": {"description": "recorded"},
                      "403": _FORBIDDEN},
    },
    ("POST", "/webhook"): {
        "summary": "Rasa action server: run a custom action",
        "parameters": [{"name": "Authorization", "in": "header", "required": False, "schema": {"type": "string"}}],
        "requestBody": {"required": True, "content": {JSON: {"schema": {
            "type": "object", "properties": {"next_action": {"type": "string"}, "sender_id": {"type": "string"},
                                             "tracker": {"type": "object"}, "domain": {"type": "object"},
                                             "version": {"type": "string"}}}}}},
        "responses": {
            "200": {"description": "events and responses", "content": {JSON: {"schema": {"type": "object"}}}},
            "400": {"description": "malformed request or action rejected", "content": {JSON: {"schema": _ERROR}}},
            "401": {"description": "missing or wrong bearer token", "content": {JSON: {"schema": _ERROR}}},
            "404": {"description": "unknown action", "content": {JSON: {"schema": _ERROR}}},
            "413": {"description": "body too large"},
            "449": {"description": "the action needs the domain", "content": {JSON: {"schema": _ERROR}}},
        },
    },
    ("GET", "/actions"): {
        "summary": "Rasa action server: the actions this server runs",
        "parameters": [{"name": "Authorization", "in": "header", "required": False, "schema": {"type": "string"}}],
        "responses": {"200": {"description": "list of actions", "content": {JSON: {"schema": {"type": "array"}}}},
                      "401": {"description": "missing or wrong bearer token"}},
    },
    ("GET", "/documents/download/{token}"): {
        "summary": "Download a document too large for the messenger (signed, expiring link)",
        "parameters": [{"name": "token", "in": "path", "required": True, "schema": {"type": "string"}}],
        "responses": {
            "200": {"description": "the file", "content": {"application/pdf": {"schema": {"type": "string",
                                                                                         "format": "binary"}}}},
            "403": {"description": "invalid or expired link"},
            "404": {"description": "no such document"},
        },
    },
    ("POST", "/billing/events"): {
        "summary": "Billing pushes payments and balance changes (HMAC-signed)",
        "parameters": [{"name": "X-Signature", "in": "header", "required": False, "schema": {"type": "string"}}],
        "requestBody": {"required": True, "content": {JSON: {"schema": {"type": "object"}}}},
        "responses": {
            "200": {"description": "accepted (or a repeat, ignored)"},
            "400": {"description": "malformed event"},
            "401": {"description": "missing or wrong signature; nothing stored"},
            "404": {"description": "unknown account"},
            "413": {"description": "body too large"},
            "503": {"description": "temporarily unable to store; retry"},
        },
    },
}


def build_document(app: web.Application) -> dict[str, Any]:
    paths: dict[str, dict[str, Any]] = {}
    for route in app.router.routes():
        method = route.method.upper()
        if method in ("HEAD", "*") or route.resource is None:
            continue
        path = route.resource.canonical
        operation = OPERATIONS.get((method, path), {
            "summary": "undocumented route",
            "responses": {"default": {"description": "see the code"}},
        })
        paths.setdefault(path, {})[method.lower()] = operation
    return {
        "openapi": "3.0.3",
        "info": {"title": "Front office", "version": "1.0",
                 "description": "Telegram webhook, telephony (TwiML) webhooks, Rasa action server, "
                                "billing events and operations endpoints of one front-office process."},
        "paths": dict(sorted(paths.items())),
    }


async def openapi_json(request: web.Request) -> web.Response:
    return web.json_response(build_document(request.app))
