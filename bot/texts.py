"""Text helpers for Telegram: escaping user text for HTML parse mode and splitting long messages."""

from __future__ import annotations

import html
from collections.abc import Iterable

from handlers.context import AppContext

TELEGRAM_TEXT_LIMIT = 4096
CAPTION_LIMIT = 1024


def esc(value: object) -> str:
    """User-supplied (or database) text made safe for parse_mode=HTML."""
    return html.escape(str(value), quote=False)


def split_text(text: str, limit: int = TELEGRAM_TEXT_LIMIT) -> list[str]:
    """Split into chunks of at most `limit` characters, preferring paragraph, line and word boundaries.

    Never splits inside an HTML entity or tag (`&amp;`, `<b>`), so every chunk stays valid for parse_mode=HTML
    as long as tags do not span the boundary (our templates keep tags short and local).
    """
    if len(text) <= limit:
        return [text]
    chunks: list[str] = []
    rest = text
    while len(rest) > limit:
        window = rest[:limit]
        cut = -1
        for separator in ("\n\n", "\n", " "):
            position = window.rfind(separator)
            if position > limit // 2:
                cut = position + len(separator)
                break
        if cut == -1:
            cut = limit
            # Do not cut an entity (&...;) or a tag (<...>) in half.
            amp, semi = window.rfind("&"), window.rfind(";")
            if amp > semi and limit - amp < 10:
                cut = amp
            lt, gt = window.rfind("<"), window.rfind(">")
            if lt > gt:
                cut = min(cut, lt)
            if cut <= 0:
                cut = limit
        chunks.append(rest[:cut].rstrip("\n") or rest[:cut])
        rest = rest[cut:]
    if rest:
        chunks.append(rest)
    return chunks


def truncate(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def labels(ctx: AppContext, *keys: str) -> set[str]:
    """Every language's label for these text keys: a reply-keyboard button is matched in any language."""
    from config.business import LANGUAGES

    return {ctx.t(key, lang) for key in keys for lang in LANGUAGES}


def lines(items: Iterable[str]) -> str:
    return "\n".join(item for item in items if item)
