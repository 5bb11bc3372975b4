"""Twilio TwiML: the markup dialect that renders the flow's abstract steps.

Only verbs and attributes from Twilio's TwiML Voice reference are produced (Say voice/language; Gather
input/action/method/timeout/speechTimeout/numDigits/finishOnKey/language/hints/actionOnEmptyResult; Record
action/method/maxLength/finishOnKey/playBeep/recordingStatusCallback/recordingStatusCallbackMethod; Dial
action/method/timeout/callerId with Number; Redirect method; Pause length; Hangup). Another provider's
dialect (SignalWire cXML, Telnyx TeXML) is another module with the same `render` signature.

Strings are built directly rather than through an XML tree: this runs on every step of every call, and
escaping is all the structure needs.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from xml.sax.saxutils import escape, quoteattr

from ivr.steps import Dial, Gather, Hangup, Pause, Record, Redirect, Say, Step

CONTENT_TYPE = "application/xml"
LANGUAGE_TAGS = {"ru": "ru-RU", "en": "en-US"}
_HEAD = '<?xml version="1.0" encoding="UTF-8"?><Response>'
# Rendered <Say> elements (and <Gather> attributes) kept for reuse: the menu's sentences are the same in every
# call, and a greeting with the caller's name recurs on each call from that caller. Bounded; cleared when full.
MAX_CACHED_SAYS = 4096


def language_tag(lang: str) -> str:
    return LANGUAGE_TAGS.get(lang, "ru-RU")


def _attrs(pairs: Iterable[tuple[str, object]]) -> str:
    out = []
    for name, value in pairs:
        if value is None:
            continue
        if isinstance(value, bool):
            value = "true" if value else "false"
        out.append(f" {name}={quoteattr(str(value))}")
    return "".join(out)


class TwimlRenderer:
    """Renders steps; `absolute` turns our paths into the URLs the provider should call back."""

    def __init__(self, voices: Mapping[str, str], absolute: Callable[[str], str] = lambda path: path) -> None:
        self._voices = dict(voices)
        self._absolute = absolute
        self._said: dict[Say, str] = {}
        self._gather_attrs: dict[tuple[object, ...], str] = {}

    def render(self, steps: Iterable[Step]) -> str:
        return _HEAD + "".join(self._verb(step) for step in steps) + "</Response>"

    def _say(self, step: Say) -> str:
        xml = self._said.get(step)
        if xml is None:
            voice = self._voices.get(step.language)
            attrs = _attrs((("voice", voice), ("language", language_tag(step.language))))
            xml = f"<Say{attrs}>{escape(step.text)}</Say>"
            if len(self._said) >= MAX_CACHED_SAYS:
                self._said.clear()
            self._said[step] = xml
        return xml

    def _gather_attributes(self, step: Gather) -> str:
        # Few distinct combinations (the action differs only by its step number): rendered once each.
        key = (step.speech, step.action, step.timeout, step.num_digits, step.finish_on_key, step.language,
               step.hints)
        attrs = self._gather_attrs.get(key)
        if attrs is None:
            attrs = _attrs((
                ("input", "dtmf speech" if step.speech else "dtmf"),
                ("action", self._absolute(step.action)),
                ("method", "POST"),
                ("timeout", step.timeout),
                ("speechTimeout", "auto" if step.speech else None),
                ("numDigits", step.num_digits),
                ("finishOnKey", step.finish_on_key),
                ("language", language_tag(step.language)),
                ("hints", ", ".join(step.hints) if step.hints and step.speech else None),
                # Silence must reach us too: we count it (repeat once, then the operator).
                ("actionOnEmptyResult", True),
            ))
            if len(self._gather_attrs) >= MAX_CACHED_SAYS:
                self._gather_attrs.clear()
            self._gather_attrs[key] = attrs
        return attrs

    def _verb(self, step: Step) -> str:
        if isinstance(step, Say):
            return self._say(step)
        if isinstance(step, Pause):
            return f"<Pause{_attrs((('length', step.seconds),))}/>"
        if isinstance(step, Gather):
            inner = "".join(self._verb(p) for p in step.prompts)
            return f"<Gather{self._gather_attributes(step)}>{inner}</Gather>"
        if isinstance(step, Record):
            attrs = _attrs((
                ("action", self._absolute(step.action)),
                ("method", "POST"),
                ("maxLength", step.max_length),
                ("finishOnKey", step.finish_on_key),
                ("playBeep", step.play_beep),
                ("recordingStatusCallback", self._absolute(step.status_callback)),
                ("recordingStatusCallbackMethod", "POST"),
            ))
            return f"<Record{attrs}/>"
        if isinstance(step, Dial):
            attrs = _attrs((
                ("action", self._absolute(step.action)),
                ("method", "POST"),
                ("timeout", step.timeout),
                ("callerId", step.caller_id),
            ))
            numbers = "".join(f"<Number>{escape(n)}</Number>" for n in step.numbers)
            return f"<Dial{attrs}>{numbers}</Dial>"
        if isinstance(step, Redirect):
            return f"<Redirect{_attrs((('method', 'POST'),))}>{escape(self._absolute(step.url))}</Redirect>"
        if isinstance(step, Hangup):
            return "<Hangup/>"
        raise TypeError(f"no TwiML for {type(step).__name__}")
