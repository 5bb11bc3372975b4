""""Free text first": one use case for every inbound message, whatever the channel.

Records the contact, classifies it, and decides: answer automatically (balance, documents, a knowledge-base
article), ask the client to pick a topic, add it to the client's open ticket, or open a ticket. Idempotent
on `message_key` (Telegram update id, webhook step, Rasa event): a redelivery returns "duplicate" with what
the first delivery did, and never makes a second ticket.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy.exc import IntegrityError

from config.business import LANGUAGES
from handlers.classification.remote import classify_text
from handlers.context import AppContext
from handlers.dto import (
    Attachment,
    ClientProfile,
    DocumentQuery,
    IntakeResult,
    KnowledgeAnswer,
    TopicChoice,
)
from handlers.tickets.common import database_errors_as_unavailable, departments, summarize
from handlers.tickets.group_open import FollowUp, Opening, grouped_opener
from handlers.tickets.lifecycle import _record_client_message
from handlers.tickets.open import NewTicket, create_ticket, new_interaction
from handlers.tickets.queries import summaries

log = logging.getLogger(__name__)
# Classifying more than this adds cost, not accuracy; the ticket keeps the full text anyway.
CLASSIFY_CHARS = 2000
# A knowledge-base answer is offered only above this score (0..1).
KNOWLEDGE_MIN_SCORE = 0.5
MIN_CHOICES = 3


@dataclass(frozen=True)
class _Verdict:
    topic: str | None
    confidence: float | None
    urgent: bool
    choices: tuple[TopicChoice, ...]


@database_errors_as_unavailable
async def handle_inbound(
    ctx: AppContext,
    *,
    channel: str,
    text: str,
    language: str,
    client: ClientProfile | None,
    sender: str | None = None,
    message_key: str | None = None,
    attachments: Sequence[Attachment] = (),
    forced_topic: str | None = None,
) -> IntakeResult:
    language = language if language in LANGUAGES else (client.language if client else ctx.config.default_language)
    text = text or ""
    # A redelivery is recognised inside the transaction that would record it (one query, no extra
    # transaction), and the unique message key catches the concurrent case.
    verdict = await _classify(ctx, text, language, forced_topic)
    request = NewTicket(channel=channel, text=text, language=language, client=client, topic=verdict.topic or "",
                        message_key=message_key, urgent=verdict.urgent, confidence=verdict.confidence,
                        attachments=tuple(attachments), sender=sender,
                        contact_phone=sender if channel == "ivr" and client is None else None)
    try:
        return await _decide(ctx, request, verdict, forced_topic)
    except IntegrityError:
        # The same message was handled concurrently (unique message key): report what that did.
        if message_key and (earlier := await _earlier(ctx, message_key)) is not None:
            return earlier
        raise


async def _decide(ctx: AppContext, request: NewTicket, verdict: _Verdict, forced_topic: str | None) -> IntakeResult:
    client, text = request.client, request.text
    if not text.strip() and request.attachments and client is not None:
        return await _append_to_active(ctx, request, verdict)
    if verdict.topic is None:
        return await _record(ctx, request, "choose_topic", verdict, choices=verdict.choices)
    topic = ctx.config.topics[verdict.topic]
    if topic.auto_answer in ("balance", "documents"):
        if client is None:
            return await _record(ctx, request, "needs_identification", verdict)
        if topic.auto_answer == "balance":
            return await _record(ctx, request, "balance", verdict)
        query = _document_query(ctx, text, request.language)
        return await _record(ctx, request, "documents", verdict, documents_query=query)
    if forced_topic is None and not verdict.urgent:
        answer = await _knowledge(ctx, text, request.language, verdict.topic)
        if answer is not None:
            return await _record(ctx, request, "knowledge", verdict, knowledge=answer)
    return await _ticket(ctx, request, verdict)


# ------------------------------------------------------------------ classification


async def _classify(ctx: AppContext, text: str, language: str, forced_topic: str | None) -> _Verdict:
    topics = ctx.config.topics
    result: Any = None
    if ctx.classifier is not None and text.strip():
        try:
            # Rasa NLU first when RASA_URL is set, the built-in engine otherwise or as the fallback.
            result = await classify_text(ctx, text[:CLASSIFY_CHARS], k=3)
        except Exception:
            # An unavailable classifier makes us unsure, never unhelpful: the client picks the topic.
            log.exception("classifier failed; offering topics instead")
            result = None
    urgent = bool(getattr(result, "urgent", False))
    if forced_topic is not None:
        if forced_topic in topics:
            return _Verdict(forced_topic, 1.0, urgent, ())
        log.warning("unknown forced topic %r (stale or forged button)", forced_topic)
    elif result is not None and not getattr(result, "rejected", False) and getattr(result, "topic", None) in topics:
        confidence = getattr(result, "confidence", None)
        return _Verdict(result.topic, float(confidence) if confidence is not None else None, urgent, ())
    return _Verdict(None, _confidence(result), urgent, _choices(ctx, result, language))


def _confidence(result: Any) -> float | None:
    value = getattr(result, "confidence", None)
    return float(value) if isinstance(value, int | float) else None


def _choices(ctx: AppContext, result: Any, language: str) -> tuple[TopicChoice, ...]:
    """The classifier's best guesses, padded with common topics, and always "Other" last."""
    topics = ctx.config.topics
    other = ctx.config.out_of_scope_topic
    chosen: list[TopicChoice] = []
    for item in list(getattr(result, "ranking", None) or [])[:3]:
        code = getattr(item, "topic", None)
        if code in topics and code != other and all(c.topic != code for c in chosen):
            chosen.append(TopicChoice(code, topics[code].title.get(language),
                                      float(getattr(item, "confidence", 0.0) or 0.0)))
    for code, topic in topics.items():
        if len(chosen) >= MIN_CHOICES:
            break
        if code != other and all(c.topic != code for c in chosen):
            chosen.append(TopicChoice(code, topic.title.get(language), 0.0))
    chosen.append(TopicChoice(other, topics[other].title.get(language), 0.0))
    return tuple(chosen)


