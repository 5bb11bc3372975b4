"""Action-call JSON exactly as Rasa 3 sends it to an action server (CustomActionRequestWriter):

    {"next_action", "sender_id", "tracker": tracker.current_state(EventVerbosity.ALL),
     "domain": domain.as_dict(), "domain_digest"?, "version"}

The tracker state carries every event of the conversation (session start, the user's message with its
parse data and input channel...), the slots with the domain's defaults, and `latest_message`. The domain is
the example assistant's (`examples/rasa/domain.yml`) in `Domain.as_dict()` form.
"""

from __future__ import annotations

import copy
import json
import time
import uuid
import zlib
from functools import cache
from pathlib import Path
from typing import Any

import yaml

EXAMPLE_DIR = Path(__file__).resolve().parents[2] / "examples" / "rasa"
RASA_VERSION = "3.6.21"
_last_stamp = 0.0


def _now() -> float:
    """Increasing event times that stay on the real clock (a counter added to the time drifted seconds ahead
    over a full test run, making real 'now' look older than earlier events)."""
    global _last_stamp
    _last_stamp = max(time.time(), _last_stamp + 1e-6)
    return _last_stamp


@cache
def _domain_file() -> dict[str, Any]:
    return yaml.safe_load((EXAMPLE_DIR / "domain.yml").read_text(encoding="utf-8"))


def domain() -> dict[str, Any]:
    """The example domain as `rasa.shared.core.domain.Domain.as_dict()` renders it."""
    raw = _domain_file()
    slots = {}
    for name, spec in raw["slots"].items():
        slot = {
            "type": f"rasa.shared.core.slots.{spec['type'].capitalize()}Slot",
            "initial_value": spec.get("initial_value"),
            "influence_conversation": spec.get("influence_conversation", True),
            "mappings": spec.get("mappings", []),
        }
        if "values" in spec:
            slot["values"] = spec["values"]
        slots[name] = slot
    return copy.deepcopy(
        {
            "version": raw.get("version", "3.1"),
            "config": {"store_entities_as_slots": True},
            "session_config": raw.get("session_config", {}),
            "intents": [{name: {"use_entities": True}} for name in raw["intents"]],
            "entities": raw.get("entities", []),
            "slots": slots,
            "responses": raw.get("responses", {}),
            "actions": raw.get("actions", []),
            "forms": {},
            "e2e_actions": [],
        }
    )


def default_slots() -> dict[str, Any]:
    return {name: spec.get("initial_value") for name, spec in _domain_file()["slots"].items()} | {
        "session_started_metadata": None,
        "requested_slot": None,
    }


def user_event(
    text: str,
    *,
    intent: str | None = None,
    confidence: float = 0.97,
    entities: list[dict[str, Any]] | None = None,
    input_channel: str = "rest",
    message_id: str | None = None,
    metadata: dict[str, Any] | None = None,
    timestamp: float | None = None,
) -> dict[str, Any]:
    parse_data = {
        "intent": {"name": intent, "confidence": confidence}
        if intent
        else {"name": "nlu_fallback", "confidence": 0.4},
        "entities": entities or [],
        "text": text,
        "message_id": message_id or uuid.uuid4().hex,
        "metadata": metadata or {},
        "intent_ranking": [{"name": intent or "nlu_fallback", "confidence": confidence if intent else 0.4}],
    }
    return {
        "event": "user",
        "timestamp": timestamp or _now(),
        "metadata": {"model_id": "0f3c9b1f2e8d4b7a", "assistant_id": "front-office-example"},
        "text": text,
        "parse_data": parse_data,
        "input_channel": input_channel,
        "message_id": parse_data["message_id"],
    }


def _action_event(name: str, timestamp: float) -> dict[str, Any]:
    return {
        "event": "action",
        "timestamp": timestamp,
        "metadata": {"model_id": "0f3c9b1f2e8d4b7a"},
        "name": name,
        "policy": None,
        "confidence": 1.0,
        "action_text": None,
        "hide_rule_turn": False,
    }


def action_call(
    action: str,
    text: str = "",
    *,
    sender_id: str = "c3f1d2e4a5b6",
    intent: str | None = None,
    confidence: float = 0.97,
    entities: list[dict[str, Any]] | None = None,
    slots: dict[str, Any] | None = None,
    input_channel: str = "rest",
    metadata: dict[str, Any] | None = None,
    message_id: str | None = None,
    with_domain: bool = True,
    domain_digest: str | None = None,
    history: list[dict[str, Any]] | None = None,
    session_started_at: float | None = None,
) -> dict[str, Any]:
    """One call of `action` after the user said `text` on `input_channel`."""
    # The conversation's session began a while ago unless a test says when.
    start = time.time() - 600 if session_started_at is None else session_started_at
    user = user_event(
        text,
        intent=intent,
        confidence=confidence,
        entities=entities,
        input_channel=input_channel,
        message_id=message_id,
        metadata=metadata,
    )
    events = [
        _action_event("action_session_start", start),
        {"event": "session_started", "timestamp": start, "metadata": {"model_id": "0f3c9b1f2e8d4b7a"}},
        _action_event("action_listen", start),
        *(history or []),
        user,
        {"event": "user_featurization", "timestamp": user["timestamp"], "use_text_for_featurization": False},
    ]
    all_slots = default_slots() | (slots or {})
    for name, value in (slots or {}).items():
        events.append({"event": "slot", "timestamp": user["timestamp"], "name": name, "value": value})
    latest = dict(user["parse_data"])
    call: dict[str, Any] = {
        "next_action": action,
        "sender_id": sender_id,
        "tracker": {
            "sender_id": sender_id,
            "slots": all_slots,
            "latest_message": latest,
            "latest_event_time": user["timestamp"],
            "followup_action": None,
            "paused": False,
            "stack": [],
            "events": events,
            "latest_input_channel": input_channel,
            "active_loop": {},
            "latest_action": {"action_name": "action_listen"},
            "latest_action_name": "action_listen",
        },
        "version": RASA_VERSION,
    }
    if with_domain:
        call["domain"] = domain()
    if domain_digest:
        call["domain_digest"] = domain_digest
    return call


def deflated(call: dict[str, Any]) -> bytes:
    """The body as Rasa sends it with COMPRESS_ACTION_SERVER_REQUEST=true (zlib, Content-Encoding: deflate)."""
    return zlib.compress(json.dumps(call).encode("utf-8"))


def slot_events(response: dict[str, Any]) -> dict[str, Any]:
    """{slot: value} of the SlotSet events in an action server response (last one wins)."""
    return {e["name"]: e["value"] for e in response.get("events", []) if e.get("event") == "slot"}


def texts(response: dict[str, Any]) -> list[str]:
    return [r["text"] for r in response.get("responses", []) if r.get("text")]
