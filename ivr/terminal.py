"""`python main.py call --from +79161234567`: play a phone call in the terminal.

It does what Twilio does: posts the webhook's form fields, reads the TwiML it gets back, prints what would
be said, and turns what you type into the next request (digits and * # as key presses, anything else as
recognised speech, an empty line as silence, Ctrl+D to hang up). By default it serves the IVR in-process
on a loopback port with this installation's database; `--url http://host:8080` calls a running server
instead (requests are signed when TWILIO_AUTH_TOKEN is set, against PUBLIC_BASE_URL when set).
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import secrets
import sys
import xml.etree.ElementTree as ET
from collections.abc import Callable
from typing import Any, TextIO
from urllib.parse import urlsplit

import aiohttp
from aiohttp import web
from twilio.request_validator import RequestValidator

from config import BusinessConfig, Settings
from handlers.phones import normalize_phone

KEYS = set("0123456789*#")
MAX_STEPS = 200


def register(sub: Any) -> None:
    parser = sub.add_parser("call", help="play a phone call to the IVR in the terminal")
    parser.add_argument("--from", dest="caller", required=True, help="the caller's number, e.g. +79161234567")
    parser.add_argument("--to", dest="called", help="the number called (default: the company's phone)")
    parser.add_argument("--url", help="base URL of a running server (default: serve the IVR in-process)")
    parser.set_defaults(handler=cmd_call)


async def cmd_call(args: argparse.Namespace, settings: Settings, config: BusinessConfig) -> int:
    if normalize_phone(args.caller, config.default_region) is None:
        print(f"error: {args.caller!r} is not a phone number", file=sys.stderr)
        return 2
    called = args.called or config.company.phone
    if settings.log_level == "INFO":
        # The conversation is the output; routine log lines (PDF generation...) would drown it.
        logging.getLogger().setLevel(logging.WARNING)
    if args.url:
        token = settings.twilio_auth_token.get_secret_value() if settings.twilio_auth_token else None
        player = TerminalCall(args.url.rstrip("/"), args.caller, called, token=token,
                              signed_base=settings.public_base_url or args.url.rstrip("/"))
        return await player.run()
    return await _run_in_process(settings, config, args.caller, called)


async def _run_in_process(settings: Settings, config: BusinessConfig, caller: str, called: str) -> int:
    from ivr.routes import setup
    from service.container import build_services
    from service.wiring import connect_ports, warm_up

    services = await build_services(settings, config)
    try:
        connect_ports(services)
        # What the server prepares in the background (the topic model, the knowledge base) is prepared
        # before the call here, so a played call behaves like one to a warmed-up server.
        print("(preparing the topic model; the first run trains it, which takes a while)", flush=True)
        await warm_up(services)
        app = web.Application()
        # A private loopback server: no signatures needed, action URLs relative to it.
        local = settings.model_copy(update={"twilio_auth_token": None, "public_base_url": None})
        setup(app, services.ctx, local)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        try:
            return await TerminalCall(f"http://127.0.0.1:{port}", caller, called).run()
        finally:
            await runner.cleanup()
    finally:
        await services.close()


class TerminalCall:
    def __init__(self, base: str, caller: str, called: str, *, token: str | None = None,
                 signed_base: str | None = None, read: Callable[[str], str] | None = None,
                 out: TextIO | None = None) -> None:
        self.base = base
        self.signed_base = (signed_base or base).rstrip("/")
        self.caller, self.called = caller, called
        self.sid = "CA" + secrets.token_hex(16)
        self.validator = RequestValidator(token) if token else None
        self.read = read or input
        self.out = out or sys.stdout
        self.started = asyncio.get_event_loop().time()

    def _print(self, text: str) -> None:
        print(text, file=self.out, flush=True)

    async def _ask(self, prompt: str) -> str | None:
        try:
            return (await asyncio.to_thread(self.read, prompt)).strip()
        except EOFError:
            return None

    def _path(self, url: str) -> str:
        parts = urlsplit(url)
        return parts.path + (f"?{parts.query}" if parts.query else "")

    async def _post(self, session: aiohttp.ClientSession, url: str, extra: dict[str, str]) -> tuple[int, str]:
        path_qs = self._path(url)
        form = {"CallSid": self.sid, "AccountSid": "AC" + "0" * 32, "From": self.caller, "To": self.called,
                "CallStatus": "in-progress", "Direction": "inbound", **extra}
        headers = {}
        if self.validator is not None:
            headers["X-Twilio-Signature"] = self.validator.compute_signature(self.signed_base + path_qs, form)
        async with session.post(self.base + path_qs, data=form, headers=headers) as resp:
            return resp.status, await resp.text()

    async def run(self) -> int:
        self._print(f"Calling {self.called} from {self.caller} (call {self.sid}).")
        self._print("Type digits (and * #) to press keys, words to speak, Enter for silence, Ctrl+D to hang up.")
        timeout = aiohttp.ClientTimeout(total=20)
        async with aiohttp.ClientSession(timeout=timeout) as session:
            try:
                return await self._converse(session)
            finally:
                duration = int(asyncio.get_event_loop().time() - self.started)
                try:
                    await self._post(session, "/ivr/twilio/status",
                                     {"CallStatus": "completed", "CallDuration": str(duration)})
                except aiohttp.ClientError:
                    pass

    async def _converse(self, session: aiohttp.ClientSession) -> int:
        url, extra = "/ivr/twilio/voice", {}
        for _ in range(MAX_STEPS):
            try:
                status, body = await self._post(session, url, extra)
            except aiohttp.ClientError as exc:
                self._print(f"error: cannot reach {self.base}: {exc}")
                return 1
            if status != 200:
                self._print(f"error: the IVR answered HTTP {status}: {body[:200]}")
                return 1
            try:
                root = ET.fromstring(body)
            except ET.ParseError:
                self._print(f"error: not TwiML: {body[:200]}")
                return 1
            following = await self._play(root)
            if following is None:
                self._print("(call ended)")
                return 0
            url, extra = following
        self._print("(too many steps; hanging up)")
        return 0

    async def _play(self, root: ET.Element) -> tuple[str, dict[str, str]] | None:
        """Execute one document; returns the next request, or None when the call is over."""
        for verb in root:
            if verb.tag == "Say":
                self._print(f"  IVR: {verb.text or ''}")
            elif verb.tag == "Gather":
                for inner in verb:
                    if inner.tag == "Say":
                        self._print(f"  IVR: {inner.text or ''}")
                typed = await self._ask("you> ")
                if typed is None:
                    return None
                if not typed:
                    return verb.get("action", ""), {}
                if set(typed) <= KEYS:
                    return verb.get("action", ""), {"Digits": typed}
                return verb.get("action", ""), {"SpeechResult": typed, "Confidence": "0.90"}
            elif verb.tag == "Record":
                self._print(f"  (recording up to {verb.get('maxLength')} s after the beep; type the message)")
                typed = await self._ask("message> ")
                if typed is None:
                    return None
                if not typed:
                    return verb.get("action", ""), {}
                recording = f"https://terminal.invalid/recordings/{self.sid}"
                return verb.get("action", ""), {"RecordingUrl": recording,
                                                "RecordingDuration": str(max(1, len(typed.split())))}
            elif verb.tag == "Dial":
                numbers = ", ".join(n.text or "" for n in verb.findall("Number"))
                self._print(f"  (dialing {numbers}, {verb.get('timeout')} s)")
                typed = await self._ask("[a]nswered, [n]o answer, [b]usy? ")
                if typed is None:
                    return None
                outcome = {"a": "completed", "b": "busy"}.get(typed[:1].lower(), "no-answer")
                if outcome == "completed":
                    self._print("  (talking... then the other side hangs up)")
                if not verb.get("action"):
                    return None
                return verb.get("action", ""), {"DialCallStatus": outcome}
            elif verb.tag == "Redirect":
                return verb.text or "", {}
            elif verb.tag == "Hangup":
                return None
        return None  # Twilio hangs up when a document runs out of verbs
