"""Opening many tickets with two statements, PostgreSQL only (see handlers.tickets.group_open).

`read_opening_snapshot` answers, in one query, what routing and the duplicate/follow-up checks of a whole
batch need: the departments' staff with their open load, each client's open ticket on the same topic, and
which message keys were already used. `insert_opened_batch` then writes every ticket of the batch — number
from the per-year counter, ticket, "opened"/"assigned" events, attachments, staff-alert outbox rows and the
interaction — in one statement (data-modifying CTEs over arrays), so the batch is one round trip and all its
rows commit together or not at all.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import text

from storage.repositories.tickets import OPEN_STATUSES

_OPEN = ", ".join(f"'{status}'" for status in OPEN_STATUSES)


@dataclass(frozen=True)
class StaffRow:
    id: int
    department_id: int
    name: str
    role: str
    on_duty: bool
    # Open tickets assigned to them; counted only for routing candidates (on-duty agents and managers of
    # the departments asked about), None for the others.
    load: int | None


@dataclass(frozen=True)
class FollowUpCheck:
    item: int
    customer_id: int
    topic: str
    since: datetime


@dataclass(frozen=True)
class OpeningSnapshot:
    staff: list[StaffRow]
    follow_ups: dict[int, int]  # item -> the client's open ticket on that topic
    used_external_ids: set[str]
    used_source_keys: set[str]


_SNAPSHOT = text(f"""
SELECT
    (SELECT json_agg(json_build_array(
                s.id, s.department_id, s.name, s.role, s.on_duty,
                CASE WHEN s.on_duty AND s.role IN ('agent', 'manager') AND s.department_id = ANY(d.ids)
                     THEN (SELECT count(*) FROM tickets t WHERE t.assignee_id = s.id AND t.status IN ({_OPEN}))
                END) ORDER BY s.id)
     FROM staff s
     WHERE s.is_active
       AND (s.department_id = ANY(d.ids) OR s.role = 'admin' OR s.id = ANY(CAST(:manager_ids AS bigint[])))
    ) AS staff,
    (SELECT json_agg(json_build_array(k.item, f.id))
     FROM unnest(CAST(:follow_up_items AS int[]), CAST(:follow_up_customers AS bigint[]),
                 CAST(:follow_up_topics AS text[]), CAST(:follow_up_since AS timestamptz[]))
          AS k(item, customer_id, topic, since)
     CROSS JOIN LATERAL (
         SELECT t.id FROM tickets t
         WHERE t.customer_id = k.customer_id AND t.topic = k.topic AND t.status IN ({_OPEN})
           AND t.updated_at >= k.since
         ORDER BY t.updated_at DESC, t.id DESC
         LIMIT 1) AS f
    ) AS follow_ups,
    -- One unique-index probe per key (LATERAL ... LIMIT 1), whatever the tables' statistics say.
    (SELECT array_agg(u.external_id) FROM unnest(CAST(:external_ids AS text[])) AS k(key)
     CROSS JOIN LATERAL (SELECT i.external_id FROM interactions i WHERE i.external_id = k.key LIMIT 1) AS u
    ) AS used_external_ids,
    (SELECT array_agg(u.source_key) FROM unnest(CAST(:source_keys AS text[])) AS k(key)
     CROSS JOIN LATERAL (SELECT t.source_key FROM tickets t WHERE t.source_key = k.key LIMIT 1) AS u
    ) AS used_source_keys
FROM (SELECT CAST(:department_ids AS bigint[]) AS ids) AS d
""")


async def read_opening_snapshot(session: Any, *, department_ids: Sequence[int], manager_ids: Sequence[int],
                                follow_up_checks: Sequence[FollowUpCheck], external_ids: Sequence[str],
                                source_keys: Sequence[str]) -> OpeningSnapshot:
    """Everything a batch's routing and checks read, in one query (each part uses an index)."""
    row = (await session.execute(_SNAPSHOT, {
        "department_ids": list(department_ids), "manager_ids": list(manager_ids),
        "follow_up_items": [c.item for c in follow_up_checks],
        "follow_up_customers": [c.customer_id for c in follow_up_checks],
        "follow_up_topics": [c.topic for c in follow_up_checks],
        "follow_up_since": [c.since for c in follow_up_checks],
        "external_ids": list(external_ids), "source_keys": list(source_keys),
    })).one()
    staff = [StaffRow(int(i), int(d), str(n), str(r), bool(o), None if load is None else int(load))
             for i, d, n, r, o, load in _json_list(row.staff)]
    return OpeningSnapshot(
        staff=staff,
        follow_ups={int(item): int(ticket_id) for item, ticket_id in _json_list(row.follow_ups)},
        used_external_ids=set(row.used_external_ids or ()),
        used_source_keys=set(row.used_source_keys or ()),
    )


