"""The call flow: a state machine over `CallState.node`, returning abstract steps (no markup here).

Nodes: `account` → `pin` (unknown callers) → `menu` → `doc_kind` → `doc_period`, `tech` → recording,
`dial` (manager → department, or the operator) → callback request. Every gather counts silence at its node:
the prompt is repeated once, then the caller goes to the operator. Every back-end call is bounded so a step
always answers well inside the provider's 15-second limit.
"""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import Awaitable
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import Any, TypeVar

from handlers.classification.remote import classify_text
from handlers.context import AppContext
from handlers.dto import (
    BalanceInfo,
    ClientProfile,
    DocumentQuery,
    IntakeResult,
    InvalidRequest,
    NotFound,
    PermissionDenied,
    ServiceUnavailable,
    TicketSummary,
)
from ivr.calllog import CallLog
from ivr.speech import money_words, say_date, say_digits, say_time
from ivr.state import CallState
from ivr.steps import Dial, Gather, Hangup, Pause, Record, Reply, Say, Step
from ivr.usecases import Missing, UseCases

log = logging.getLogger(__name__)
T = TypeVar("T")

BILLING_TIMEOUT = 2.0  # the spec's limit for a balance look-up
USE_CASE_TIMEOUT = 6.0  # anything else; a step must answer well inside Twilio's 15 s
MAX_SPEECH_CHARS = 2000
MAX_PIN_TRIES = 3
MAX_DOCUMENTS = 20
DOCUMENTS_WAIT = 4.0
DOC_KINDS = {"1": "invoice", "2": "act", "3": "reconciliation", "4": "usage_report", "5": "contract"}
DIALED_OK = {"completed", "answered"}
MAX_CACHED_GREETINGS = 4096
# Failures a use case may signal on purpose or by being unreachable; all end in "offer the operator".
BACKEND_ERRORS = (ServiceUnavailable, Missing, TimeoutError, ConnectionError, OSError)


@dataclass(frozen=True)
class Inbound:
    """What the provider posted for this step, already cleaned."""

    digits: str = ""
    speech: str = ""
    recording_url: str | None = None
    recording_duration: int | None = None
    dial_status: str | None = None


@dataclass(frozen=True)
class Paths:
    """Our endpoints; `s` tells the next request which step it answers."""

    gather: str = "/ivr/twilio/gather"
    recording: str = "/ivr/twilio/recording"
    recording_status: str = "/ivr/twilio/recording-status"
    dial_result: str = "/ivr/twilio/dial-result"

    def at(self, path: str, seq: int) -> str:
        return f"{path}?s={seq}"


async def bounded(awaitable: Awaitable[T], seconds: float) -> T:
    # A timeout scope in this task rather than wait_for, which (Python 3.11) runs the awaitable in a task of
    # its own: a task and a timer per back-end call of every step.
    async with asyncio.timeout(seconds):
        return await awaitable


