"""What every front-office action shares: the turn read from Rasa's tracker, and polite error handling.

An action is a thin adapter: it reads slots and the tracker (`Turn`), calls a use case from `handlers/`,
and answers through the dispatcher in the conversation's language, returning rasa-sdk events.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any, ClassVar

from rasa_sdk import Action, Tracker
from rasa_sdk.events import EventType
from rasa_sdk.executor import CollectingDispatcher
from sqlalchemy.exc import SQLAlchemyError

from handlers.context import AppContext
from handlers.dto import InvalidRequest, NotFound, PermissionDenied, ServiceUnavailable
from handlers.i18n import pick_language

log = logging.getLogger(__name__)

# Free text longer than this is cut before classification and search (a ticket keeps TICKET_TEXT_LIMIT).
CLASSIFY_TEXT_LIMIT = 4000
TICKET_TEXT_LIMIT = 20000
# Values a slot may hold that we read as text; anything longer is not a phone, account or PIN.
_SLOT_TEXT_LIMIT = 200


def slot_text(value: Any) -> str | None:
    """A slot value as stripped text, or None (Rasa slots may hold numbers, lists or nothing)."""
    if value is None or isinstance(value, bool | dict):
        return None
    if isinstance(value, list):
        value = value[0] if value else None
        if value is None:
            return None
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    text = str(value).strip()
    if not text or len(text) > _SLOT_TEXT_LIMIT:
        return None
    return text


@dataclass
class Turn:
    """One action call, as far as our actions care: who, in which channel and language, what was said."""

    ctx: AppContext
    tracker: Tracker
    sender_id: str
    channel: str | None
    language: str
    text: str
    message_key: str
    events: list[EventType] = field(default_factory=list)

    @classmethod
    def from_tracker(cls, ctx: AppContext, tracker: Tracker) -> Turn:
        latest = tracker.latest_message if isinstance(tracker.latest_message, dict) else {}
        text = _user_text(tracker, latest)
        return cls(
            ctx=ctx,
            tracker=tracker,
            sender_id=str(tracker.sender_id),
            channel=_input_channel(tracker),
            language=_language(ctx, tracker, latest),
            text=text.strip(),
            message_key=_message_key(tracker, latest),
        )

    def slot(self, name: str) -> str | None:
        slots = self.tracker.slots if isinstance(self.tracker.slots, dict) else {}
        return slot_text(slots.get(name))

    def raw_slot(self, name: str) -> Any:
        slots = self.tracker.slots if isinstance(self.tracker.slots, dict) else {}
        return slots.get(name)

    @property
    def intent(self) -> tuple[str | None, float]:
        """The intent Rasa's NLU recognised in the latest message, with its confidence."""
        intent = (
            self.tracker.latest_message.get("intent")
            if isinstance(self.tracker.latest_message, dict)
            else None
        )
        if not isinstance(intent, dict) or not isinstance(intent.get("name"), str):
            return None, 0.0
        confidence = intent.get("confidence")
        return intent["name"], float(confidence) if isinstance(confidence, int | float) else 0.0


def _user_text(tracker: Tracker, latest: dict[str, Any]) -> str:
    """What the user said. A button press arrives as its payload ("/open_ticket", '/choose_topic{...}'):
    then the request is the user's last typed message, e.g. the problem a knowledge answer did not solve."""
    text = latest.get("text") if isinstance(latest.get("text"), str) else ""
    if not text.lstrip().startswith("/"):
        return text
    events = tracker.events if isinstance(tracker.events, list) else []
    for event in reversed(events):
        if isinstance(event, dict) and event.get("event") == "user":
            earlier = event.get("text")
            if isinstance(earlier, str) and earlier.strip() and not earlier.lstrip().startswith("/"):
                return earlier
    return ""


def _input_channel(tracker: Tracker) -> str | None:
    events = tracker.events if isinstance(tracker.events, list) else []
    for event in reversed(events):
        if isinstance(event, dict) and event.get("event") == "user":
            channel = event.get("input_channel")
            return channel if isinstance(channel, str) else None
    return None


