"""Who is talking to the Rasa assistant, decided on our side.

Trusted, in this order:
1. an account number (or a phone with a single account) plus the PIN, from the slots - checked with the PIN
   lockout of `identify_by_account_pin`; the PIN slot is always wiped afterwards;
2. an account + PIN identification made earlier in this conversation, remembered server-side (ctx.kv, 30
   minutes after the last use) for the same sender_id and input channel - never a slot, since slots can be
   filled from what the user types;
3. the sender_id itself, but only when Rasa says the message came from a channel that vouches for it:
   the caller's number on a voice/SMS channel (Twilio...), a linked Telegram chat on Rasa's Telegram channel.
A phone number typed into a chat (the `phone` slot) alone identifies nobody: it is only a contact number.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from rasa_sdk.events import SlotSet

from actions.base import Reply, Turn
from handlers import identification
from handlers.dto import ClientProfile, NotFound
from handlers.phones import normalize_phone

log = logging.getLogger(__name__)

# Rasa channel names whose sender_id is the caller's phone number.
PHONE_CHANNELS = frozenset(
    {
        "twilio_voice",
        "twilio",
        "twilio_media_streams",
        "audiocodes",
        "jambonz",
        "genesys",
        "vonage",
        "whatsapp",
    }
)
TELEGRAM_CHANNELS = frozenset({"telegram"})
SESSION_TTL_SECONDS = 30 * 60
_SESSION_PREFIX = "rasa:client:"


@dataclass(frozen=True)
class Identity:
    """The outcome of resolving the client of one turn."""

    client: ClientProfile | None
    # How: "pin", "session", "telegram", "phone"; or why not: "wrong_pin", "locked", "need_account", None.
    how: str | None = None
    attempts_left: int = 0


def sender_phone(turn: Turn) -> str | None:
    """The caller's number when the channel vouches for it (Twilio voice: sender_id is the From number)."""
    if turn.channel not in PHONE_CHANNELS:
        return None
    raw = turn.sender_id.removeprefix("whatsapp:").removeprefix("tel:")
    return normalize_phone(raw, turn.ctx.config.default_region)


def contact_phone(turn: Turn, client: ClientProfile | None) -> str | None:
    """A number to call back: the one given in the conversation, else the caller's, else the client's."""
    typed = normalize_phone(turn.slot("phone"), turn.ctx.config.default_region)
    if typed:
        return typed
    caller = sender_phone(turn)
    if caller:
        return caller
    if client is not None and client.phones:
        return client.phones[0]
    return None


def _session_key(turn: Turn) -> str:
    return f"{_SESSION_PREFIX}{turn.channel or '-'}:{turn.sender_id}"


def _last_event_time(turn: Turn, kinds: frozenset[str]) -> float:
    """Rasa's timestamp of the latest event of these kinds (Rasa's clock, so comparisons stay on one clock)."""
    events = turn.tracker.events if isinstance(turn.tracker.events, list) else []
    for event in reversed(events):
        if isinstance(event, dict) and event.get("event") in kinds:
            stamp = event.get("timestamp")
            return float(stamp) if isinstance(stamp, int | float) and not isinstance(stamp, bool) else 0.0
    return 0.0


_USER = frozenset({"user"})
# A new Rasa session or a restart ends the identification too, not only our expiry.
_RESETS = frozenset({"session_started", "restart"})


async def remember(turn: Turn, client: ClientProfile, identified_at: float | None = None) -> None:
    if identified_at is None:
        identified_at = _last_event_time(turn, _USER)
    value = f"{client.customer_id}:{identified_at!r}"
    await turn.ctx.kv.kv.set(_session_key(turn), value, ttl=SESSION_TTL_SECONDS)


async def forget(turn: Turn) -> None:
    await turn.ctx.kv.kv.delete(_session_key(turn))


