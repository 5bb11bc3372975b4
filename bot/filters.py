"""Filters that run on the event loop.

aiogram checks a bare magic filter (`F.text`, `F.data.startswith("c:")`) and any other synchronous callable
through `asyncio.to_thread` (aiogram/dispatcher/event/handler.py, CallableObject.call). A text message tried
against our routers meets about ten of them before its handler, so each update paid ten thread-pool hand-offs
and their wake-ups for a few attribute reads, and the event loop then waited for the GIL behind those threads.
`on_loop(F...)` wraps the same expression in an async filter: same result, no thread.
"""

from __future__ import annotations

from typing import Any

from aiogram.filters import Filter
from magic_filter import MagicFilter


class OnLoop(Filter):
    def __init__(self, magic: MagicFilter) -> None:
        self._magic = magic
        self._resolve = magic.resolve

    async def __call__(self, event: Any) -> Any:
        # The magic filter's own result: a falsy value rejects, a dict (from `.as_()`) is passed to the handler.
        return self._resolve(event)

    def __str__(self) -> str:
        return f"OnLoop({self._magic!r})"


def on_loop(magic: MagicFilter) -> OnLoop:
    return OnLoop(magic)
