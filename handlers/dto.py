"""What use cases return to adapters: plain frozen data, no ORM objects, nothing channel-specific.

Adapters render these for their channel (Telegram messages, TwiML speech, Rasa responses).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, datetime
from decimal import Decimal
from typing import Literal

# ----------------------------------------------------------------- errors every adapter handles


class UseCaseError(Exception):
    """Base of the errors a use case raises on purpose; adapters turn them into a polite answer."""


class NotFound(UseCaseError):
    """The object does not exist, or the actor may not know it exists (another client's ticket)."""


class PermissionDenied(UseCaseError):
    """The actor is known but not allowed to do this (server-side check; callback data can be forged)."""


class InvalidRequest(UseCaseError):
    """The request is malformed or not possible in the current state (e.g. resolving a closed ticket)."""


class ServiceUnavailable(UseCaseError):
    """A back end (billing, database) cannot answer now; the adapter offers the operator."""


# ----------------------------------------------------------------- who is acting


@dataclass(frozen=True)
class Actor:
    kind: Literal["client", "staff", "system"]
    customer_id: int | None = None
    staff_id: int | None = None
    role: str | None = None  # staff: agent|manager|supervisor|admin
    department_id: int | None = None

    @classmethod
    def system(cls) -> Actor:
        return cls(kind="system")


# ----------------------------------------------------------------- clients


@dataclass(frozen=True)
class ClientProfile:
    customer_id: int
    name: str
    kind: str  # person|company
    segment: str
    language: str
    phones: tuple[str, ...]
    email: str | None
    telegram_user_id: int | None
    account_numbers: tuple[str, ...]
    manager_id: int | None
    manager_name: str | None
    has_consent: bool

    @property
    def actor(self) -> Actor:
        return Actor(kind="client", customer_id=self.customer_id)


@dataclass(frozen=True)
class StaffProfile:
    staff_id: int
    name: str
    role: str
    department_id: int
    department_code: str
    language: str
    on_duty: bool
    telegram_id: int | None

    @property
    def actor(self) -> Actor:
        return Actor(kind="staff", staff_id=self.staff_id, role=self.role, department_id=self.department_id)


@dataclass(frozen=True)
class TelegramSender:
    """Who wrote a Telegram update: a staff member, a customer (linked Telegram id), both, or neither."""

    staff: StaffProfile | None
    client: ClientProfile | None
    # The staff member's alerts had been failing (bot blocked); writing to the bot again proves it is not.
    staff_unreachable: bool = False
    # The update's key is already in processed_updates: a redelivery of something handled.
    already_handled: bool = False
    # Status of the client's current ticket (the one client_open_ticket returns), None without one: most
    # texts come from clients without a conversation, and this spares them that look-up.
    client_ticket_status: str | None = None


@dataclass(frozen=True)
class PinCheck:
    ok: bool
    client: ClientProfile | None = None
    attempts_left: int = 0
    locked_until: datetime | None = None


# ----------------------------------------------------------------- billing and documents


@dataclass(frozen=True)
class PaymentInfo:
    paid_at: datetime
    amount: Decimal
    currency: str
    method: str | None


@dataclass(frozen=True)
class BalanceInfo:
    account_number: str
    balance: Decimal
    currency: str
    status: str  # active|paused|terminated
    tariff: str | None
    paid_until: date | None
    last_payments: tuple[PaymentInfo, ...] = ()


DocumentKind = Literal["invoice", "act", "reconciliation", "usage_report", "contract"]
DOCUMENT_KINDS: tuple[str, ...] = ("invoice", "act", "reconciliation", "usage_report", "contract")


@dataclass(frozen=True)
class DocumentQuery:
    """What a client asked for; empty `kinds` or a missing period means the adapter must ask."""

    kinds: tuple[str, ...] = ()
    period_start: date | None = None
    period_end: date | None = None

    @property
    def complete(self) -> bool:
        return bool(self.kinds) and (self.period_start is not None or self.kinds == ("contract",))


@dataclass(frozen=True)
class DocumentInfo:
    id: int
    account_number: str
    kind: str
    number: str
    issued_on: date
    period_start: date | None
    period_end: date | None
    amount: Decimal | None


@dataclass(frozen=True)
class DocumentFile:
    filename: str
    content_type: str
    size: int
    content: bytes | None = None  # None when too large to send as a file
    download_url: str | None = None  # offered instead when over the messenger's limit
    path: str | None = None  # where the file lies on our side (outbox deliveries send from here)


# ----------------------------------------------------------------- tickets


@dataclass(frozen=True)
class TicketSummary:
    id: int
    number: str
    status: str  # new|in_progress|waiting_client|resolved|closed
    topic: str
    topic_title: str
    department_code: str
    department_name: str
    priority: str
    subject: str
    created_at: datetime
    first_response_due: datetime | None
    resolution_due: datetime | None
    assignee_id: int | None
    assignee_name: str | None
    customer_id: int | None
    # Added by the tickets feature (defaults keep older constructors working).
    channel: str = ""
    language: str = "ru"
    text: str = ""
    customer_name: str | None = None
    updated_at: datetime | None = None
    resolved_at: datetime | None = None
    csat_score: int | None = None
    waiting_client: bool = False


@dataclass(frozen=True)
class TicketEventView:
    created_at: datetime
    kind: str
    author_kind: str
    author_name: str | None
    text: str | None


@dataclass(frozen=True)
class KnowledgeAnswer:
    article_id: int
    title: str
    answer: str
    score: float


@dataclass(frozen=True)
class TopicChoice:
    topic: str
    title: str
    confidence: float


IntakeOutcome = Literal[
    "balance",  # answer with the balance (auto)
    "documents",  # answer with documents (auto); `documents_query` says what was asked
    "knowledge",  # a strong knowledge-base match: answer and ask "did this help?"
    "choose_topic",  # unsure: offer `choices`
    "ticket_opened",
    "ticket_appended",  # a follow-up added to the client's open ticket on the same topic
    "duplicate",  # this inbound message was already handled (redelivery)
    "needs_identification",  # the request needs a known client (e.g. balance from an unknown sender)
]


@dataclass(frozen=True)
class IntakeResult:
    outcome: IntakeOutcome
    interaction_id: int | None
    topic: str | None = None
    confidence: float | None = None
    urgent: bool = False
    ticket: TicketSummary | None = None
    knowledge: KnowledgeAnswer | None = None
    choices: tuple[TopicChoice, ...] = ()
    documents_query: DocumentQuery | None = None
    extra: dict[str, str] = field(default_factory=dict)


# ----------------------------------------------------------------- tickets: inputs and statistics


@dataclass(frozen=True)
class Attachment:
    """A file that came with a client's message: a Telegram file id or a call recording URL."""

    kind: Literal["photo", "document", "voice", "recording", "video", "audio"]
    ref: str
    content_type: str | None = None


@dataclass(frozen=True)
class CountRow:
    key: str  # department code or staff id (as text)
    name: str
    count: int


@dataclass(frozen=True)
class StaffStats:
    since: datetime
    until: datetime
    created: int
    resolved: int
    open_total: int
    open_by_department: tuple[CountRow, ...]
    open_by_assignee: tuple[CountRow, ...]
    unassigned_open: int
    first_response_breaches: int
    resolution_breaches: int
    first_response_median_seconds: float | None
    resolution_median_seconds: float | None
    csat_average: float | None
    csat_count: int
