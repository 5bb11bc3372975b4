"""One i18n mechanism for every channel: texts come from the business configuration, in ru and en."""

from __future__ import annotations

import logging
import string
from typing import Any

from config.business import LANGUAGES, BusinessConfig

log = logging.getLogger(__name__)


def pick_language(code: str | None, default: str = "ru") -> str:
    """Telegram's language_code ("ru", "en-GB", "uk"...) to one of ours."""
    if code:
        base = code.split("-")[0].split("_")[0].lower()
        if base in LANGUAGES:
            return base
        # Speakers of languages we lack are more likely to read Russian in this market only for ex-USSR ones.
        if base in {"uk", "be", "kk", "ky", "uz", "tg", "hy", "az", "ka", "tt"}:
            return "ru"
        return "en"
    return default


class _SafeDict(dict[str, Any]):
    def __missing__(self, key: str) -> str:
        log.error("text placeholder {%s} not supplied", key)
        return ""


class Translator:
    def __init__(self, config: BusinessConfig) -> None:
        self._texts = config.texts
        self.default_language = config.default_language

    def __call__(self, key: str, lang: str | None = None, /, **values: Any) -> str:
        lang = lang if lang in LANGUAGES else self.default_language
        text = self._texts.get(key)
        if text is None:
            # A missing text is a bug, but the client still gets something readable.
            log.error("missing text %r", key)
            return key
        template = text.get(lang)
        if "{" not in template:
            return template
        return string.Formatter().vformat(template, (), _SafeDict(values))

    def has(self, key: str) -> bool:
        return key in self._texts
