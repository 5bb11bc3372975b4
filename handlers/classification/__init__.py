"""Topic classification of client requests (ISP / telecom front office).

Typical use::

    from handlers.classification import load_or_train_default
    classifier = load_or_train_default(cache_dir="var/models")
    result = classifier.classify("у меня не работает интернет уже 3 дня")
    result.topic, result.confidence, result.rejected, result.urgent, result.ranking

``classify`` is CPU-bound (about a millisecond); async callers may run it in a thread.
This package must not import aiogram, aiohttp or rasa_sdk.
"""

from __future__ import annotations

import importlib
from typing import Any

# The engine needs numpy and the sentence encoder (training also scikit-learn): seconds to import. Channels
# import this package for `remote.classify_text` and `TOPICS` while the service starts, so the heavy names
# load on first use (PEP 562) and start-up does not wait for them.
_LAZY = {
    "DEFAULT_OOS_LABEL": "engine", "Classification": "engine", "LinearTopicModel": "engine",
    "TopicClassifier": "engine", "TopicScore": "engine",
    "load_model": "model_store", "load_or_train_default": "model_store", "save_model": "model_store",
    "DataFormatError": "nlu_data", "Example": "nlu_data", "load_examples": "nlu_data", "load_many": "nlu_data",
    "TrainSettings": "trainer", "train": "trainer",
    "Urgency": "urgency", "detect_urgency": "urgency",
}


def __getattr__(name: str) -> Any:
    if name == "OOS_TOPIC":
        return __getattr__("DEFAULT_OOS_LABEL")
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{__name__}.{module}"), name)
    globals()[name] = value
    return value


TOPICS = (
    "balance",
    "documents",
    "tariff_change",
    "pause_service",
    "termination",
    "no_connection",
    "slow_connection",
    "equipment",
    "line_damage",
    "human",
    "complaint",
    "new_connection",
    "feedback",
)

__all__ = [
    "DEFAULT_OOS_LABEL",
    "OOS_TOPIC",
    "TOPICS",
    "Classification",
    "DataFormatError",
    "Example",
    "LinearTopicModel",
    "TopicClassifier",
    "TopicScore",
    "TrainSettings",
    "Urgency",
    "detect_urgency",
    "load_examples",
    "load_many",
    "load_model",
    "load_or_train_default",
    "save_model",
    "train",
]
