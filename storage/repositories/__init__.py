from storage.repositories.billing import DocumentRepository, PaymentRepository
from storage.repositories.customers import AccountRepository, CustomerRepository
from storage.repositories.interactions import CallRepository, InteractionRepository, ProcessedUpdateRepository
from storage.repositories.outbox import OutboxRepository
from storage.repositories.staff import DepartmentRepository, StaffRepository
from storage.repositories.tickets import TicketRepository

__all__ = [
    "AccountRepository",
    "CallRepository",
    "CustomerRepository",
    "DepartmentRepository",
    "DocumentRepository",
    "InteractionRepository",
    "OutboxRepository",
    "PaymentRepository",
    "ProcessedUpdateRepository",
    "StaffRepository",
    "TicketRepository",
]