async def _from_session(turn: Turn) -> ClientProfile | None:
    stored = await turn.ctx.kv.kv.get(_session_key(turn))
    if not stored:
        return None
    customer, _, when = stored.partition(":")
    try:
        customer_id, identified_at = int(customer), float(when or 0)
    except ValueError:
        await forget(turn)
        return None
    if _last_event_time(turn, _RESETS) > identified_at:
        await forget(turn)
        return None
    try:
        client = await identification.client_profile(turn.ctx, customer_id)
    except NotFound:
        await forget(turn)
        return None
    # Sliding expiry: an active conversation stays identified.
    await remember(turn, client, identified_at)
    return client


async def _from_sender(turn: Turn) -> tuple[ClientProfile | None, str | None]:
    if turn.channel in TELEGRAM_CHANNELS:
        chat = turn.sender_id
        # Private chats have positive ids equal to the user's id; groups cannot identify one person.
        if chat.isdigit() and len(chat) < 19:
            return await identification.identify_by_telegram(turn.ctx, int(chat)), "telegram"
        return None, None
    phone = sender_phone(turn)
    if phone:
        return await identification.identify_by_phone(turn.ctx, phone), "phone"
    return None, None


async def _check_pin(turn: Turn, pin: str) -> Identity:
    """Account (or a phone with exactly one account) plus PIN."""
    account = turn.slot("account_number")
    if account:
        account = "".join(account.split())
    else:
        phone = normalize_phone(turn.slot("phone"), turn.ctx.config.default_region) or sender_phone(turn)
        owner = await identification.identify_by_phone(turn.ctx, phone) if phone else None
        if owner is None or len(owner.account_numbers) != 1:
            # Unknown phone, or several accounts: ask which account (without saying which case it is).
            return Identity(None, "need_account")
        account = owner.account_numbers[0]
    check = await identification.identify_by_account_pin(turn.ctx, account, pin)
    if check.ok and check.client is not None:
        if not check.client.has_consent:
            # As in the bot: the identification prompt says that giving the account and PIN means consent.
            await identification.record_consent(turn.ctx, check.client.customer_id)
        await remember(turn, check.client)
        return Identity(check.client, "pin")
    if check.locked_until is not None:
        return Identity(None, "locked")
    return Identity(None, "wrong_pin", attempts_left=check.attempts_left)


async def resolve_client(turn: Turn) -> Identity:
    """Find the client of this turn; records slot events (PIN wiped, identity flags) on `turn.events`."""
    pin = turn.slot("pin")
    if pin is not None:
        turn.events.append(SlotSet("pin", None))
        identity = await _check_pin(turn, "".join(pin.split()))
        turn.events.extend(identity_slots(turn, identity.client))
        return identity
    client = await _from_session(turn)
    if client is not None:
        return Identity(client, "session")
    client, how = await _from_sender(turn)
    if client is not None:
        # Not remembered: the channel vouches anew on every turn, and an unlinked chat stops at once.
        turn.events.extend(identity_slots(turn, client))
        return Identity(client, how)
    return Identity(None, None)


def identity_slots(turn: Turn, client: ClientProfile | None) -> list[dict]:
    """Slots a Rasa story can branch on, set only when they change; informational, never trusted back."""
    wanted: dict[str, object] = {"customer_identified": client is not None}
    if client is not None:
        wanted["customer_name"] = client.name
    pending = {e.get("name"): e.get("value") for e in turn.events if e.get("event") == "slot"}
    return [
        SlotSet(name, value)
        for name, value in wanted.items()
        if (pending[name] if name in pending else turn.raw_slot(name)) != value
    ]


def explain_failure(identity: Identity, reply: Reply) -> None:
    """Tell the user why we do not know them yet and what to send."""
    if identity.how == "locked":
        reply.say("rasa_pin_locked")
    elif identity.how == "wrong_pin":
        reply.say("rasa_pin_wrong", attempts=identity.attempts_left)
    elif identity.how == "need_account":
        reply.say("rasa_need_account")
    else:
        reply.say("rasa_need_identification")


async def require_client(turn: Turn, reply: Reply) -> ClientProfile | None:
    """The identified client, or None after telling the user how to identify themselves."""
    identity = await resolve_client(turn)
    if identity.client is None:
        explain_failure(identity, reply)
        turn.events.extend(identity_slots(turn, None))
    return identity.client
