"""Balance and documents: action_check_balance, action_list_documents, action_send_documents."""

from __future__ import annotations

import re
from collections.abc import Iterable
from datetime import date, datetime, timedelta
from typing import Any

from rasa_sdk.events import EventType, SlotSet

from actions.base import FrontOfficeAction, Reply, Turn
from actions.identity import require_client
from actions.render import balance_text, document_line
from handlers import billing, documents
from handlers.dto import DOCUMENT_KINDS, ClientProfile, DocumentQuery, InvalidRequest, ServiceUnavailable

# How many documents one answer lists (and one "send" delivers): a conversation is not an archive browser.
MAX_LISTED_DOCUMENTS = 10


def _requested_account(turn: Turn, client: ClientProfile) -> str | None:
    """The account the user named, if it is theirs; otherwise the use case picks the client's account."""
    account = turn.slot("account_number")
    if account:
        account = "".join(account.split())
        if account in client.account_numbers:
            return account
    return None


class ActionCheckBalance(FrontOfficeAction):
    action_name = "action_check_balance"

    async def act(self, turn: Turn, reply: Reply) -> Iterable[EventType]:
        client = await require_client(turn, reply)
        if client is None:
            return []
        try:
            info = await billing.get_balance(turn.ctx, client, _requested_account(turn, client))
        except ServiceUnavailable:
            reply.say("billing_unavailable")
            return []
        reply.text(balance_text(turn.ctx, info, turn.language))
        return [SlotSet("balance", str(info.balance)), SlotSet("account_number", info.account_number)]


# ------------------------------------------------------------------ documents

_ISO_MONTH = re.compile(r"^(\d{4})-(\d{2})$")
_ISO_YEAR = re.compile(r"^(\d{4})$")


def _month_bounds(year: int, month: int) -> tuple[date, date]:
    start = date(year, month, 1)
    following = date(year + (month == 12), month % 12 + 1, 1)
    return start, following - timedelta(days=1)


def _structured_period(value: Any) -> tuple[date, date] | None:
    """Periods in the forms Rasa extractors produce: "2025-10", "2025", Duckling's ISO time or interval."""
    try:
        if isinstance(value, dict) and value.get("from"):
            start = datetime.fromisoformat(str(value["from"])).date()
            end = (
                datetime.fromisoformat(str(value["to"])).date() - timedelta(days=1)
                if value.get("to")
                else start
            )
            return (start, end) if end >= start else None
        if not isinstance(value, str):
            return None
        text = value.strip()
        if m := _ISO_MONTH.match(text):
            return _month_bounds(int(m.group(1)), int(m.group(2)))
        if m := _ISO_YEAR.match(text):
            return date(int(m.group(1)), 1, 1), date(int(m.group(1)), 12, 31)
        if len(text) >= 10 and text[4] == "-" and text[7] == "-":
            # Duckling's time value (month grain is the common case for "for October").
            moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
            return _month_bounds(moment.year, moment.month)
    except (ValueError, TypeError, IndexError):
        return None
    return None


def _today(turn: Turn) -> date:
    """Today where the documents department works ("last month" changes at its midnight, not UTC's)."""
    config = turn.ctx.config
    topic = config.topics.get("documents")
    now = turn.ctx.clock()
    return now.astimezone(config.calendar_of(topic.department).zone).date() if topic else now.date()


def document_query(turn: Turn) -> DocumentQuery:
    """What documents the user wants. The latest message wins (slots may be left from an earlier request);
    what it does not say comes from the `document_kind` and `period` slots."""
    today = _today(turn)

    def parse(text: str | None) -> DocumentQuery:
        return documents.parse_document_request(text[:500], turn.language, today) if text else DocumentQuery()

    said = parse(turn.text)
    kind_slot = turn.slot("document_kind")
    slot_kinds = (kind_slot,) if kind_slot in DOCUMENT_KINDS else parse(kind_slot).kinds
    period_value = turn.raw_slot("period")
    slot_period = _structured_period(period_value)
    if slot_period is None and isinstance(period_value, str):
        from_text = parse(turn.slot("period"))
        if from_text.period_start is not None:
            slot_period = (from_text.period_start, from_text.period_end or from_text.period_start)
    kinds = said.kinds or slot_kinds
    if said.period_start is not None:
        start, end = said.period_start, said.period_end
    elif slot_period is not None:
        start, end = slot_period
    else:
        start = end = None
    return DocumentQuery(kinds=tuple(kinds), period_start=start, period_end=end)


