import asyncio

import pytest

from service.classifier import ClassifierNotReady, LazyTopicClassifier


class _Model:
    def classify(self, text, k=3):
        return ("classified", text, k)


async def test_not_ready_while_loading_then_serves(monkeypatch, tmp_path):
    started, release = asyncio.Event(), asyncio.Event()
    loop = asyncio.get_running_loop()

    def slow_load(cache_dir):
        loop.call_soon_threadsafe(started.set)
        asyncio.run_coroutine_threadsafe(release.wait(), loop).result()
        return _Model()

    monkeypatch.setattr("handlers.classification.load_or_train_default", slow_load)
    lazy = LazyTopicClassifier(tmp_path)
    task = asyncio.create_task(lazy.load_in_background())
    await started.wait()
    with pytest.raises(ClassifierNotReady):
        lazy.classify("интернет не работает")
    release.set()
    await task
    assert lazy.ready and lazy.classify("x", k=2) == ("classified", "x", 2)


async def test_failed_load_degrades_instead_of_crashing(monkeypatch, tmp_path, caplog):
    def broken(cache_dir):
        raise OSError("disk full")

    monkeypatch.setattr("handlers.classification.load_or_train_default", broken)
    lazy = LazyTopicClassifier(tmp_path)
    await lazy.load_in_background()
    with pytest.raises(ClassifierNotReady):
        lazy.classify("x")
    assert "cannot load or train the topic model" in caplog.text


def test_cli_processes_load_on_first_use(monkeypatch, tmp_path):
    monkeypatch.setattr("handlers.classification.load_or_train_default", lambda cache_dir: _Model())
    assert LazyTopicClassifier(tmp_path).classify("x")[0] == "classified"


async def test_model_is_warmed_up_before_the_first_request(monkeypatch, tmp_path):
    """Its first classification loads the morphology dictionaries (~0.3 s): not in a client's request."""
    seen: list[str] = []

    class Model:
        def classify(self, text, k=3):
            seen.append(text)
            return text

    monkeypatch.setattr("handlers.classification.load_or_train_default", lambda cache_dir: Model())
    lazy = LazyTopicClassifier(tmp_path)
    await lazy.load_in_background()
    assert lazy.ready and len(seen) >= 2  # a Russian and an English text, before `ready`
    lazy.classify("x")
    assert seen[-1] == "x"
