"""Urgency: does this request deserve a higher priority, whatever its topic?

This is product logic rather than something learned from a data set: outage
wording, explicit "urgent"/"срочно", long-lasting failures ("не работает уже 3 дня"),
business impact and shouting (!!!, CAPS). Each signal adds to a 0..1 score.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

URGENT_THRESHOLD = 0.5

# The word patterns are all lower case and run on the lower-cased text: the same matches as
# re.IGNORECASE at about a third of the cost (case-insensitive matching tries both cases of
# every character). Exclamation marks and CAPS are judged on the text as written.
_EXPLICIT = re.compile(
    r"\b(срочн\w*|немедленн\w*|безотлагательн\w*|как можно скорее|побыстрее|скорее|"
    r"urgent\w*|asap|immediately|right now|emergency|critical|"
    r"srochno|sro4no|avari\w*)\b|\bаси?ап\b")
_OUTAGE = re.compile(
    r"\b(авари\w*|не работа\w*|не раб\b|нет (?:интернета|связи|сети|инета|подключения)|"
    r"пропал\w* (?:интернет|связь|сеть|инет)|(?:интернет|связь|сеть|инет) пропал\w*|"
    r"обрыв\w*|оборвал\w*|отключил\w* (?:интернет|связь)|лежит|упал|"
    r"outage|is down|went down|not working|doesn'?t work|does not work|no internet|no connection|"
    r"ne rabotaet|net interneta|net svyazi)\b")
_DURATION = re.compile(
    r"(уже|already|for|целы[йе]|since)\s+(\d+|несколько|пару|два|три|второй|третий|неделю|сутки|"
    r"several|two|three|a few|whole)?\s*(дн\w*|день|сут\w*|недел\w*|час\w*|days?|weeks?|hours?)")
_IMPACT = re.compile(
    r"\b(бизнес|офис\w*|касс\w*|клиент\w* не могут|теряю деньги|убытк\w*|работа стоит|"
    r"business|office|customers can'?t|losing money|ambulance|больниц\w*|hospital)\b")
_EXCLAMATIONS = re.compile(r"!{3,}|(?:!\s*){3,}")


@dataclass(frozen=True)
class Urgency:
    score: float
    urgent: bool
    reasons: tuple[str, ...]


def detect_urgency(text: str) -> Urgency:
    text = text or ""
    lowered = text.lower()
    reasons: list[str] = []
    score = 0.0
    if _EXPLICIT.search(lowered):
        score += 0.6
        reasons.append("explicit")
    if _OUTAGE.search(lowered):
        score += 0.3
        reasons.append("outage")
    if _DURATION.search(lowered):
        score += 0.3
        reasons.append("duration")
    if _IMPACT.search(lowered):
        score += 0.2
        reasons.append("impact")
    if _EXCLAMATIONS.search(text):
        score += 0.3
        reasons.append("exclamations")
    letters = [ch for ch in text if ch.isalpha()]
    if len(letters) >= 12 and sum(ch.isupper() for ch in letters) / len(letters) > 0.7:
        score += 0.2
        reasons.append("caps")
    score = min(score, 1.0)
    return Urgency(score, score >= URGENT_THRESHOLD, tuple(reasons))