def _json_list(value: Any) -> list[Any]:
    # asyncpg hands json back as text; an empty aggregate is NULL.
    if value is None:
        return []
    return json.loads(value) if isinstance(value, str) else list(value)


@dataclass(frozen=True)
class Recipient:
    kind: str  # staff|group
    staff_id: int | None = None
    chat_id: int | None = None


@dataclass(frozen=True)
class AttachmentRow:
    kind: str
    ref: str
    content_type: str | None


@dataclass(frozen=True)
class OpeningRow:
    """One ticket to write, with its events, alert recipients, attachments and (optionally) interaction."""

    year: int
    customer_id: int | None
    channel: str
    source_key: str | None
    topic: str
    department_id: int
    assignee_id: int | None
    priority: str
    language: str
    subject: str
    text: str
    confidence: float | None
    contact_phone: str | None
    opened_at: datetime
    first_response_due: datetime
    resolution_due: datetime
    opened_author: str
    opened_payload: dict[str, Any]
    assigned_payload: dict[str, Any] | None
    recipients: Sequence[Recipient]
    attachments: Sequence[AttachmentRow] = ()
    record_interaction: bool = False
    sender: str | None = None
    external_id: str | None = None
    interaction_text: str = ""
    outcome: str | None = None


@dataclass(frozen=True)
class OpenedRow:
    ticket_id: int
    number: str
    interaction_id: int | None


# Columns of the per-ticket arrays, in the order of `_ITEM_COLUMNS` below: (name, PostgreSQL array type).
_ITEM_COLUMNS = (
    ("year", "int"), ("customer_id", "bigint"), ("channel", "text"), ("source_key", "text"), ("topic", "text"),
    ("department_id", "bigint"), ("assignee_id", "bigint"), ("priority", "text"), ("language", "text"),
    ("subject", "text"), ("text", "text"), ("confidence", "float8"), ("contact_phone", "text"),
    ("opened_at", "timestamptz"), ("first_response_due", "timestamptz"), ("resolution_due", "timestamptz"),
    ("opened_author", "text"), ("opened_payload", "text"), ("assigned_payload", "text"),
    ("record_interaction", "bool"), ("sender", "text"), ("external_id", "text"), ("interaction_text", "text"),
    ("outcome", "text"),
)
_ITEM_ARRAYS = ", ".join(f"CAST(:{name} AS {kind}[])" for name, kind in _ITEM_COLUMNS)
_ITEM_NAMES = ", ".join(name for name, _ in _ITEM_COLUMNS)

