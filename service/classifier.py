"""The shipped topic model, loaded (or trained on first start) without delaying the service.

The web process starts loading in the background at start-up; a request that arrives before the model is
ready gets "not ready", which the use cases treat as "unsure" (the client picks the topic from buttons).
Processes that never start a background load (CLI tools) load it on first use instead.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)


_WARM_UP = ("у меня не работает интернет", "what is my balance")


def _release_freed_heap() -> None:
    """Loading the model reads and drops tens of MB of temporaries (the weights archive, the tokenizer's
    model, the pickled parameters). glibc keeps such freed heap for reuse instead of returning it, which
    left ~27 MB in every web process's resident size (issue 9); malloc_trim returns it. No-op off glibc."""
    try:
        import ctypes

        ctypes.CDLL(None).malloc_trim(0)
    except (OSError, AttributeError):
        return


class ClassifierNotReady(RuntimeError):
    pass


class LazyTopicClassifier:
    def __init__(self, cache_dir: Path) -> None:
        self._cache_dir = cache_dir
        self._model: Any = None
        self._loading = False
        self._failed = False
        self._lock = threading.Lock()

    @property
    def ready(self) -> bool:
        return self._model is not None

    def _load(self) -> Any:
        with self._lock:
            if self._model is None:
                from handlers.classification import load_or_train_default

                started = time.monotonic()
                model = load_or_train_default(cache_dir=self._cache_dir)
                # The first classification loads the morphology dictionaries and fills lazy tables: here,
                # not in a client's request.
                for text in _WARM_UP:
                    model.classify(text)
                _release_freed_heap()
                self._model = model
                log.info("topic model ready in %.1fs", time.monotonic() - started)
            return self._model

    async def load_in_background(self) -> None:
        self._loading = True
        try:
            await _in_daemon_thread(self._load)
        except Exception:
            # The service stays useful without the model: requests are treated as unsure.
            log.exception("cannot load or train the topic model; clients will choose topics themselves")
            self._failed = True
        finally:
            self._loading = False

    def classify(self, text: str, k: int = 3) -> Any:
        model = self._model
        if model is None:
            if self._loading or self._failed:
                raise ClassifierNotReady("the topic model is not available")
            model = self._load()
        return model.classify(text, k=k)


async def _in_daemon_thread(function: Any) -> Any:
    """Run blocking work in a daemon thread: unlike asyncio.to_thread, a SIGTERM during a long first-start
    training does not have to wait for it (the model cache is written atomically, so nothing is corrupted)."""
    loop = asyncio.get_running_loop()
    future: asyncio.Future[Any] = loop.create_future()

    def work() -> None:
        try:
            result = function()
        except BaseException as exc:  # handed to the awaiting coroutine
            loop.call_soon_threadsafe(_settle, future, None, exc)
        else:
            loop.call_soon_threadsafe(_settle, future, result, None)

    threading.Thread(target=work, name="topic-model", daemon=True).start()
    return await future


def _settle(future: asyncio.Future[Any], result: Any, error: BaseException | None) -> None:
    if future.done():  # the awaiting task was cancelled (shutdown)
        return
    if error is not None:
        future.set_exception(error)
    else:
        future.set_result(result)
