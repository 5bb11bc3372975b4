"""Requests to people: action_open_ticket, action_ticket_status, action_connect_manager."""

from __future__ import annotations

from collections.abc import Iterable

from rasa_sdk.events import EventType, SlotSet

from actions.base import TICKET_TEXT_LIMIT, FrontOfficeAction, Reply, Turn
from actions.identity import contact_phone, explain_failure, require_client, resolve_client
from actions.render import balance_text, department_name, moment, ticket_details, ticket_line
from actions.selfservice import list_documents_answer
from actions.topics import choose_topic_buttons, known_topic
from handlers import billing, intake, tickets
from handlers.dto import ClientProfile, IntakeResult, NotFound, ServiceUnavailable, TicketSummary

MAX_LISTED_TICKETS = 5


def _confidence(turn: Turn, topic: str) -> float | None:
    """How sure the topic is: the classifier's figure, or Rasa's when its intent is the topic."""
    value = turn.raw_slot("topic_confidence")
    if isinstance(value, int | float) and not isinstance(value, bool):
        return float(value)
    intent, confidence = turn.intent
    return confidence if intent == topic else None


def _opened_text(turn: Turn, reply: Reply, ticket: TicketSummary) -> str:
    text = reply.t(
        "rasa_ticket_opened",
        number=ticket.number,
        department=department_name(turn.ctx, ticket, turn.language),
    )
    if ticket.first_response_due is not None:
        text += " " + reply.t(
            "rasa_ticket_answer_by",
            due=moment(turn.ctx, ticket.first_response_due, turn.language, ticket.department_code),
        )
    return text


async def _open(
    turn: Turn,
    reply: Reply,
    text: str,
    client: ClientProfile | None,
    phone: str | None,
    topic: str,
    urgent: bool,
    confidence: float | None,
) -> list[EventType]:
    ticket = await tickets.open_ticket(
        turn.ctx,
        channel="rasa",
        text=text[:TICKET_TEXT_LIMIT],
        language=turn.language,
        client=client,
        topic=topic,
        message_key=turn.message_key,
        urgent=urgent,
        confidence=confidence,
        contact_phone=phone,
        sender=turn.sender_id,
    )
    reply.text(_opened_text(turn, reply, ticket))
    events = [SlotSet("topic", topic), SlotSet("ticket_number", ticket.number)]
    if turn.raw_slot("kb_article_id") is not None:
        # That answer's story is over; a later question may get an article again.
        events.append(SlotSet("kb_article_id", None))
    return events


