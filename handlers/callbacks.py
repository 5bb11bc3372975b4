"""Inline-button callback data: `<scope>:<action>:<id>`, at most 64 bytes (Telegram's limit).

Callback data comes back from the client and can be forged: decoding only parses it. Every handler must
still check, on the server, that the pressing user may do `action` on object `id`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

_PATTERN = re.compile(r"^([a-z]{1,8}):([a-z_]{1,20}):([0-9A-Za-z_\-.]{1,30})$")

# Staff actions on a ticket (alerts): t:take:123, t:reply:123, t:resolve:123, t:reassign:123, t:history:123
TICKET = "t"
# Client-side choices: c:topic:no_connection, c:doc:act, c:kb_yes:17, c:kb_no:17, c:rate:5 ...
CLIENT = "c"


@dataclass(frozen=True)
class Callback:
    scope: str
    action: str
    value: str

    def encode(self) -> str:
        data = f"{self.scope}:{self.action}:{self.value}"
        if len(data.encode()) > 64 or not _PATTERN.match(data):
            raise ValueError(f"invalid callback data {data!r}")
        return data

    @property
    def int_value(self) -> int | None:
        return int(self.value) if self.value.isdigit() and len(self.value) < 19 else None


def decode(data: str | None) -> Callback | None:
    """None for anything that is not well-formed (a forged or stale button)."""
    if not data or len(data) > 64:
        return None
    match = _PATTERN.match(data)
    return Callback(*match.groups()) if match else None