def _document_query(ctx: AppContext, text: str, language: str) -> DocumentQuery:
    try:
        from handlers.documents import parse_document_request
    except ImportError:
        return DocumentQuery()
    zone = next(iter(ctx.config.calendars.values())).zone
    try:
        return parse_document_request(text, language, ctx.clock().astimezone(zone).date())
    except Exception:
        log.exception("document request parsing failed; the adapter will ask")
        return DocumentQuery()


async def _knowledge(ctx: AppContext, text: str, language: str, topic: str) -> KnowledgeAnswer | None:
    knowledge = ctx.extras.get("knowledge")
    if knowledge is None or not text.strip():
        return None
    try:
        answer = await knowledge.search(text[:CLASSIFY_CHARS], language, topic)
    except Exception:
        log.exception("knowledge search failed; going on without it")
        return None
    if isinstance(answer, KnowledgeAnswer) and answer.score >= KNOWLEDGE_MIN_SCORE:
        return answer
    return None


# ------------------------------------------------------------------ outcomes


async def _record(ctx: AppContext, request: NewTicket, outcome: str, verdict: _Verdict, **fields: Any) -> IntakeResult:
    now = ctx.clock()
    async with ctx.uow() as uow:
        if (earlier := await _earlier_in(ctx, uow, request.message_key)) is not None:
            return earlier
        interaction = new_interaction(request, now, outcome, topic=verdict.topic)
        interaction.topic = verdict.topic
        uow.interactions.add(interaction)
        await uow.session.flush()
        await uow.commit()
    return IntakeResult(outcome=outcome, interaction_id=interaction.id, topic=verdict.topic,  # type: ignore[arg-type]
                        confidence=verdict.confidence, urgent=verdict.urgent, **fields)