class ActionOpenTicket(FrontOfficeAction):
    """Free text first, as in the bot and the IVR: recorded, classified (or the topic Rasa already knows),
    answered automatically when we can, otherwise a ticket routed to the right department."""

    action_name = "action_open_ticket"

    async def act(self, turn: Turn, reply: Reply) -> Iterable[EventType]:
        # A form may have collected the description; otherwise the message that triggered the action.
        raw = turn.raw_slot("problem_description")
        text = raw.strip() if isinstance(raw, str) and raw.strip() else turn.text
        if not text:
            reply.say("rasa_ticket_describe")
            return []
        identity = await resolve_client(turn)
        client = identity.client
        phone = contact_phone(turn, client)
        if client is None and phone is None:
            # Nobody to answer: ask who they are (or for a number to call back) before opening anything.
            explain_failure(identity, reply)
            reply.say("rasa_ticket_need_contact")
            return []
        topic = known_topic(turn)
        if topic is not None:
            # The dialogue already knows the topic and chose this action: a ticket, no auto-answer detour.
            urgent = turn.raw_slot("urgent") is True
            return await _open(turn, reply, text, client, phone, topic, urgent, _confidence(turn, topic))
        # Free text: recorded, classified, answered automatically when possible, else routed.
        result = await intake.handle_inbound(
            turn.ctx,
            channel="rasa",
            text=text[:TICKET_TEXT_LIMIT],
            language=turn.language,
            client=client,
            sender=turn.sender_id if client is not None else (phone or turn.sender_id),
            message_key=turn.message_key,
        )
        if result.outcome == "knowledge" and result.topic and turn.raw_slot("kb_article_id") is not None:
            # The user has already had a knowledge-base answer and asked for a person: no second article.
            return await _open(
                turn, reply, text, client, phone, result.topic, result.urgent, result.confidence
            )
        return await self._render(turn, reply, result, client)

    async def _render(
        self, turn: Turn, reply: Reply, result: IntakeResult, client: ClientProfile | None
    ) -> list[EventType]:
        events: list[EventType] = [SlotSet("topic", result.topic)] if result.topic else []
        match result.outcome:
            case "ticket_opened" if result.ticket is not None:
                reply.text(_opened_text(turn, reply, result.ticket))
                events.append(SlotSet("ticket_number", result.ticket.number))
            case "ticket_appended" | "duplicate" if result.ticket is not None:
                key = (
                    "rasa_ticket_appended" if result.outcome == "ticket_appended" else "rasa_ticket_duplicate"
                )
                reply.say(key, number=result.ticket.number)
                events.append(SlotSet("ticket_number", result.ticket.number))
            case "duplicate":
                reply.say("rasa_request_received")
            case "balance" if client is not None:
                try:
                    info = await billing.get_balance(turn.ctx, client)
                    reply.text(balance_text(turn.ctx, info, turn.language))
                except ServiceUnavailable:
                    reply.say("billing_unavailable")
            case "documents" if client is not None and result.documents_query is not None:
                events += await list_documents_answer(turn, reply, client, result.documents_query)
            case "knowledge" if result.knowledge is not None:
                reply.text(f"{result.knowledge.title}\n{result.knowledge.answer}")
                reply.say(
                    "rasa_kb_not_helpful",
                    buttons=[{"title": reply.t("rasa_button_open_ticket"), "payload": "/open_ticket"}],
                )
                events.append(SlotSet("kb_article_id", result.knowledge.article_id))
            case "choose_topic":
                reply.say("rasa_choose_topic", buttons=choose_topic_buttons(turn, result.choices))
            case _:
                # needs_identification, or an auto-answer we cannot give to an unidentified user.
                reply.say("rasa_need_identification")
        return events


class ActionTicketStatus(FrontOfficeAction):
    action_name = "action_ticket_status"

    async def act(self, turn: Turn, reply: Reply) -> Iterable[EventType]:
        client = await require_client(turn, reply)
        if client is None:
            return []
        number = turn.slot("ticket_number")
        if number:
            try:
                ticket = await tickets.get_client_ticket(turn.ctx, client, number.lstrip("№#").strip())
            except NotFound:
                reply.say("rasa_ticket_not_found", number=number)
                return [SlotSet("ticket_number", None)]
            reply.text(ticket_details(turn.ctx, ticket, turn.language))
            return [SlotSet("ticket_number", ticket.number)]
        mine = await tickets.list_client_tickets(turn.ctx, client, limit=MAX_LISTED_TICKETS)
        if not mine:
            reply.say("rasa_no_tickets")
            return []
        if len(mine) == 1:
            reply.text(ticket_details(turn.ctx, mine[0], turn.language))
            return [SlotSet("ticket_number", mine[0].number)]
        lines = [reply.t("rasa_tickets_list")] + [ticket_line(turn.ctx, t, turn.language) for t in mine]
        reply.text("\n".join(lines))
        return []


class ActionConnectManager(FrontOfficeAction):
    """A call-back request: to the personal manager when the client has one, else to the operators."""

    action_name = "action_connect_manager"

    async def act(self, turn: Turn, reply: Reply) -> Iterable[EventType]:
        identity = await resolve_client(turn)
        client = identity.client
        phone = contact_phone(turn, client)
        if phone is None:
            if client is None:
                explain_failure(identity, reply)
            reply.say("rasa_callback_need_phone")
            return []
        ticket = await tickets.open_callback_request(
            turn.ctx, client, phone, turn.language, channel="rasa", message_key=turn.message_key
        )
        if client is not None and client.manager_id is not None and ticket.assignee_id == client.manager_id:
            reply.say(
                "rasa_callback_manager",
                name=client.manager_name or ticket.assignee_name or "",
                number=ticket.number,
            )
        else:
            reply.say("rasa_callback_operator", number=ticket.number)
        return [SlotSet("ticket_number", ticket.number)]