def _language(ctx: AppContext, tracker: Tracker, latest: dict[str, Any]) -> str:
    slots = tracker.slots if isinstance(tracker.slots, dict) else {}
    chosen = slot_text(slots.get("language"))
    if not chosen:
        metadata = latest.get("metadata")
        if isinstance(metadata, dict):
            chosen = slot_text(metadata.get("language") or metadata.get("language_code"))
    return pick_language(chosen, ctx.config.default_language)


def _message_key(tracker: Tracker, latest: dict[str, Any]) -> str:
    """Identifies the user message this action answers, so a repeated call does not act twice."""
    message_id = latest.get("message_id")
    if not message_id:
        events = tracker.events if isinstance(tracker.events, list) else []
        for event in reversed(events):
            if isinstance(event, dict) and event.get("event") == "user":
                message_id = event.get("message_id") or event.get("timestamp")
                break
    if not message_id:
        # No message to pin the action on (e.g. triggered by an intent injected over the API).
        message_id = uuid.uuid4().hex
    key = f"rasa:{tracker.sender_id}:{message_id}"
    return key[:200]


class Reply:
    """The dispatcher, speaking the turn's language with texts from the configuration."""

    def __init__(self, dispatcher: CollectingDispatcher, turn: Turn) -> None:
        self._dispatcher = dispatcher
        self._turn = turn

    def t(self, key: str, **values: Any) -> str:
        return self._turn.ctx.t(key, self._turn.language, **values)

    def say(self, key: str, *, buttons: list[dict[str, Any]] | None = None, **values: Any) -> None:
        self.text(self.t(key, **values), buttons=buttons)

    def text(self, text: str, *, buttons: list[dict[str, Any]] | None = None) -> None:
        if buttons:
            self._dispatcher.utter_message(text=text, buttons=buttons)
        else:
            self._dispatcher.utter_message(text=text)


class FrontOfficeAction(Action):
    """Base of our actions: builds the Turn, calls `act`, and turns failures into a polite answer.

    Deliberate use-case errors and back-end outages become a message in the user's language with HTTP 200,
    so Rasa keeps the conversation going; only failures outside an action reach the server's 500.
    """

    action_name: ClassVar[str]

    def __init__(self, ctx: AppContext) -> None:
        self.ctx = ctx

    def name(self) -> str:
        return self.action_name

    async def act(self, turn: Turn, reply: Reply) -> Iterable[EventType]:
        raise NotImplementedError

    async def run(
        self, dispatcher: CollectingDispatcher, tracker: Tracker, domain: dict[str, Any]
    ) -> list[EventType]:
        turn = Turn.from_tracker(self.ctx, tracker)
        reply = Reply(dispatcher, turn)
        try:
            events = list(await self.act(turn, reply))
        except ServiceUnavailable:
            reply.say("rasa_service_unavailable", phone=self.ctx.config.company.phone)
            events = []
        except (NotFound, PermissionDenied):
            reply.say("rasa_not_found")
            events = []
        except InvalidRequest as exc:
            log.info("%s: invalid request from %s: %s", self.action_name, turn.sender_id, exc)
            reply.say("rasa_invalid_request")
            events = []
        except (SQLAlchemyError, OSError, TimeoutError):
            incident = uuid.uuid4().hex[:12]
            log.exception("%s: back end unavailable (incident %s)", self.action_name, incident)
            reply.say("rasa_service_unavailable", phone=self.ctx.config.company.phone)
            events = []
        except Exception:
            incident = uuid.uuid4().hex[:12]
            log.exception("%s failed for sender %s (incident %s)", self.action_name, turn.sender_id, incident)
            reply.say("error_apology")
            events = []
        # Events collected along the way (a PIN scrubbed, an identity confirmed) count even after a failure.
        return turn.events + events
