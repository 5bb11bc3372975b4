"""Text normalisation for retrieval: case, ё→е, punctuation, Russian lemmas (pymorphy3, cached)."""

from __future__ import annotations

import re
from functools import lru_cache

_WORD = re.compile(r"[a-zа-я0-9]+")


@lru_cache(maxsize=1)
def _morph():  # type: ignore[no-untyped-def]
    import pymorphy3

    return pymorphy3.MorphAnalyzer()


@lru_cache(maxsize=100_000)
def _lemma(word: str) -> str:
    if not ("а" <= word[0] <= "я"):
        return word
    return _morph().parse(word)[0].normal_form.replace("ё", "е")


def normalize(text: str, max_chars: int = 2000) -> str:
    lowered = text[:max_chars].lower().replace("ё", "е")
    return " ".join(_lemma(w) for w in _WORD.findall(lowered))