# Numbers: the batch takes `count` numbers of each year at once (one counter update per year, in year
# order so two processes never lock two years' rows in opposite orders); item k of a year gets
# last - count + k. Ticket ids follow the items' order, and so do the events', alerts' and interactions'.
_OPEN_BATCH = text(f"""
WITH item AS (
    SELECT * FROM unnest({_ITEM_ARRAYS}) WITH ORDINALITY AS k({_ITEM_NAMES}, item)
), numbered AS (
    SELECT item.*, row_number() OVER (PARTITION BY item.year ORDER BY item.item) AS seq,
           count(*) OVER (PARTITION BY item.year) AS in_year
    FROM item
), counter AS (
    INSERT INTO ticket_counters (year, last)
    SELECT year, count(*) FROM item GROUP BY year ORDER BY year
    ON CONFLICT (year) DO UPDATE SET last = ticket_counters.last + EXCLUDED.last
    RETURNING year, last
), planned AS (
    -- lpad to at least six digits, never cutting a longer number short.
    SELECT numbered.*, CAST(numbered.year AS text) || '-' || lpad(s.n, greatest(6, length(s.n)), '0') AS number
    FROM numbered JOIN counter USING (year)
    CROSS JOIN LATERAL (SELECT CAST(counter.last - numbered.in_year + numbered.seq AS text) AS n) AS s
), ticket AS (
    INSERT INTO tickets (number, customer_id, channel, source_key, topic, department_id, assignee_id, priority,
                         status, language, subject, text, confidence, contact_phone, created_at, updated_at,
                         first_response_due, resolution_due, last_client_message_at)
    SELECT number, customer_id, channel, source_key, topic, department_id, assignee_id, priority, 'new',
           language, subject, text, confidence, contact_phone, opened_at, opened_at, first_response_due, resolution_due,
           opened_at
    FROM planned ORDER BY item
    RETURNING id, number
), opened AS (
    SELECT ticket.id AS ticket_id, planned.* FROM ticket JOIN planned USING (number)
), event AS (
    INSERT INTO ticket_events (ticket_id, kind, author_kind, author_staff_id, created_at, payload)
    SELECT opened.ticket_id, e.kind, e.author_kind, NULL, opened.opened_at, CAST(e.payload AS json)
    FROM opened CROSS JOIN LATERAL (VALUES (1, 'opened', opened.opened_author, opened.opened_payload),
                                          (2, 'assigned', 'system', opened.assigned_payload))
                                   AS e(ord, kind, author_kind, payload)
    WHERE e.payload IS NOT NULL
    ORDER BY opened.item, e.ord
), attachment AS (
    INSERT INTO ticket_attachments (ticket_id, kind, ref, content_type, created_at)
    SELECT opened.ticket_id, a.kind, a.ref, a.content_type, opened.opened_at
    FROM unnest(CAST(:attachment_items AS bigint[]), CAST(:attachment_kinds AS text[]),
                CAST(:attachment_refs AS text[]), CAST(:attachment_content_types AS text[]))
         WITH ORDINALITY AS a(item, kind, ref, content_type, ord)
    JOIN opened USING (item)
    ORDER BY a.ord
), alert AS (
    INSERT INTO notification_outbox (created_at, kind, recipient_kind, staff_id, department_id, chat_id, ticket_id,
                                     payload, status, attempts, next_attempt_at)
    SELECT opened.opened_at, 'ticket_alert', a.kind, a.staff_id, opened.department_id, a.chat_id, opened.ticket_id,
           CAST(:alert_payload AS json), 'pending', 0, opened.opened_at
    FROM unnest(CAST(:alert_items AS bigint[]), CAST(:alert_kinds AS text[]), CAST(:alert_staff_ids AS bigint[]),
                CAST(:alert_chat_ids AS bigint[])) WITH ORDINALITY AS a(item, kind, staff_id, chat_id, ord)
    JOIN opened USING (item)
    ORDER BY a.ord
), interaction AS (
    INSERT INTO interactions (channel, customer_id, sender, external_id, text, topic, confidence, outcome,
                              ticket_id, created_at)
    SELECT channel, customer_id, sender, external_id, interaction_text, topic, confidence, outcome, ticket_id,
           opened_at
    FROM opened WHERE record_interaction
    ORDER BY item
    RETURNING id, ticket_id
)
SELECT opened.item, opened.ticket_id, opened.number, interaction.id
FROM opened LEFT JOIN interaction USING (ticket_id)
""")
# Staff alerts are rendered by the dispatcher at send time; the row only says which event to render.
_ALERT_PAYLOAD = json.dumps({"render": "ticket_alert", "event": "opened"})


async def insert_opened_batch(session: Any, rows: Sequence[OpeningRow]) -> list[OpenedRow]:
    """Write `rows` with one statement; returns what was written for each row, in the same order."""
    params: dict[str, Any] = {name: [] for name, _ in _ITEM_COLUMNS}
    alerts: dict[str, list[Any]] = {"alert_items": [], "alert_kinds": [], "alert_staff_ids": [], "alert_chat_ids": []}
    files: dict[str, list[Any]] = {"attachment_items": [], "attachment_kinds": [], "attachment_refs": [],
                                   "attachment_content_types": []}
    for item, row in enumerate(rows, start=1):  # WITH ORDINALITY counts from 1
        for name, _ in _ITEM_COLUMNS:
            params[name].append(getattr(row, name))
        for recipient in row.recipients:
            alerts["alert_items"].append(item)
            alerts["alert_kinds"].append(recipient.kind)
            alerts["alert_staff_ids"].append(recipient.staff_id)
            alerts["alert_chat_ids"].append(recipient.chat_id)
        for attachment in row.attachments:
            files["attachment_items"].append(item)
            files["attachment_kinds"].append(attachment.kind)
            files["attachment_refs"].append(attachment.ref)
            files["attachment_content_types"].append(attachment.content_type)
    params["opened_payload"] = [json.dumps(p) for p in params["opened_payload"]]
    params["assigned_payload"] = [None if p is None else json.dumps(p) for p in params["assigned_payload"]]
    params.update(alerts, **files, alert_payload=_ALERT_PAYLOAD)
    result = await session.execute(_OPEN_BATCH, params)
    written = {int(item): OpenedRow(int(ticket_id), str(number), None if interaction_id is None else
                                    int(interaction_id))
               for item, ticket_id, number, interaction_id in result}
    return [written[item] for item in range(1, len(rows) + 1)]


__all__ = ["AttachmentRow", "FollowUpCheck", "OpenedRow", "OpeningRow", "OpeningSnapshot", "Recipient", "StaffRow",
           "insert_opened_batch", "read_opening_snapshot"]