class CallFlow:
    def __init__(self, ctx: AppContext, use_cases: UseCases, call_log: CallLog | None = None,
                 paths: Paths = Paths()) -> None:
        self.ctx = ctx
        self.uc = use_cases
        self.log = call_log or CallLog(ctx)
        self.paths = paths
        self.ivr = ctx.config.ivr
        # The menu's prompts and speech hints depend only on the language (texts and menu are configuration,
        # fixed for the life of the context); every call hears them, so they are composed once per language.
        self._menu_prompts: dict[tuple[str, bool], tuple[Say, ...]] = {}
        self._hint_words: dict[str, tuple[str, ...]] = {}
        self._greetings: dict[tuple[str, str, str], Say] = {}

    # ------------------------------------------------------------------ helpers

    def t(self, state: CallState, key: str, /, **values: Any) -> str:
        return self.ctx.t(key, state.language, **values)

    def say(self, state: CallState, key: str, /, **values: Any) -> Say:
        return Say(self.t(state, key, **values), state.language)

    def _gather(self, state: CallState, prompts: list[Say | Pause], *, speech: bool = False,
                num_digits: int | None = None, finish_on_key: str | None = None, hints: bool = False) -> Gather:
        hint_words: tuple[str, ...] = ()
        if hints:
            hint_words = self._hint_words.get(state.language, ())
            if not hint_words:
                hint_words = tuple(w.strip() for w in self.t(state, "ivr_hints").split(",") if w.strip())
                self._hint_words[state.language] = hint_words
        return Gather(action=self.paths.at(self.paths.gather, state.seq), language=state.language,
                      prompts=tuple(prompts), speech=speech, num_digits=num_digits,
                      finish_on_key=finish_on_key, timeout=self.ivr.gather_timeout_seconds, hints=hint_words)

    def _goto(self, state: CallState, node: str) -> None:
        if state.node != node:
            state.silence = 0
            state.misses = 0
        state.node = node

    def _now_local(self, department: str | None = None) -> datetime:
        zone = self.ctx.config.calendar_of(department or self.ivr.operator_department).zone
        return self.ctx.clock().astimezone(zone)

    # ------------------------------------------------------------------ entry

    async def start(self, state: CallState, raw_from: str | None, raw_to: str | None) -> Reply:
        company = self.ctx.config.company.name.get(state.language)
        client: ClientProfile | None = None
        if state.caller is not None:
            try:
                client = await bounded(self.uc.identify_by_phone(self.ctx, state.caller), USE_CASE_TIMEOUT)
            except BACKEND_ERRORS as exc:
                log.warning("call %s: identification failed (%s); asking for the account", state.sid, exc)
        if client is not None:
            state.client = client
            state.language = client.language if client.language in ("ru", "en") else state.language
            await self.log.start(state.sid, client.customer_id, raw_from, raw_to, "identified_by_phone")
            return self.menu(state, [self._greeting(state, client)])
        await self.log.start(state.sid, None, raw_from, raw_to, "unknown_caller")
        self._goto(state, "account")
        prompts: list[Say | Pause] = [self.say(state, "ivr_greeting_unknown", company=company)]
        prompts += [Say(self.ctx.t("ivr_language_offer", state.language), _other(state.language)),
                    self.say(state, "ivr_ask_account")]
        return Reply([self._gather(state, prompts, finish_on_key="#")], node="account")

    def _greeting(self, state: CallState, client: ClientProfile) -> Say:
        """The known caller's greeting; kept per name, since the same clients call again and again."""
        key = (state.language, client.name, client.kind)
        said = self._greetings.get(key)
        if said is None:
            said = self.say(state, "ivr_greeting_known", name=_short_name(client),
                            company=self.ctx.config.company.name.get(state.language))
            if len(self._greetings) >= MAX_CACHED_GREETINGS:
                self._greetings.clear()
            self._greetings[key] = said
        return said

    # ------------------------------------------------------------------ the main menu

    def menu(self, state: CallState, before: list[Say | Pause] | None = None, *, again: bool = False) -> Reply:
        self._goto(state, "menu")
        prompts: list[Say | Pause] = [*(before or []), *self._menu_items(state, again)]
        return Reply([self._gather(state, prompts, speech=True, num_digits=1, hints=True)], node="menu")

    def _menu_items(self, state: CallState, again: bool) -> tuple[Say, ...]:
        cached = self._menu_prompts.get((state.language, again))
        if cached is not None:
            return cached
        prompts = [self.say(state, "ivr_menu_again" if again else "ivr_menu_intro")]
        for item in self.ivr.menu:
            label = item.label.get(state.language)
            label = label[:1].upper() + label[1:] if state.language == "ru" else label
            prompts.append(self.say(state, "ivr_menu_item", label=label, key=item.key))
        prompts.append(self.say(state, "ivr_menu_repeat_hint"))
        self._menu_prompts[(state.language, again)] = cached = tuple(prompts)
        return cached

    async def gather(self, state: CallState, inbound: Inbound) -> Reply:
        """A Gather's result (or silence) for whatever node the call is at."""
        handler = {
            "account": self._on_account,
            "pin": self._on_pin,
            "menu": self._on_menu,
            "doc_kind": self._on_doc_kind,
            "doc_period": self._on_doc_period,
            "tech": self._on_tech,
        }.get(state.node)
        if handler is None:
            # A gather answer for a node that no longer collects input (e.g. a stale tab of a finished
            # call): carry on with the menu rather than fail.
            return self.menu(state) if state.client else await self.operator(state, [])
        if not inbound.digits and not inbound.speech:
            return await self._on_silence(state)
        return await handler(state, inbound)

    async def _on_silence(self, state: CallState) -> Reply:
        state.silence += 1
        if state.silence >= 2:
            # Silence after a finished task is a caller who is done, not one who needs help.
            if state.node == "menu" and state.extra.get("served"):
                return Reply([self.say(state, "ivr_goodbye"), Hangup()], node="silent_goodbye")
            return await self.operator(state, [self.say(state, "ivr_no_input")])
        return self._repeat(state, [self.say(state, "ivr_no_input")])

    def _repeat(self, state: CallState, before: list[Say | Pause]) -> Reply:
        node = state.node
        silence, misses = state.silence, state.misses
        if node == "account":
            reply = Reply([self._gather(state, [*before, self.say(state, "ivr_ask_account")], finish_on_key="#")])
        elif node == "pin":
            reply = Reply([self._gather(state, [*before, self.say(state, "ivr_ask_pin")], finish_on_key="#")])
        elif node == "doc_kind":
            reply = self._ask_doc_kind(state, before)
        elif node == "doc_period":
            reply = self._ask_doc_period(state, before)
        elif node == "tech":
            reply = self._ask_tech(state, before)
        else:
            reply = self.menu(state, before, again=bool(state.extra.get("served")))
        state.silence, state.misses = silence, misses
        reply.node = f"{node}:repeat"
        return reply

    async def _miss(self, state: CallState, key: str) -> Reply:
        """An answer we cannot use: say so and ask again; the third in a row goes to the operator."""
        state.misses += 1
        if state.misses >= 3:
            return await self.operator(state, [self.say(state, key)])
        return self._repeat(state, [self.say(state, key)])

    async def _on_menu(self, state: CallState, inbound: Inbound) -> Reply:
        if inbound.digits:
            key = inbound.digits[0]
            if key == "*":
                return self._repeat(state, [])
            item = next((i for i in self.ivr.menu if i.key == key), None)
            if item is None:
                return await self._miss(state, "ivr_invalid_choice")
            return await self.run_action(state, item.action)
        return await self._on_menu_speech(state, inbound.speech)

    async def run_action(self, state: CallState, action: str) -> Reply:
        state.silence = state.misses = 0
        if action == "operator":
            return await self.operator(state, [])
        if state.client is None:
            self._goto(state, "account")
            return Reply([self._gather(state, [self.say(state, "ivr_identify_first"),
                                               self.say(state, "ivr_ask_account")], finish_on_key="#")],
                         node="account")
        if action == "balance":
            return await self.balance(state)
        if action == "documents":
            self._goto(state, "doc_kind")
            return self._ask_doc_kind(state, [])
        if action == "technical_problem":
            self._goto(state, "tech")
            return self._ask_tech(state, [])
        if action == "manager":
            return await self.manager(state)
        return await self.operator(state, [])

    async def _on_menu_speech(self, state: CallState, speech: str) -> Reply:
        if _mentions(speech, self.t(state, "ivr_transfer_words")):
            return await self.run_action(state, "manager" if state.client and state.client.manager_id
                                         else "operator")
        if state.client is None:
            return await self.run_action(state, "balance")  # asks for identification first
        try:
            result: IntakeResult = await bounded(self.uc.handle_inbound(
                self.ctx, channel="ivr", text=speech, language=state.language, client=state.client,
                sender=state.caller or state.sid, message_key=f"ivr:{state.sid}:{state.seq}"), USE_CASE_TIMEOUT)
        except BACKEND_ERRORS as exc:
            log.warning("call %s: intake failed: %r", state.sid, exc)
            return await self._miss(state, "ivr_not_understood")
        outcome = result.outcome
        if outcome == "balance":
            return await self.balance(state)
        if outcome == "documents":
            query = result.documents_query
            if query is not None and query.complete:
                return await self.send_documents(state, query)
            kind = query.kinds[0] if query is not None and len(query.kinds) == 1 else None
            if kind is not None:
                state.doc_kind = kind
                self._goto(state, "doc_period")
                return self._ask_doc_period(state, [])
            self._goto(state, "doc_kind")
            return self._ask_doc_kind(state, [])
        if outcome in ("ticket_opened", "ticket_appended") and result.ticket is not None:
            key = "ivr_ticket_opened" if outcome == "ticket_opened" else "ivr_ticket_appended"
            return self._served(state, [self.say(state, key, number=say_digits(result.ticket.number,
                                                                                    state.language))],
                                node=f"speech:{result.topic or outcome}", outcome=outcome)
        if outcome == "knowledge" and result.knowledge is not None:
            return self._served(state, [Say(_plain(result.knowledge.answer), state.language)],
                                node="speech:knowledge", outcome="knowledge_answer")
        if outcome == "needs_identification":
            return await self.run_action(state, "balance")
        if outcome == "duplicate":
            return self._repeat(state, [])
        return await self._miss(state, "ivr_not_understood")

    def _served(self, state: CallState, said: list[Say | Pause], *, node: str, outcome: str | None) -> Reply:
        """A task is done: say the result and offer the menu again."""
        state.extra["served"] = True
        reply = self.menu(state, [*said, Pause(1)], again=True)
        reply.node, reply.outcome = node, outcome
        return reply

    # ------------------------------------------------------------------ identification by account and PIN

    async def _on_account(self, state: CallState, inbound: Inbound) -> Reply:
        digits = inbound.digits.strip("#")
        if digits == "*":
            state.language = _other(state.language)
            return self._repeat(state, [])
        if digits == "0":
            return await self.operator(state, [])  # callers expect 0 to reach a person anywhere
        if not digits.isdigit() or not 3 <= len(digits) <= 20:
            return await self._miss(state, "ivr_invalid_choice")
        state.account_number = digits
        self._goto(state, "pin")
        return Reply([self._gather(state, [self.say(state, "ivr_ask_pin")], finish_on_key="#")], node="pin")

    async def _on_pin(self, state: CallState, inbound: Inbound) -> Reply:
        pin = inbound.digits.strip("#")
        try:
            check = await bounded(self.uc.identify_by_account_pin(self.ctx, state.account_number or "", pin),
                                  USE_CASE_TIMEOUT)
        except BACKEND_ERRORS as exc:
            log.warning("call %s: PIN check failed: %r", state.sid, exc)
            return await self.operator(state, [self.say(state, "ivr_error_operator")])
        except (InvalidRequest, NotFound):
            check = None
        if check is not None and check.ok and check.client is not None:
            client: ClientProfile = check.client
            state.client = client
            state.account_number = None
            await self.log.step(state.sid, None, customer_id=client.customer_id)
            reply = self.menu(state, [self.say(state, "ivr_identified", name=_short_name(client))])
            reply.node = "identified_by_pin"
            return reply
        state.pin_tries += 1
        left = MAX_PIN_TRIES - state.pin_tries
        if check is not None and (check.locked_until is not None):
            left = 0
        elif check is not None and check.client is not None:
            left = min(left, check.attempts_left)
        if left <= 0:
            return await self.operator(state, [self.say(state, "ivr_pin_locked")], node="pin_failed")
        self._goto(state, "account")
        return Reply([self._gather(state, [self.say(state, "ivr_pin_wrong", left=left),
                                           self.say(state, "ivr_ask_account")], finish_on_key="#")],
                     node="pin_wrong")

    # ------------------------------------------------------------------ balance

    async def balance(self, state: CallState) -> Reply:
        assert state.client is not None
        try:
            info: BalanceInfo = await bounded(self.uc.get_balance(self.ctx, state.client), BILLING_TIMEOUT)
        except (*BACKEND_ERRORS, NotFound, PermissionDenied, InvalidRequest) as exc:
            log.warning("call %s: balance unavailable: %r", state.sid, exc)
            reply = self.menu(state, [Say(self.ctx.t("billing_unavailable", state.language), state.language),
                                      self.say(state, "ivr_offer_operator")])
            reply.node, reply.outcome = "balance:unavailable", "billing_unavailable"
            return reply
        return self._served(state, self.say_balance(state, info), node="balance", outcome="balance")

    def say_balance(self, state: CallState, info: BalanceInfo) -> list[Say | Pause]:
        lang = state.language
        today = self._now_local().date()
        said: list[Say | Pause] = [self.say(state, "ivr_balance", account=say_digits(info.account_number, lang),
                                            amount=money_words(info.balance, info.currency, lang))]
        if info.last_payments:
            last = max(info.last_payments, key=lambda p: p.paid_at)
            paid_on = last.paid_at.astimezone(self._now_local().tzinfo).date()
            said.append(self.say(state, "ivr_last_payment", amount=money_words(last.amount, last.currency, lang),
                                 date=say_date(paid_on, lang, today)))
        else:
            said.append(self.say(state, "ivr_no_payments"))
        if info.paid_until is not None:
            said.append(self.say(state, "ivr_paid_until", date=say_date(info.paid_until, lang, today)))
        if info.status == "paused":
            said.append(self.say(state, "ivr_status_paused"))
        elif info.status == "terminated":
            said.append(self.say(state, "ivr_status_terminated"))
        return said

    # ------------------------------------------------------------------ documents

    def _ask_doc_kind(self, state: CallState, before: list[Say | Pause]) -> Reply:
        return Reply([self._gather(state, [*before, self.say(state, "ivr_doc_kind_prompt")], num_digits=1)],
                     node="documents")

    def _ask_doc_period(self, state: CallState, before: list[Say | Pause]) -> Reply:
        return Reply([self._gather(state, [*before, self.say(state, "ivr_doc_period_prompt")], num_digits=1)],
                     node=f"documents:{state.doc_kind}")

    async def _on_doc_kind(self, state: CallState, inbound: Inbound) -> Reply:
        kind = DOC_KINDS.get(inbound.digits[:1])
        if kind is None:
            return await self._miss(state, "ivr_invalid_choice")
        state.doc_kind = kind
        if kind == "contract":
            return await self.send_documents(state, DocumentQuery(kinds=("contract",)))
        self._goto(state, "doc_period")
        return self._ask_doc_period(state, [])

    async def _on_doc_period(self, state: CallState, inbound: Inbound) -> Reply:
        period = period_for_key(inbound.digits[:1], self._now_local().date())
        if period is None or state.doc_kind is None:
            return await self._miss(state, "ivr_invalid_choice")
        return await self.send_documents(state, DocumentQuery(kinds=(state.doc_kind,), period_start=period[0],
                                                              period_end=period[1]))

    async def send_documents(self, state: CallState, query: DocumentQuery) -> Reply:
        assert state.client is not None
        node = f"documents:{'+'.join(query.kinds)}"
        try:
            found = await bounded(self.uc.list_documents(self.ctx, state.client, query), USE_CASE_TIMEOUT)
            if not found:
                return self._served(state, [self.say(state, "ivr_doc_none")], node=node, outcome="documents_none")
            # Only what the client asked for, and only to a contact they registered (the use case checks).
            # The newest ones when a period holds many: a phone menu cannot ask which of fifty were meant.
            ids = [d.id for d in found][:MAX_DOCUMENTS]
            # Preparing files (PDFs) may outlast what a caller should wait in silence: the sending goes on
            # in the background and the caller hears that it is under way.
            sending = asyncio.ensure_future(self.uc.send_documents(self.ctx, state.client, ids, via="auto"))
            _BACKGROUND.add(sending)
            sending.add_done_callback(_finished_in_background)
            try:
                via = await asyncio.wait_for(asyncio.shield(sending), DOCUMENTS_WAIT)
            except TimeoutError:
                return self._served(state, [self.say(state, "ivr_doc_sending")], node=node,
                                    outcome="documents_sending")
        except InvalidRequest:
            return self._served(state, [self.say(state, "ivr_doc_no_contact")], node=node,
                                outcome="documents_no_contact")
        except (*BACKEND_ERRORS, NotFound, PermissionDenied) as exc:
            log.warning("call %s: documents failed: %r", state.sid, exc)
            return self._served(state, [self.say(state, "ivr_doc_failed")], node=node, outcome="documents_failed")
        key = "ivr_doc_sent_telegram" if via == "telegram" else "ivr_doc_sent_email"
        return self._served(state, [self.say(state, key)], node=node, outcome=f"documents_sent:{via}")

    # ------------------------------------------------------------------ technical problem

    def _ask_tech(self, state: CallState, before: list[Say | Pause]) -> Reply:
        return Reply([self._gather(state, [*before, self.say(state, "ivr_tech_prompt")], speech=True,
                                   num_digits=1)], node="technical_problem")

    async def _on_tech(self, state: CallState, inbound: Inbound) -> Reply:
        if inbound.speech:
            return await self._open_problem_ticket(state, inbound.speech, None)
        if inbound.digits[:1] == "1":
            self._goto(state, "record")
            return Reply([self.say(state, "ivr_record_prompt"),
                          Record(action=self.paths.at(self.paths.recording, state.seq),
                                 status_callback=self.paths.recording_status,
                                 max_length=self.ivr.record_max_seconds)], node="voicemail")
        return await self._miss(state, "ivr_invalid_choice")

    async def recorded(self, state: CallState, inbound: Inbound) -> Reply:
        """The Record verb finished: a voice message becomes a ticket with the recording attached."""
        if not inbound.recording_url or (inbound.recording_duration is not None and inbound.recording_duration < 1):
            self._goto(state, "tech")
            return self._ask_tech(state, [self.say(state, "ivr_record_empty")])
        await self.log.step(state.sid, None, recording_url=inbound.recording_url)
        return await self._open_problem_ticket(state, "", inbound.recording_url)

    async def _open_problem_ticket(self, state: CallState, transcript: str, recording_url: str | None) -> Reply:
        assert state.client is not None
        attachments = []
        if recording_url and self.uc.attachment is not None:
            attachments.append(self.uc.attachment(kind="recording", ref=recording_url))
        try:
            ticket: TicketSummary = await bounded(self.uc.open_ticket(
                self.ctx, channel="ivr", text=transcript, language=state.language, client=state.client,
                topic=await self._problem_topic(transcript), message_key=f"ivr:{state.sid}:{state.seq}",
                attachments=attachments, contact_phone=state.caller, sender=state.caller,
                # The call log is this call's interaction; the ticket needs no second one.
                record_interaction=False), USE_CASE_TIMEOUT)
        except (*BACKEND_ERRORS, InvalidRequest, NotFound, PermissionDenied) as exc:
            log.warning("call %s: ticket not opened: %r", state.sid, exc)
            return await self.operator(state, [self.say(state, "ivr_ticket_failed")])
        said = [self.say(state, "ivr_ticket_opened", number=say_digits(ticket.number, state.language))]
        return self._served(state, said, node="ticket:voicemail" if recording_url else "ticket:speech",
                            outcome="ticket_opened")

    async def _problem_topic(self, transcript: str) -> str:
        """The classifier's best technical topic for the transcript, else 'no_connection' (line down)."""
        topics = self.ctx.config.topics
        fallback = "no_connection" if "no_connection" in topics else self.ctx.config.out_of_scope_topic
        technical = {code for code, topic in topics.items() if topic.department in ("tech_support", "field_service")}
        classifier = self.ctx.classifier
        if not transcript or classifier is None:
            return fallback
        try:
            result = await bounded(classify_text(self.ctx, transcript[:MAX_SPEECH_CHARS], k=3), USE_CASE_TIMEOUT)
        except Exception as exc:  # the classifier only refines the topic here; the ticket opens regardless
            log.warning("classifier unavailable for an IVR transcript (%r); topic %s", exc, fallback)
            return fallback
        ranked = [getattr(result, "topic", None)] + [s.topic for s in getattr(result, "ranking", ())]
        return next((topic for topic in ranked if topic in technical), fallback)

    # ------------------------------------------------------------------ transfers

    async def manager(self, state: CallState) -> Reply:
        client = state.client
        if client is None or client.manager_id is None:
            return await self.operator(state, [])
        try:
            manager = await bounded(self.log.staff_phone(client.manager_id), USE_CASE_TIMEOUT)
        except BACKEND_ERRORS:
            manager = None
        if manager is None:
            return await self.operator(state, [])
        state.extra["dial_department"] = manager.department_code
        state.extra["dial_name"] = manager.name
        if await self._is_open(manager.department_code):
            if manager.phone:
                return self._dial(state, "manager", manager.phone,
                                  [self.say(state, "ivr_connecting_manager", name=manager.name)])
            dept_phone = self.ctx.config.department(manager.department_code).phone
            if dept_phone:
                return self._dial_department(state, manager.department_code, dept_phone)
        return await self.callback(state, manager.department_code, [])

    async def operator(self, state: CallState, before: list[Say | Pause], *, node: str = "operator") -> Reply:
        code = self.ivr.operator_department
        phone = self.ivr.operator_phone or self.ctx.config.department(code).phone
        state.extra["dial_department"] = code
        if phone and await self._is_open(code):
            reply = self._dial(state, "operator", phone, [*before, self.say(state, "ivr_connecting_operator")])
            reply.node = node if node != "operator" else "dial:operator"
            return reply
        reply = await self.callback(state, code, before)
        if node != "operator":
            reply.node = node
        return reply

    async def _is_open(self, code: str) -> bool:
        try:
            return bool(await bounded(self.uc.department_is_open(self.ctx, code, self.ctx.clock()),
                                      USE_CASE_TIMEOUT))
        except BACKEND_ERRORS:
            # Without the calendar we still try to connect: a human who may answer beats a certain no.
            return True

    def _dial(self, state: CallState, leg: str, number: str, before: list[Say | Pause]) -> Reply:
        self._goto(state, "dial")
        state.dial_leg = leg
        steps: list[Step] = [*before, Dial(numbers=(number,), action=self.paths.at(self.paths.dial_result, state.seq),
                                           timeout=self.ivr.dial_timeout_seconds)]
        return Reply(steps, node=f"dial:{leg}", outcome="transfer")

    def _dial_department(self, state: CallState, code: str, phone: str) -> Reply:
        name = self.ctx.config.department(code).name.get(state.language)
        return self._dial(state, "department", phone, [self.say(state, "ivr_connecting_department",
                                                                department=name)])

    async def dial_result(self, state: CallState, inbound: Inbound) -> Reply:
        status = (inbound.dial_status or "").lower()
        leg = state.dial_leg or "operator"
        if status in DIALED_OK:
            return Reply([self.say(state, "ivr_goodbye"), Hangup()], node=f"dial:{leg}:answered",
                         outcome=f"connected:{leg}")
        code = state.extra.get("dial_department") or self.ivr.operator_department
        if leg == "manager":
            dept_phone = self.ctx.config.department(code).phone
            if dept_phone and await self._is_open(code):
                reply = self._dial_department(state, code, dept_phone)
                reply.node = f"dial:manager:{status or 'failed'}>department"
                return reply
        reply = await self.callback(state, code, [])
        reply.node = f"dial:{leg}:{status or 'failed'}>callback"
        return reply

    async def callback(self, state: CallState, department: str, before: list[Say | Pause]) -> Reply:
        """Nobody can take the call: a callback ticket (assigned to the manager by the use case) and when."""
        try:
            ticket: TicketSummary = await bounded(self.uc.open_callback_request(
                self.ctx, state.client, state.caller or "", state.language, channel="ivr",
                message_key=f"ivr:{state.sid}:callback"), USE_CASE_TIMEOUT)
        except (*BACKEND_ERRORS, InvalidRequest, NotFound, PermissionDenied) as exc:
            log.warning("call %s: callback request failed: %r", state.sid, exc)
            return Reply([*before, self.say(state, "ivr_callback_failed"), Hangup()], node="callback:failed",
                         outcome="callback_failed")
        when = await self._when(state, ticket.department_code or department)
        said = [*before, self.say(state, "ivr_callback_taken", number=say_digits(ticket.number, state.language),
                                  when=when), self.say(state, "ivr_goodbye"), Hangup()]
        self._goto(state, "done")
        return Reply(said, node="callback", outcome="callback_requested")

    async def _when(self, state: CallState, department: str) -> str:
        now = self.ctx.clock()
        try:
            if await bounded(self.uc.department_is_open(self.ctx, department, now), USE_CASE_TIMEOUT):
                return self.t(state, "ivr_when_soon")
            opening: datetime | None = await bounded(self.uc.next_opening(self.ctx, department, now),
                                                     USE_CASE_TIMEOUT)
        except (*BACKEND_ERRORS, KeyError):
            return self.t(state, "ivr_when_soon")
        if opening is None:
            return self.t(state, "ivr_when_soon")
        local = opening.astimezone(self._now_local(department).tzinfo)
        today = self._now_local(department).date()
        return self.t(state, "ivr_when_at", date=say_date(local.date(), state.language, today),
                      time=say_time(local, state.language))

    def apology_to_operator(self, state: CallState) -> list[Say | Pause]:
        return [self.say(state, "ivr_error_operator")]


