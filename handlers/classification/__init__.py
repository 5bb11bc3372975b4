"""Topic classification of client requests (ISP / telecom front office).

Typical use::

    from handlers.classification import load_or_train_default
    classifier = load_or_train_default(cache_dir="var/models")
    result = classifier.classify("у меня не работает интернет уже 3 дня")
    result.topic, result.confidence, result.rejected, result.urgent, result.ranking

``classify`` is CPU-bound (about a millisecond); async callers may run it in a thread.
This package must not import aiogram, aiohttp or rasa_sdk.
"""

from .engine import (
    DEFAULT_OOS_LABEL,
    Classification,
    LinearTopicModel,
    TopicClassifier,
    TopicScore,
)
from .model_store import load_model, load_or_train_default, save_model
from .nlu_data import DataFormatError, Example, load_examples, load_many
from .trainer import TrainSettings, train
from .urgency import Urgency, detect_urgency

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
OOS_TOPIC = DEFAULT_OOS_LABEL

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
