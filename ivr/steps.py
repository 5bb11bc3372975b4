"""What the call flow asks the telephony provider to do, independent of any markup dialect.

A dialect module (`ivr.twiml` for Twilio; SignalWire cXML and Telnyx TeXML would be siblings) turns a list
of these into its document. URLs here are paths of our own endpoints (`/ivr/twilio/...` plus a query); the
route layer makes them absolute when a public base URL is configured.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class Say:
    text: str
    language: str  # ru|en; the dialect maps it to a voice and a BCP-47 tag


@dataclass(frozen=True)
class Pause:
    seconds: int = 1


@dataclass(frozen=True)
class Gather:
    """Collect keys and/or speech; the provider posts the result (or nothing, on silence) to `action`."""

    action: str
    language: str
    prompts: tuple[Say | Pause, ...] = ()
    speech: bool = True
    num_digits: int | None = None
    finish_on_key: str | None = None
    timeout: int = 6
    hints: tuple[str, ...] = ()


@dataclass(frozen=True)
class Record:
    action: str
    status_callback: str
    max_length: int
    finish_on_key: str = "#"
    play_beep: bool = True


@dataclass(frozen=True)
class Dial:
    numbers: tuple[str, ...]
    action: str
    timeout: int
    caller_id: str | None = None


@dataclass(frozen=True)
class Redirect:
    url: str


@dataclass(frozen=True)
class Hangup:
    pass


Step = Say | Pause | Gather | Record | Dial | Redirect | Hangup


@dataclass
class Reply:
    """One answer to one webhook request: the steps, plus what the call log should remember about it."""

    steps: list[Step] = field(default_factory=list)
    # Name of the menu node reached, appended to the call's path (e.g. "menu", "balance", "dial:manager").
    node: str | None = None
    outcome: str | None = None  # set when the call reached a result worth reporting (ticket_opened...)