async def _ticket(ctx: AppContext, request: NewTicket, verdict: _Verdict) -> IntakeResult:
    opener = await grouped_opener(ctx)
    if opener is None:
        return await _ticket_portable(ctx, request, verdict)
    # PostgreSQL: the follow-up and duplicate checks, routing and the writes happen in the opener's shared
    # read and write (handlers.tickets.group_open); a repeated message fails with IntegrityError as below.
    now = ctx.clock()
    outcome = await opener.open(Opening(request, now, check_follow_up=request.client is not None,
                                        record_interaction=True, interaction_key=request.message_key))
    if isinstance(outcome, FollowUp):
        async with ctx.uow() as uow:
            return await _append(ctx, uow, request, verdict, outcome.ticket_id, now)
    return IntakeResult(outcome="ticket_opened", interaction_id=outcome.interaction_id, topic=request.topic,
                        confidence=verdict.confidence, urgent=verdict.urgent, ticket=outcome.summary)


async def _ticket_portable(ctx: AppContext, request: NewTicket, verdict: _Verdict) -> IntakeResult:
    client = request.client
    now = ctx.clock()
    async with ctx.uow() as uow:
        # No separate duplicate check on this hot path: the unique message key on the interaction fails a
        # repeated message's transaction, and handle_inbound then reports what the first delivery did.
        if client is not None:
            since = now - ctx.config.tickets.follow_up_window
            follow_up = await uow.tickets.open_follow_up(client.customer_id, request.topic, since)
            if follow_up is not None:
                return await _append(ctx, uow, request, verdict, follow_up.id, now)
        interaction = new_interaction(request, now, "ticket_opened")
        ticket, assignee_name, depts = await create_ticket(ctx, uow, request, now, interaction)
        await uow.commit()
    await ctx.wake_dispatcher()
    summary = summarize(ctx, depts, ticket, assignee_name=assignee_name, customer_name=client.name if client else None)
    return IntakeResult(outcome="ticket_opened", interaction_id=interaction.id, topic=request.topic,
                        confidence=verdict.confidence, urgent=verdict.urgent, ticket=summary)


async def _append_to_active(ctx: AppContext, request: NewTicket, verdict: _Verdict) -> IntakeResult:
    """Files without words from a client with a current ticket belong to that ticket."""
    assert request.client is not None
    now = ctx.clock()
    async with ctx.uow() as uow:
        if (earlier := await _earlier_in(ctx, uow, request.message_key)) is not None:
            return earlier
        active = await uow.tickets.latest_active(request.client.customer_id)
        if active is not None:
            return await _append(ctx, uow, request, verdict, active.id, now)
    return await _record(ctx, request, "choose_topic", verdict, choices=verdict.choices)


async def _append(ctx: AppContext, uow: Any, request: NewTicket, verdict: _Verdict, ticket_id: int,
                  now: datetime) -> IntakeResult:
    ticket = await uow.tickets.get(ticket_id, for_update=True)
    depts = await departments(ctx, uow)
    await _record_client_message(ctx, uow, depts, ticket, request.text, request.attachments, now)
    interaction = new_interaction(request, now, "ticket_appended", topic=ticket.topic)
    interaction.ticket_id = ticket.id
    uow.interactions.add(interaction)
    await uow.session.flush()
    await uow.commit()
    summary = (await summaries(ctx, uow, [ticket.id]))[0]
    await ctx.wake_dispatcher()
    return IntakeResult(outcome="ticket_appended", interaction_id=interaction.id, topic=ticket.topic,
                        confidence=verdict.confidence, urgent=verdict.urgent, ticket=summary)


async def _earlier(ctx: AppContext, message_key: str) -> IntakeResult | None:
    async with ctx.uow() as uow:
        return await _earlier_in(ctx, uow, message_key)


async def _earlier_in(ctx: AppContext, uow: Any, message_key: str | None) -> IntakeResult | None:
    """What the first delivery of this message did, or None when this is the first."""
    if not message_key:
        return None
    interaction = await uow.interactions.by_external_id(message_key)
    if interaction is None:
        return None
    ticket = (await summaries(ctx, uow, [interaction.ticket_id]))[0] if interaction.ticket_id else None
    return IntakeResult(outcome="duplicate", interaction_id=interaction.id, topic=interaction.topic,
                        confidence=interaction.confidence, ticket=ticket,
                        extra={"original_outcome": interaction.outcome or ""})
