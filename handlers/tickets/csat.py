"""Client satisfaction: a 1–5 rating (and an optional comment) after a ticket is resolved.

Rating buttons carry `c:rate:<ticket id>_<score>` (e.g. `c:rate:123_5`), within the callback format of
`handlers.callbacks`. The data can be forged: `rate_ticket` checks the ticket belongs to the client.
"""

from __future__ import annotations

from handlers.callbacks import CLIENT, Callback, decode
from handlers.context import AppContext
from handlers.dto import ClientProfile, InvalidRequest, NotFound, TicketSummary
from handlers.tickets.common import database_errors_as_unavailable, departments
from handlers.tickets.notify import alert_department

RATE_ACTION = "rate"
SCORES = (1, 2, 3, 4, 5)
COMMENT_LIMIT = 2000


def rating_callback(ticket_id: int, score: int) -> str:
    return Callback(CLIENT, RATE_ACTION, f"{ticket_id}_{score}").encode()


def rating_buttons(ticket_id: int) -> list[list[dict[str, str]]]:
    stars = {1: "1 ⭐", 2: "2 ⭐", 3: "3 ⭐", 4: "4 ⭐", 5: "5 ⭐"}
    return [[{"text": stars[s], "callback_data": rating_callback(ticket_id, s)} for s in SCORES]]


def parse_rating(data: str | None) -> tuple[int, int] | None:
    """(ticket id, score) from `c:rate:<id>_<score>`; None for anything else."""
    callback = decode(data)
    if callback is None or callback.scope != CLIENT or callback.action != RATE_ACTION:
        return None
    ticket_part, _, score_part = callback.value.partition("_")
    if not (ticket_part.isdigit() and len(ticket_part) < 19 and score_part.isdigit()):
        return None
    score = int(score_part)
    return (int(ticket_part), score) if score in SCORES else None


@database_errors_as_unavailable
async def rate_ticket(ctx: AppContext, client: ClientProfile, ticket_id: int, score: int,
                      comment: str | None = None) -> TicketSummary:
    """Store the client's rating of their resolved (or closed) ticket; rating again replaces it.

    A low rating (1–2) is brought to the department supervisors' attention."""
    from handlers.tickets.queries import summaries

    if score not in SCORES:
        raise InvalidRequest("rating must be 1 to 5")
    comment = (comment or "").strip()[:COMMENT_LIMIT] or None
    now = ctx.clock()
    async with ctx.uow() as uow:
        ticket = await uow.tickets.get(ticket_id, for_update=True)
        if ticket is None or ticket.customer_id != client.customer_id:
            raise NotFound("ticket")
        if ticket.status not in ("resolved", "closed"):
            raise InvalidRequest("only a resolved ticket can be rated")
        first_low = score <= 2 and (ticket.csat_score is None or ticket.csat_score > 2)
        ticket.csat_score = score
        if comment is not None:
            ticket.csat_comment = comment
        ticket.updated_at = now
        uow.tickets.add_event(ticket.id, "rated", "client", at=now, payload={"score": score, "text": comment})
        if first_low:
            depts = await departments(ctx, uow)
            await alert_department(ctx, uow, depts, ticket, event="low_rating", kind="csat_alert",
                                   extra={"score": score, "text": comment}, supervisors_too=True)
        await uow.commit()
        result = (await summaries(ctx, uow, [ticket.id]))[0]
    await ctx.wake_dispatcher()
    return result