def _kind_buttons(reply: Reply) -> list[dict[str, str]]:
    return [
        {"title": reply.t(f"rasa_document_kind_{kind}"), "payload": f'/documents{{"document_kind":"{kind}"}}'}
        for kind in DOCUMENT_KINDS
    ]


async def _find_documents(
    turn: Turn, reply: Reply, client: ClientProfile, query: DocumentQuery
) -> list | None:
    """The documents matching the query, or None after asking for what is missing."""
    if not query.kinds:
        reply.say("rasa_documents_ask_kind", buttons=_kind_buttons(reply))
        return None
    if not query.complete:
        reply.say("rasa_documents_ask_period")
        return None
    return await documents.list_documents(turn.ctx, client, query, _requested_account(turn, client))


def _query_slots(query: DocumentQuery) -> list[EventType]:
    events: list[EventType] = []
    if len(query.kinds) == 1:
        events.append(SlotSet("document_kind", query.kinds[0]))
    if query.period_start is not None and query.period_end is not None:
        events.append(
            SlotSet(
                "period",
                {
                    "from": query.period_start.isoformat(),
                    "to": (query.period_end + timedelta(days=1)).isoformat(),
                },
            )
        )
    return events


async def list_documents_answer(
    turn: Turn, reply: Reply, client: ClientProfile, query: DocumentQuery
) -> list[EventType]:
    found = await _find_documents(turn, reply, client, query)
    if found is None:
        return _query_slots(query)
    if not found:
        reply.say("rasa_documents_none")
        return [*_query_slots(query), SlotSet("document_ids", None)]
    shown = found[:MAX_LISTED_DOCUMENTS]
    lines = [reply.t("rasa_documents_found", count=len(found))]
    lines += [f"{n}. {document_line(turn.ctx, doc, turn.language)}" for n, doc in enumerate(shown, 1)]
    if len(found) > len(shown):
        lines.append(reply.t("rasa_documents_more", shown=len(shown)))
    lines.append(reply.t("rasa_documents_offer_send"))
    reply.text(
        "\n".join(lines),
        buttons=[{"title": reply.t("rasa_button_send_documents"), "payload": "/send_documents"}],
    )
    return [*_query_slots(query), SlotSet("document_ids", [doc.id for doc in shown])]


class ActionListDocuments(FrontOfficeAction):
    action_name = "action_list_documents"

    async def act(self, turn: Turn, reply: Reply) -> Iterable[EventType]:
        client = await require_client(turn, reply)
        if client is None:
            return []
        return await list_documents_answer(turn, reply, client, document_query(turn))


def _slot_ids(value: Any) -> list[int]:
    values = value if isinstance(value, list) else [value] if value is not None else []
    ids: list[int] = []
    for item in values:
        if isinstance(item, bool):
            continue
        if isinstance(item, int) or (isinstance(item, str) and item.isdigit() and len(item) < 19):
            ids.append(int(item))
    return list(dict.fromkeys(ids))[:MAX_LISTED_DOCUMENTS]


class ActionSendDocuments(FrontOfficeAction):
    action_name = "action_send_documents"

    async def act(self, turn: Turn, reply: Reply) -> Iterable[EventType]:
        client = await require_client(turn, reply)
        if client is None:
            return []
        ids = _slot_ids(turn.raw_slot("document_ids"))
        events: list[EventType] = []
        if not ids:
            # No list shown yet: send what the slots and the message ask for.
            query = document_query(turn)
            found = await _find_documents(turn, reply, client, query)
            if found is None:
                return _query_slots(query)
            if not found:
                reply.say("rasa_documents_none")
                return _query_slots(query)
            ids = [doc.id for doc in found[:MAX_LISTED_DOCUMENTS]]
            events = _query_slots(query)
        try:
            # The use case refuses documents that are not this client's (NotFound) and unregistered contacts.
            via = await documents.send_documents(turn.ctx, client, ids, via="auto")
        except InvalidRequest:
            reply.say("rasa_documents_no_contact", phone=turn.ctx.config.company.phone)
            return events
        key = "rasa_documents_sent_email" if via == "email" else "rasa_documents_sent_telegram"
        reply.say(key, count=len(ids))
        return [*events, SlotSet("document_ids", None)]
