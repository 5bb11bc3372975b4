"""What every use case may depend on, bundled once by the composition root.

Use cases are plain async functions (or small classes) taking `ctx: AppContext` first. Adapters (bot, IVR,
Rasa) receive the same `ctx` and never build dependencies themselves.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from config.business import BusinessConfig
from handlers.i18n import Translator
from storage.kv import KeyValueBackends
from storage.uow import UnitOfWork

OUTBOX_CHANNEL = "outbox"


@dataclass
class AppContext:
    config: BusinessConfig
    uow: Callable[[], UnitOfWork]
    t: Translator
    clock: Callable[[], datetime]
    kv: KeyValueBackends
    # Ports filled by the composition root once their features are wired (see service/wiring.py):
    # classifier (handlers.classification), billing (handlers.billing.BillingSource),
    # sender (handlers.ports.MessageSender). Typed loosely here to keep this module free of cycles.
    classifier: Any = None
    billing: Any = None
    sender: Any = None
    data_dir: str = "./data"
    extras: dict[str, Any] = field(default_factory=dict)
    # Read-only units of work for look-ups on hot paths (cheaper: no transaction round trips on PostgreSQL);
    # `read()` falls back to `uow` when the composition root gives none.
    reader: Callable[[], UnitOfWork] | None = None

    def read(self) -> UnitOfWork:
        return (self.reader or self.uow)()

    async def wake_dispatcher(self) -> None:
        """Tell the notification dispatcher there is new work; a lost wake-up only delays it (it polls)."""
        await self.kv.pubsub.publish(OUTBOX_CHANNEL, "new")