# Sendings that outlive their step; referenced here so they are not garbage-collected mid-way.
_BACKGROUND: set[asyncio.Future[Any]] = set()


def _finished_in_background(task: asyncio.Future[Any]) -> None:
    _BACKGROUND.discard(task)
    if not task.cancelled() and task.exception() is not None:
        log.error("IVR: background sending of documents failed: %r", task.exception())


# ---------------------------------------------------------------------- pure helpers


def period_for_key(key: str, today: date) -> tuple[date, date] | None:
    """Keypad choice -> period: 1 last month, 2 this month, 3 last quarter, 4 this year."""
    if key == "1":
        end = today.replace(day=1) - timedelta(days=1)
        return end.replace(day=1), end
    if key == "2":
        return today.replace(day=1), today
    if key == "3":
        quarter_start = date(today.year, 3 * ((today.month - 1) // 3) + 1, 1)
        end = quarter_start - timedelta(days=1)
        return date(end.year, 3 * ((end.month - 1) // 3) + 1, 1), end
    if key == "4":
        return date(today.year, 1, 1), today
    return None


def _other(lang: str) -> str:
    return "ru" if lang == "en" else "en"


def _short_name(client: ClientProfile) -> str:
    """'Иванов Иван Иванович' -> 'Иван Иванович' (how a person is addressed); companies by full name."""
    parts = client.name.split()
    if client.kind == "person" and len(parts) == 3:
        return f"{parts[1]} {parts[2]}"
    return client.name


_WORD = re.compile(r"\w+", re.UNICODE)
_CYRILLIC = re.compile(r"[а-яё]")


def _mentions(speech: str, words_csv: str) -> bool:
    spoken = " ".join(_WORD.findall(speech.lower()))
    for phrase in (w.strip().lower() for w in words_csv.split(",")):
        if not phrase:
            continue
        if _CYRILLIC.search(phrase):
            # Russian words change their endings ("оператором", "менеджеру"): match the stem.
            pattern = r"\b" + re.escape(phrase[: max(5, len(phrase) - 2)])
        else:
            pattern = r"\b" + re.escape(phrase) + r"\b"
        if re.search(pattern, spoken):
            return True
    return False


_TAGS = re.compile(r"<[^>]+>")


def _plain(text: str, limit: int = 700) -> str:
    """Knowledge answers are written for chat; strip markup and keep them short enough to listen to."""
    text = _TAGS.sub("", text).replace("*", "").replace("_", " ")
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: text.rfind(" ", 0, limit)] + "…"


def clean_inbound(form: dict[str, str]) -> Inbound:
    digits = "".join(ch for ch in (form.get("Digits") or "")[:32] if ch.isdigit() or ch in "*#")
    speech = " ".join((form.get("SpeechResult") or "").split())[:MAX_SPEECH_CHARS]
    duration = form.get("RecordingDuration")
    return Inbound(
        digits=digits,
        speech=speech,
        recording_url=(form.get("RecordingUrl") or "").strip()[:1000] or None,
        recording_duration=int(duration) if duration and duration.strip().lstrip("-").isdigit() else None,
        dial_status=(form.get("DialCallStatus") or "").strip()[:20] or None,
    )

