"""aiohttp routes of the phone line under /ivr/twilio/: parse, authenticate, replay repeats, render TwiML.

    POST /ivr/twilio/voice             a call comes in (entry)
    POST /ivr/twilio/gather?s=N        keys or speech (or silence) for step N
    POST /ivr/twilio/recording?s=N     a voice message finished recording
    POST /ivr/twilio/dial-result?s=N   a transfer ended (DialCallStatus)
    POST /ivr/twilio/recording-status  the recording file is ready (asynchronous)
    POST /ivr/twilio/status            call status callback: closes the call log

Whatever arrives, the provider gets valid TwiML with status 200 (an apology and the operator or a goodbye),
except a request that fails authentication: 403, and nothing is read further or recorded.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Awaitable, Callable
from functools import lru_cache

from aiohttp import web

from config import Settings
from handlers.context import AppContext
from handlers.phones import normalize_phone
from ivr.calllog import CallLog
from ivr.flow import CallFlow, Inbound, bounded, clean_inbound
from ivr.security import RequestGuard
from ivr.state import CallState, CallStateStore
from ivr.steps import Dial, Hangup, Reply, Say
from ivr.twiml import CONTENT_TYPE, TwimlRenderer
from ivr.usecases import UseCases

log = logging.getLogger(__name__)

PREFIX = "/ivr/twilio"
# Twilio gives up on a webhook after 15 s; we answer in less, whatever the back ends do: the flow gets 8 s,
# the operator fallback 3 s more, and the call log 3 s (a slow log loses a line, never the caller).
STEP_BUDGET_SECONDS = 8.0
FALLBACK_BUDGET_SECONDS = 3.0
LOG_BUDGET_SECONDS = 3.0
_SID = re.compile(r"^[A-Za-z0-9_-]{2,64}$")
MAX_FIELD_CHARS = 5000
# Callers ring from the same numbers again and again; `phonenumbers` parsing is the costliest line of a step.
_caller_id = lru_cache(maxsize=4096)(normalize_phone)

IVR_FLOW = web.AppKey("ivr_flow", object)
_NO_INPUT = Inbound()  # the entry step's input (frozen, so one instance serves every call)

Step = Callable[[CallState, Inbound], Awaitable[Reply]]


class IvrWebhook:
    def __init__(self, ctx: AppContext, guard: RequestGuard, use_cases: UseCases,
                 public_base_url: str | None = None) -> None:
        self.ctx = ctx
        self.guard = guard
        self.store = CallStateStore(ctx.kv.kv)
        self.call_log = CallLog(ctx)
        self.flow = CallFlow(ctx, use_cases, self.call_log)
        base = public_base_url.rstrip("/") if public_base_url else None
        voices = ctx.config.ivr.voices
        self.renderer = TwimlRenderer(voices, (lambda path: base + path) if base else (lambda path: path))

    # ------------------------------------------------------------------ request plumbing

    async def _form(self, request: web.Request) -> dict[str, str] | None:
        """The POST form, or None when the body is not a form at all."""
        try:
            data = await request.post()
        except web.HTTPRequestEntityTooLarge:
            raise  # answered as such by the caller: a clearer refusal than "not authentic"
        except (ValueError, UnicodeDecodeError, web.HTTPException):
            return None
        return {key: value for key, value in data.items() if isinstance(value, str)}

    def _authentic(self, request: web.Request, form: dict[str, str]) -> bool:
        return self.guard.allows(path_qs=request.path_qs, seen_url=lambda: str(request.url),
                                 remote=request.remote, headers=request.headers, params=form)

    def _twiml(self, xml: str) -> web.Response:
        return web.Response(text=xml, content_type=CONTENT_TYPE, charset="utf-8")

    def _apology(self, lang: str | None = None, *, operator: bool = False) -> str:
        """Valid TwiML that needs nothing from the database: sorry, then the operator or goodbye."""
        lang = lang or self.ctx.config.default_language
        ivr = self.ctx.config.ivr
        if operator and ivr.operator_phone:
            steps = [Say(self.ctx.t("ivr_error_operator", lang), lang),
                     Say(self.ctx.t("ivr_connecting_operator", lang), lang),
                     Dial(numbers=(ivr.operator_phone,), action=f"{PREFIX}/dial-result?s=-1",
                          timeout=ivr.dial_timeout_seconds), Hangup()]
        else:
            steps = [Say(self.ctx.t("ivr_bad_request", lang), lang), Hangup()]
        return self.renderer.render(steps)

    async def _authenticated_form(self, request: web.Request) -> dict[str, str] | web.Response:
        try:
            form = await self._form(request)
        except web.HTTPRequestEntityTooLarge:
            # No provider sends a megabyte of form fields; without the whole body the signature cannot be
            # checked either, so nothing of it is used.
            log.warning("IVR: refused %s from %s (body over the size limit)", request.path, request.remote)
            return web.Response(status=413, text="request body too large")
        if form is None:
            # Without a readable body a signature cannot be checked; a loopback caller still learns why.
            if self.guard.signed or not self._authentic(request, {}):
                return web.Response(status=403, text="forbidden")
            return self._twiml(self._apology())
        if not self._authentic(request, form):
            log.warning("IVR: refused %s from %s (bad or missing signature)", request.path, request.remote)
            return web.Response(status=403, text="forbidden")
        # Signed as sent; only then are oversized fields cut to what any step can use.
        return {key: value[:MAX_FIELD_CHARS] for key, value in form.items()}

    # ------------------------------------------------------------------ call steps

    async def voice(self, request: web.Request) -> web.Response:
        form = await self._authenticated_form(request)
        if isinstance(form, web.Response):
            return form
        sid = form.get("CallSid", "").strip()
        if not _SID.match(sid):
            return self._twiml(self._apology())
        region = self.ctx.config.default_region
        state = CallState(sid=sid, caller=_caller_id(form.get("From"), region),
                          language=self.ctx.config.default_language)

        async def first(st: CallState, _inbound: Inbound) -> Reply:
            return await self.flow.start(st, form.get("From"), form.get("To"))

        return await self._run(state, 0, _NO_INPUT, first, log_step=False, first=True)

    def _step_handler(self, kind: str) -> Callable[[web.Request], Awaitable[web.Response]]:
        async def handle(request: web.Request) -> web.Response:
            form = await self._authenticated_form(request)
            if isinstance(form, web.Response):
                return form
            sid = form.get("CallSid", "").strip()
            if not _SID.match(sid):
                return self._twiml(self._apology())
            try:
                seq = int(request.query.get("s", ""))
            except ValueError:
                seq = -1
            state = await self.store.load(sid)
            if kind == "dial" and (state is None or seq < 0):
                # The end of a transfer we made without a call state (the error path): nothing follows.
                lang = state.language if state else None
                return self._twiml(self.renderer.render([Say(self.ctx.t("ivr_goodbye", lang), lang or "ru"),
                                                         Hangup()]))
            if state is None:
                # A step of a call we know nothing about (state expired, or started elsewhere): the caller
                # is still on the line, so a person takes over.
                return self._twiml(self._apology(operator=True))
            if seq != state.seq:
                # A repeat of an answered step (or a forged step number): the same answer as last time.
                return self._twiml(state.last_reply or self._apology(state.language, operator=True))
            flow_step: Step = {
                "gather": self.flow.gather,
                "recording": self.flow.recorded,
                "dial": self.flow.dial_result,
            }[kind]
            return await self._run(state, seq, clean_inbound(form), flow_step, log_step=True)

        return handle

    async def _run(self, state: CallState, seq: int, inbound: Inbound, step: Step, *, log_step: bool,
                   first: bool = False) -> web.Response:
        # The first step only reads and logs the call idempotently (the call's row is unique), so it needs
        # no claim: of two concurrent duplicates, the one that saves its state second replays the first.
        if not first and not await self.store.claim(state.sid, seq):
            # The same step is being answered right now by another request (a duplicate delivery).
            xml = await self.store.wait_for_reply(state.sid, seq, timeout=STEP_BUDGET_SECONDS - 1)
            return self._twiml(xml or self._apology(state.language, operator=True))
        state.seq = seq + 1
        try:
            reply = await bounded(step(state, inbound), STEP_BUDGET_SECONDS)
        except Exception:
            log.exception("IVR: step %s of call %s failed at node %s", seq, state.sid, state.node)
            reply = await self._fallback(state)
        xml = self.renderer.render(reply.steps)
        state.last_reply = xml
        try:
            if first:
                if not await self.store.save_new(state):
                    existing = await self.store.load(state.sid)
                    return self._twiml(existing.last_reply if existing and existing.last_reply else xml)
            else:
                await self.store.save(state)
            if log_step or reply.outcome:
                await bounded(self.call_log.step(state.sid, reply.node if log_step else None,
                                                 outcome=reply.outcome), LOG_BUDGET_SECONDS)
        except Exception:
            # The caller still gets the answer; the log misses a line, which the log itself records.
            log.exception("IVR: could not record step %s of call %s", seq, state.sid)
        return self._twiml(xml)

    async def _fallback(self, state: CallState) -> Reply:
        try:
            return await bounded(
                self.flow.operator(state, self.flow.apology_to_operator(state), node="error>operator"),
                FALLBACK_BUDGET_SECONDS)
        except Exception:
            log.exception("IVR: operator fallback failed for call %s", state.sid)
            return Reply([Say(self.ctx.t("ivr_bad_request", state.language), state.language), Hangup()],
                         node="error", outcome="error")

    # ------------------------------------------------------------------ asynchronous callbacks

    async def status(self, request: web.Request) -> web.Response:
        form = await self._authenticated_form(request)
        if isinstance(form, web.Response):
            return form
        sid = form.get("CallSid", "").strip()
        status = form.get("CallStatus", "").strip().lower()
        if _SID.match(sid) and re.fullmatch(r"[a-z-]{2,20}", status):
            duration = form.get("CallDuration", "").strip()
            try:
                await self.call_log.close(sid, status, int(duration) if duration.isdigit() else None)
            except Exception:
                log.exception("IVR: status callback for %s not recorded", sid)
                return web.Response(status=503, text="retry later")  # Twilio retries status callbacks
        return web.Response(status=204)

    async def recording_status(self, request: web.Request) -> web.Response:
        form = await self._authenticated_form(request)
        if isinstance(form, web.Response):
            return form
        sid = form.get("CallSid", "").strip()
        url = form.get("RecordingUrl", "").strip()
        if _SID.match(sid) and url.startswith(("http://", "https://")) and \
                form.get("RecordingStatus", "completed") == "completed":
            try:
                await self.call_log.step(sid, None, recording_url=url)
            except Exception:
                log.exception("IVR: recording of %s not recorded", sid)
                return web.Response(status=503, text="retry later")
        return web.Response(status=204)


def setup(app: web.Application, ctx: AppContext, settings: Settings, *, use_cases: UseCases | None = None
          ) -> list[str]:
    """Mount the IVR webhook; returns the banner lines (where it listens, how to try it, warnings)."""
    token = settings.twilio_auth_token.get_secret_value() if settings.twilio_auth_token else None
    guard = RequestGuard(token, settings.public_base_url)
    use_cases = use_cases or UseCases.real()
    webhook = IvrWebhook(ctx, guard, use_cases, settings.public_base_url)
    app[IVR_FLOW] = webhook
    router = app.router
    router.add_post(f"{PREFIX}/voice", webhook.voice)
    router.add_post(f"{PREFIX}/gather", webhook._step_handler("gather"))
    router.add_post(f"{PREFIX}/menu", webhook._step_handler("gather"))
    router.add_post(f"{PREFIX}/recording", webhook._step_handler("recording"))
    router.add_post(f"{PREFIX}/dial-result", webhook._step_handler("dial"))
    router.add_post(f"{PREFIX}/status", webhook.status)
    router.add_post(f"{PREFIX}/recording-status", webhook.recording_status)

    base = settings.public_base_url or f"http://127.0.0.1:{settings.http_port}"
    lines = [f"  ivr      POST {base}{PREFIX}/voice  (status callback {PREFIX}/status)"]
    if guard.signed:
        lines.append("           Twilio signatures required (TWILIO_AUTH_TOKEN)")
    else:
        lines.append(f"           try: curl -d CallSid=CAtest1 -d From=+79161234567 {base}{PREFIX}/voice")
        lines.append("           or:  python main.py call --from +79161234567")
    for warning in guard.warnings():
        log.warning("IVR: %s", warning)
        lines.append(f"           warning: {warning}")
    missing = use_cases.missing()
    if missing:
        lines.append(f"           not available yet: {', '.join(missing)} (those branches offer the operator)")
    return lines
