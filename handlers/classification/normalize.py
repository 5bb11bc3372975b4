"""Text normalisation shared by training and prediction.

Clients write with typos, in any case, with phone numbers, contract numbers and
links inside. The classifier must learn topics, not particular numbers, so:
- the text is capped (a 50 KB paste must not cost 50 KB of work),
- case is folded and "ё" becomes "е" (Russian writers use both),
- URLs, e-mails, phone numbers and other numbers become placeholder words,
- Russian words are lemmatised with pymorphy3 ("оплатил", "оплату" -> "оплата"/"оплатить"),
  with a cache because the same few thousand words repeat all the time.
"""

from __future__ import annotations

import re
import threading
from functools import lru_cache

HEAD_CHARS = 2000  # the request is almost always at the start ...
TAIL_CHARS = 500  # ... or at the very end of a long message ("... so please fix my internet")

URL_TOKEN = "urltoken"
EMAIL_TOKEN = "emailtoken"
PHONE_TOKEN = "phonetoken"
NUMBER_TOKEN = "numtoken"

_URL_RE = re.compile(r"(?:https?://|www\.)\S+|\b[\w-]+\.(?:ru|com|net|org|рф|su|io)(?:/\S*)?\b", re.IGNORECASE)
_EMAIL_RE = re.compile(r"[\w.+-]+@[\w-]+(?:\.[\w-]+)+")
# 10+ digits possibly separated by spaces, dashes, dots or brackets, optional leading "+"
_PHONE_RE = re.compile(r"(?<![\w+])\+?\d(?:[\s().-]{0,2}\d){9,14}(?!\w)")
_NUMBER_RE = re.compile(r"\d+(?:[.,]\d+)*")
_DIGIT_RE = re.compile(r"\d")  # what both patterns above need (\d: any Unicode digit, not only 0-9)
_WORD_RE = re.compile(r"[^\W\d_]+|" + NUMBER_TOKEN)
_CYRILLIC_RE = re.compile(r"[а-я]")
_SPACES_RE = re.compile(r"\s+")


def cap_length(text: str) -> str:
    """Keep the head and the tail of very long messages; bounds the work per request."""
    if len(text) <= HEAD_CHARS + TAIL_CHARS:
        return text
    return text[:HEAD_CHARS] + " " + text[-TAIL_CHARS:]


def normalize_text(text: str) -> str:
    """Case-folded, placeholder-substituted, single-spaced text (no lemmatisation)."""
    text = cap_length(text or "")
    text = text.lower().replace("ё", "е")
    # Each substitution only runs when the character every one of its matches contains is
    # present: most requests have no "@", "." or digit, and a regex scan costs ~1-2 us.
    if "@" in text:
        text = _EMAIL_RE.sub(f" {EMAIL_TOKEN} ", text)  # before URLs: "mail.ru" in an address is not a link
    if "." in text or "://" in text:
        text = _URL_RE.sub(f" {URL_TOKEN} ", text)
    if _DIGIT_RE.search(text):
        text = _PHONE_RE.sub(f" {PHONE_TOKEN} ", text)
        text = _NUMBER_RE.sub(f" {NUMBER_TOKEN} ", text)
    return _SPACES_RE.sub(" ", text).strip()


def tokenize(normalized: str) -> list[str]:
    """Words (letters only) and placeholders; punctuation, emoji and digits are dropped."""
    return _WORD_RE.findall(normalized)


_morph_lock = threading.Lock()
_morph = None


def _analyzer():
    global _morph
    with _morph_lock:
        if _morph is None:
            import pymorphy3

            _morph = pymorphy3.MorphAnalyzer()
        return _morph


@lru_cache(maxsize=200_000)
def lemma(word: str) -> str:
    """Normal form of a Russian word; other words are returned unchanged."""
    if not _CYRILLIC_RE.search(word) or len(word) > 40:
        return word
    parses = _analyzer().parse(word)
    return parses[0].normal_form.replace("ё", "е") if parses else word


def lemmatize(tokens: list[str]) -> list[str]:
    return [lemma(token) for token in tokens]


def prepare(text: str) -> tuple[str, str]:
    """(lemmatised word string for word n-grams, normalised surface string for char n-grams)."""
    normalized = normalize_text(text)
    tokens = tokenize(normalized)
    return " ".join(lemmatize(tokens)), " ".join(tokens)
