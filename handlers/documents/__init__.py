"""Documents: what the client asks for (query), what exists (service) and generated PDFs (pdf)."""

from handlers.documents.query import parse_document_request
from handlers.documents.service import get_document_file, list_documents, send_documents

__all__ = ["get_document_file", "list_documents", "parse_document_request", "send_documents"]
