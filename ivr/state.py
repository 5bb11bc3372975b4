"""Per-call state in the key-value store (Redis or its in-process twin), keyed by CallSid.

Any web worker can serve any step of a call. Each response carries the step number it expects next
(`?s=N` in its action URLs); the state remembers the last answer, so a request the provider repeats (a
retry after a timeout, a duplicated delivery) gets exactly the same TwiML and causes nothing twice.
"""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass, field, fields
from typing import Any

from handlers.dto import ClientProfile
from storage.kv import KeyValueStore

# A call lasts at most four hours on Twilio; its state outlives it a little for late callbacks.
STATE_TTL_SECONDS = 5 * 3600
# A step once claimed stays claimed for the life of the call: a late repeat replays, never re-runs.
CLAIM_TTL_SECONDS = STATE_TTL_SECONDS


@dataclass
class CallState:
    sid: str
    caller: str | None  # E.164 when the caller id was usable, else None
    language: str
    seq: int = 0  # the step number the next request must carry
    node: str = "start"
    silence: int = 0  # consecutive empty answers at this node
    misses: int = 0  # consecutive unusable answers at this node
    pin_tries: int = 0
    account_number: str | None = None
    doc_kind: str | None = None
    dial_leg: str | None = None  # manager|department|operator
    client: ClientProfile | None = None
    last_reply: str = ""  # the TwiML answered to step seq-1, replayed on a repeat
    extra: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> str:
        # Field by field rather than dataclasses.asdict, which deep-copies everything: this runs on every
        # step of every call. The two big values are encoded once and reused: the last answer (the same menu
        # TwiML for every call at that point, and the same object within a request) and the client's profile
        # (the same few clients call again and again).
        head = _encode({name: getattr(self, name) for name in _PLAIN_FIELDS})
        client = "null" if self.client is None else _client_json(self.client)
        return f'{head[:-1]},"client":{client},"last_reply":{_reply_json(self.last_reply)}}}'

    @classmethod
    def from_json(cls, raw: str) -> CallState:
        data = json.loads(raw)
        known = {f.name for f in fields(cls)}
        data = {k: v for k, v in data.items() if k in known}
        client = data.get("client")
        if client is not None:
            for name in ("phones", "account_numbers"):
                client[name] = tuple(client.get(name) or ())
            client_fields = {f.name for f in fields(ClientProfile)}
            data["client"] = ClientProfile(**{k: v for k, v in client.items() if k in client_fields})
        return cls(**data)


_STATE_FIELDS = tuple(f.name for f in fields(CallState))
_PLAIN_FIELDS = tuple(name for name in _STATE_FIELDS if name not in ("client", "last_reply"))
_CLIENT_FIELDS = tuple(f.name for f in fields(ClientProfile))
# One encoder for every call: json.dumps with any option builds a new JSONEncoder each time.
_encode = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"), default=str).encode
MAX_CACHED_JSON = 1024
_replies: dict[str, str] = {}
_clients: dict[ClientProfile, str] = {}


def _reply_json(xml: str) -> str:
    encoded = _replies.get(xml)
    if encoded is None:
        encoded = _encode(xml)
        if len(_replies) >= MAX_CACHED_JSON:
            _replies.clear()
        _replies[xml] = encoded
    return encoded


def _client_json(client: ClientProfile) -> str:
    try:
        encoded = _clients.get(client)
    except TypeError:  # an unhashable value somewhere in the profile: encoded each time
        return _encode({name: getattr(client, name) for name in _CLIENT_FIELDS})
    if encoded is None:
        encoded = _encode({name: getattr(client, name) for name in _CLIENT_FIELDS})
        if len(_clients) >= MAX_CACHED_JSON:
            _clients.clear()
        _clients[client] = encoded
    return encoded


class CallStateStore:
    def __init__(self, kv: KeyValueStore, prefix: str = "ivr:call:") -> None:
        self._kv = kv
        self._prefix = prefix

    def _key(self, sid: str) -> str:
        return self._prefix + sid

    async def load(self, sid: str) -> CallState | None:
        raw = await self._kv.get(self._key(sid))
        if raw is None:
            return None
        try:
            return CallState.from_json(raw)
        except (ValueError, TypeError, KeyError):
            return None  # unreadable (older format): the call restarts its flow rather than failing

    async def save(self, state: CallState) -> None:
        await self._kv.set(self._key(state.sid), state.to_json(), ttl=STATE_TTL_SECONDS)

    async def save_new(self, state: CallState) -> bool:
        """Save the state of a call that has none yet; False when another request saved one first."""
        return await self._kv.set_if_absent(self._key(state.sid), state.to_json(), ttl=STATE_TTL_SECONDS)

    async def claim(self, sid: str, seq: int) -> bool:
        """True for the one request that may process step `seq`; a concurrent duplicate gets False."""
        return await self._kv.set_if_absent(f"{self._prefix}{sid}:step:{seq}", "1", ttl=CLAIM_TTL_SECONDS)

    async def wait_for_reply(self, sid: str, seq: int, timeout: float) -> str | None:
        """The answer another worker is producing for step `seq`, once it is saved."""
        deadline = asyncio.get_running_loop().time() + timeout
        while asyncio.get_running_loop().time() < deadline:
            state = await self.load(sid)
            if state is not None and state.seq > seq:
                return state.last_reply
            await asyncio.sleep(0.1)
        return None
