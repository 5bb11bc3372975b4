"""Tickets: opening and routing, lifecycle, staff actions, SLA, history, the customer card, statistics, CSAT.

Adapters (bot, IVR, Rasa) import the use cases from here; every function takes `ctx: AppContext` first.
"""

from handlers.tickets.card import render_customer_card, render_ticket_alert, ticket_buttons
from handlers.tickets.csat import parse_rating, rate_ticket, rating_buttons, rating_callback
from handlers.tickets.hours import department_is_open, next_opening
from handlers.tickets.lifecycle import add_client_message
from handlers.tickets.open import open_callback_request, open_ticket
from handlers.tickets.queries import (
    client_open_ticket,
    get_client_ticket,
    get_staff_ticket,
    list_client_tickets,
    staff_queue,
    staff_tickets,
    ticket_for_alert_reply,
    ticket_history,
)
from handlers.tickets.staff_actions import (
    add_internal_note,
    escalate_ticket,
    reassign_ticket,
    reply_to_ticket,
    resolve_ticket,
    set_waiting_client,
    take_ticket,
)
from handlers.tickets.stats import staff_statistics

__all__ = [
    "add_client_message",
    "add_internal_note",
    "client_open_ticket",
    "department_is_open",
    "escalate_ticket",
    "get_client_ticket",
    "get_staff_ticket",
    "list_client_tickets",
    "next_opening",
    "open_callback_request",
    "open_ticket",
    "parse_rating",
    "rate_ticket",
    "rating_buttons",
    "rating_callback",
    "reassign_ticket",
    "render_customer_card",
    "render_ticket_alert",
    "reply_to_ticket",
    "resolve_ticket",
    "set_waiting_client",
    "staff_queue",
    "staff_statistics",
    "staff_tickets",
    "take_ticket",
    "ticket_buttons",
    "ticket_for_alert_reply",
    "ticket_history",
]
