"""The use cases the phone line calls, bundled so tests (and partial installations) can substitute them.

The real ones live in `handlers.identification`, `handlers.billing`, `handlers.documents`,
`handlers.intake` and `handlers.tickets`. They are looked up by name when the IVR is set up; a missing
one makes only that branch of the menu unavailable (the caller is offered the operator), never the call.
"""

from __future__ import annotations

import importlib
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, fields
from typing import Any

from handlers.dto import Attachment

log = logging.getLogger(__name__)

AsyncFn = Callable[..., Awaitable[Any]]

_SOURCES = {
    "identify_by_phone": "handlers.identification",
    "identify_by_account_pin": "handlers.identification",
    "get_balance": "handlers.billing",
    "list_documents": "handlers.documents",
    "send_documents": "handlers.documents",
    "handle_inbound": "handlers.intake",
    "open_ticket": "handlers.tickets",
    "open_callback_request": "handlers.tickets",
    "department_is_open": "handlers.tickets",
    "next_opening": "handlers.tickets",
}


class Missing(Exception):
    """A use case this installation does not have (yet)."""


def _missing(name: str) -> AsyncFn:
    async def unavailable(*_args: Any, **_kwargs: Any) -> Any:
        raise Missing(name)

    unavailable.__name__ = f"missing_{name}"
    return unavailable


@dataclass
class UseCases:
    identify_by_phone: AsyncFn
    identify_by_account_pin: AsyncFn
    get_balance: AsyncFn
    list_documents: AsyncFn
    send_documents: AsyncFn
    handle_inbound: AsyncFn
    open_ticket: AsyncFn
    open_callback_request: AsyncFn
    department_is_open: AsyncFn
    next_opening: AsyncFn
    # How open_ticket expects a recording to be attached.
    attachment: Callable[..., Any] | None = Attachment

    @classmethod
    def real(cls) -> UseCases:
        found: dict[str, Any] = {}
        for name, module_name in _SOURCES.items():
            try:
                found[name] = getattr(importlib.import_module(module_name), name)
            except (ImportError, AttributeError):
                log.warning("IVR: %s.%s is not available; that menu branch offers the operator",
                            module_name, name)
                found[name] = _missing(name)
        return cls(**found)

    def missing(self) -> list[str]:
        return [f.name for f in fields(self) if f.name != "attachment"
                and getattr(getattr(self, f.name), "__name__", "").startswith("missing_")]
