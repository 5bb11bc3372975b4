from storage.repositories.billing import DocumentRepository, PaymentRepository
from storage.repositories.customers import AccountRepository, CustomerRepository
from storage.repositories.interactions import CallRepository, InteractionRepository, ProcessedUpdateRepository
from storage.repositories.staff import DepartmentRepository, StaffRepository

__all__ = [
    "AccountRepository",
    "CallRepository",
    "CustomerRepository",
    "DepartmentRepository",
    "DocumentRepository",
    "InteractionRepository",
    "PaymentRepository",
    "ProcessedUpdateRepository",
    "StaffRepository",
]
