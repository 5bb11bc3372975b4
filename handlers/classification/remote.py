"""Classification for the use cases: an optional remote NLU (Rasa) first, the built-in engine as fallback.

Use cases call `await classify_text(ctx, text)`. When the composition root has put a remote classifier in
`ctx.extras["remote_nlu"]` (any object with `async classify(text, k) -> Classification | None`), it is
asked first; a timeout, an error or no answer falls back to the shipped model, so a Rasa outage never
stops the front office from routing requests.
"""

from __future__ import annotations

import logging
import time
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # the engine pulls in scikit-learn; channels import this module at start-up
    from .engine import Classification

log = logging.getLogger(__name__)
_last_warning = 0.0


async def classify_text(ctx: Any, text: str, k: int = 3) -> Classification:
    global _last_warning
    remote = ctx.extras.get("remote_nlu") if getattr(ctx, "extras", None) else None
    if remote is not None:
        try:
            result = await remote.classify(text, k)
        except Exception as exc:  # any remote failure means: use our own engine
            result = None
            if time.monotonic() - _last_warning > 30:
                _last_warning = time.monotonic()
                log.warning("remote NLU failed (%s); using the built-in classifier", exc)
        if result is not None:
            return result
    if ctx.classifier is None:
        raise RuntimeError("no topic classifier configured")
    return ctx.classifier.classify(text, k=k)
