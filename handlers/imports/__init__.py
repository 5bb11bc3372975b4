"""CSV imports (customers, staff, payments, documents): idempotent, bad rows reported and skipped."""

from handlers.imports.common import ImportReport
from handlers.imports.customers import import_customers
from handlers.imports.documents import import_documents
from handlers.imports.payments import import_payments
from handlers.imports.staff import import_staff

IMPORTERS = {"customers": import_customers, "staff": import_staff, "payments": import_payments,
             "documents": import_documents}

__all__ = ["IMPORTERS", "ImportReport", "import_customers", "import_documents", "import_payments", "import_staff"]
