"""Rasa NLU as a topic classifier (`RASA_URL`): `POST /model/parse`, mapped onto our topics.

Rasa's intents are expected to be named like our topics (see examples/rasa); any other intent, Rasa's
`nlu_fallback` and low confidence count as "unsure". Each call has a short timeout; after a failure the
server is left alone for a cool-off period so that an outage costs one timeout, not one per request.
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from typing import Any

import aiohttp

from handlers.classification.engine import Classification, TopicScore
from handlers.classification.urgency import detect_urgency


class RasaNluClassifier:
    def __init__(self, base_url: str, topics: Iterable[str], *, oos_label: str = "out_of_scope",
                 min_confidence: float = 0.5, timeout: float = 1.5, cool_off: float = 30.0,
                 token: str | None = None) -> None:
        self._url = base_url.rstrip("/") + "/model/parse"
        self._topics = frozenset(topics) - {oos_label}
        self._oos = oos_label
        self._min_confidence = min_confidence
        self._timeout = aiohttp.ClientTimeout(total=timeout)
        self._cool_off = cool_off
        self._params = {"token": token} if token else None
        self._down_until = 0.0
        self._session: aiohttp.ClientSession | None = None

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()

    async def classify(self, text: str, k: int = 3) -> Classification | None:
        if time.monotonic() < self._down_until:
            return None
        if self._session is None:
            self._session = aiohttp.ClientSession(timeout=self._timeout)
        try:
            async with self._session.post(self._url, json={"text": text[:2000]}, params=self._params) as response:
                if response.status != 200:
                    raise aiohttp.ClientResponseError(response.request_info, (), status=response.status)
                body = await response.json(content_type=None)
        except (TimeoutError, aiohttp.ClientError, ValueError, OSError):
            self._down_until = time.monotonic() + self._cool_off
            raise
        return self._to_classification(text, body, k)

    def _to_classification(self, text: str, body: Any, k: int) -> Classification | None:
        if not isinstance(body, dict):
            return None
        ranking_raw = body.get("intent_ranking") or ([body["intent"]] if isinstance(body.get("intent"), dict) else [])
        ranking: list[TopicScore] = []
        for item in ranking_raw:
            if not isinstance(item, dict):
                continue
            name, confidence = item.get("name"), item.get("confidence")
            if name in self._topics and isinstance(confidence, int | float):
                ranking.append(TopicScore(str(name), float(confidence)))
        ranking.sort(key=lambda score: -score.confidence)
        urgency = detect_urgency(text)
        intent = body.get("intent") if isinstance(body.get("intent"), dict) else {}
        best = intent.get("name")
        confidence = float(intent.get("confidence") or 0.0)
        sure = best in self._topics and confidence >= self._min_confidence
        return Classification(
            topic=str(best) if sure else self._oos,
            confidence=confidence if best in self._topics else (ranking[0].confidence if ranking else 0.0),
            ranking=tuple(ranking[:k]), rejected=not sure, urgent=urgency.urgent, urgency=urgency.score,
        )
