"""Build aiogram's pydantic validators on first use instead of at import (about 80 MB less per process).

Why: aiogram's `types` and `methods` packages define ~590 pydantic models, and importing them compiles a
validator and a serializer for every one (aiogram calls `model_rebuild()` on each at import). A compiled
validator carries its own copy of every model nested in it, so the Bot API's deep tree (Message inside
Update, CallbackQuery, Chat, ...) is compiled hundreds of times over: importing aiogram costs ~150 MB of
resident memory, half the web process's 300 MB budget (issue 9). A bot uses a few dozen of those models.

`build_validators_on_first_use()` drops the compiled validators, serializers and core schemas of every
model, and puts pydantic's own placeholders in their place (the ones pydantic uses for models declared with
`defer_build=True`). The first time a model is validated or serialized, its placeholder rebuilds it with
aiogram's own namespace, exactly as aiogram's import did, so the result is the same compiled schema (tests
compare every model's rebuilt core schema with the one aiogram built). `warm()` builds the ones every bot
update needs at start-up so that no client pays the one-off compile (a few ms per model).

The placeholders are a pydantic internal (`pydantic._internal._mock_val_ser`). If pydantic changes them,
the function logs why and leaves aiogram as it is: more memory, same behaviour.
"""

from __future__ import annotations

import gc
import inspect
import logging
from typing import Any

log = logging.getLogger(__name__)

_ATTRIBUTES = ("__pydantic_core_schema__", "__pydantic_validator__", "__pydantic_serializer__")
_done = False

# What the bot adapter and the outbox sender validate or send on every update: built at start-up.
WARM_MODELS = ("Update", "ErrorEvent", "InlineKeyboardMarkup", "InlineKeyboardButton", "ReplyKeyboardMarkup",
               "KeyboardButton", "ReplyKeyboardRemove", "ReplyParameters", "LinkPreviewOptions",
               "SendMessage", "SendDocument", "AnswerCallbackQuery", "EditMessageReplyMarkup", "DeleteMessage",
               "SendChatAction", "GetFile", "GetMe")


def aiogram_models() -> list[type]:
    """Every concrete pydantic model of aiogram.types and aiogram.methods (generic bases excluded)."""
    from aiogram import methods, types
    from pydantic import BaseModel

    found = []
    for module in (types, methods):
        for name in module.__all__:
            cls = getattr(module, name, None)
            if (inspect.isclass(cls) and issubclass(cls, BaseModel)
                    and not cls.__pydantic_generic_metadata__.get("parameters")):
                found.append(cls)
    return found


def _namespace() -> dict[str, Any]:
    """The names aiogram resolves its forward references with (see the end of aiogram/types/__init__.py)."""
    from typing import Literal, Optional, Union

    from aiogram import types
    from aiogram.client.default import Default

    return {"List": list, "Optional": Optional, "Union": Union, "Literal": Literal, "Default": Default,
            **{name: getattr(types, name) for name in types.__all__}}


def build_validators_on_first_use() -> int:
    """Replace aiogram's compiled validators by build-on-first-use placeholders. Returns how many models.

    Idempotent; call it before aiogram models are used concurrently from several threads (pydantic's
    rebuild is not thread-safe; the bot uses them from the event loop only)."""
    global _done
    if _done:
        return 0
    _done = True
    try:
        from pydantic._internal._mock_val_ser import MockCoreSchema, MockValSer
    except ImportError as exc:  # pragma: no cover - depends on the installed pydantic
        log.warning("pydantic has no build-on-first-use placeholders (%s); aiogram keeps its validators", exc)
        return 0
    namespace = _namespace()
    models = aiogram_models()
    for cls in models:
        if not cls.__pydantic_complete__:
            continue
        for attribute in _ATTRIBUTES:
            if attribute in cls.__dict__:
                delattr(cls, attribute)
        cls.__pydantic_complete__ = False
        rebuild = _rebuilder(cls, namespace)
        message = f"aiogram model {cls.__name__} could not be rebuilt"
        cls.__pydantic_core_schema__ = MockCoreSchema(  # type: ignore[attr-defined]
            message, code="class-not-fully-defined", attempt_rebuild=rebuild("__pydantic_core_schema__"))
        cls.__pydantic_validator__ = MockValSer(  # type: ignore[attr-defined]
            message, code="class-not-fully-defined", val_or_ser="validator",
            attempt_rebuild=rebuild("__pydantic_validator__"))
        cls.__pydantic_serializer__ = MockValSer(  # type: ignore[attr-defined]
            message, code="class-not-fully-defined", val_or_ser="serializer",
            attempt_rebuild=rebuild("__pydantic_serializer__"))
    gc.collect()
    release_freed_memory()
    return len(models)


def release_freed_memory() -> None:
    """Hand memory freed on the C heap back to the OS now. glibc keeps freed blocks for reuse, so without
    this the process would still show the dropped validators in its resident size (and others could not
    use it). Elsewhere (macOS, musl) this is a no-op."""
    try:
        import ctypes

        ctypes.CDLL(None).malloc_trim(0)
    except (OSError, AttributeError):
        pass


def _rebuilder(cls: Any, namespace: dict[str, Any]):
    def for_attribute(attribute: str):
        def rebuild() -> Any:
            if not cls.__pydantic_complete__:
                cls.model_rebuild(force=True, _types_namespace=namespace)
            return cls.__dict__[attribute]

        return rebuild

    return for_attribute


def lean_aiogram() -> None:
    """What the composition of a bot does first: placeholders everywhere, then the everyday models built."""
    if build_validators_on_first_use():
        warm()


def warm(names: tuple[str, ...] = WARM_MODELS) -> None:
    """Compile the validators of `names` now (start-up), so the first client update does not wait for them."""
    from aiogram import methods, types

    for name in names:
        cls = getattr(types, name, None) or getattr(methods, name, None)
        if cls is not None and not cls.__pydantic_complete__:
            cls.__pydantic_validator__.rebuild()
            if not cls.__pydantic_complete__:
                raise RuntimeError(f"aiogram model {name} could not be rebuilt")
