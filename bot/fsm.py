"""Conversation state: Redis when REDIS_URL is set (survives restarts, shared by processes), memory otherwise."""

from __future__ import annotations

from aiogram.fsm.state import State, StatesGroup
from aiogram.fsm.storage.base import BaseStorage, DefaultKeyBuilder
from aiogram.fsm.storage.memory import MemoryStorage

# Conversations left half-way are forgotten after a day rather than kept forever.
STATE_TTL_SECONDS = 24 * 3600


def build_storage(redis_url: str | None, prefix: str = "fo:fsm") -> BaseStorage:
    if not redis_url:
        return MemoryStorage()
    from storage.fsm import PipelinedRedisStorage, ResilientFsmStorage

    # A Redis outage must not fail updates: state falls back to this process until Redis answers again.
    return ResilientFsmStorage(PipelinedRedisStorage.from_url(
        redis_url,
        key_builder=DefaultKeyBuilder(prefix=prefix, with_bot_id=True),
        state_ttl=STATE_TTL_SECONDS,
        data_ttl=STATE_TTL_SECONDS,
        connection_kwargs={"socket_connect_timeout": 2, "socket_timeout": 2},
    ))


class Identify(StatesGroup):
    account = State()
    pin = State()


class Problem(StatesGroup):
    text = State()


class Settings(StatesGroup):
    threshold = State()
    days_before = State()


class Rating(StatesGroup):
    comment = State()


class StaffReply(StatesGroup):
    text = State()
