"""load_or_train_default: trains once, reuses the cache, retrains when data or settings change."""

import pytest

import handlers.classification.model_store as store
from handlers.classification import TrainSettings

YAML = """version: "3.1"
nlu:
- intent: balance
  examples: |
{balance}
- intent: human
  examples: |
{human}
- intent: out_of_scope
  examples: |
{oos}
"""


def _lines(items):
    return "\n".join(f"    - {item}" for item in items)


def _write_data(directory, extra=""):
    balance = [f"какой у меня баланс {w}" for w in ("сейчас", "сегодня", "на счете", "пожалуйста", "по договору")]
    balance += [f"how much money is on my account {w}" for w in ("now", "today", "please", "left", "in total")]
    human = [f"соедините с оператором {w}" for w in ("сейчас", "срочно", "пожалуйста", "живым", "любым")]
    human += [f"I want to talk to a person {w}" for w in ("now", "please", "today", "urgently", "at once")]
    oos = ["расскажи анекдот", "какая погода", "tell me a joke", "what time is it", "кто ты", "how are you",
           "как сварить суп", "play music", "сколько лет луне", "who is the president"]
    (directory / "ru.yml").write_text(YAML.format(balance=_lines(balance + ([extra] if extra else [])),
                                                  human=_lines(human), oos=_lines(oos)), encoding="utf-8")
    (directory / "test_ru.yml").write_text(YAML.format(balance=_lines(["баланс"]), human=_lines(["оператор"]),
                                                       oos=_lines(["привет"])), encoding="utf-8")


@pytest.fixture
def counted_train(monkeypatch):
    calls = []
    real_train = store.train

    def train(examples, **kwargs):
        examples = list(examples)
        calls.append(examples)
        return real_train(examples, **kwargs)

    monkeypatch.setattr(store, "train", train)
    return calls


def test_trains_once_then_reuses_cache(tmp_path, counted_train):
    data, cache = tmp_path / "data", tmp_path / "cache"
    data.mkdir()
    _write_data(data)
    first = store.load_or_train_default(cache, data_dir=data)
    assert len(counted_train) == 1
    assert (cache / store.CACHE_FILE_NAME).is_file()
    # held-out test files are never part of the training data
    assert all(e.text not in {"баланс", "оператор", "привет"} for e in counted_train[0])
    second = store.load_or_train_default(cache, data_dir=data)
    assert len(counted_train) == 1
    text = "сколько денег у меня на счете"
    assert second.classify(text) == first.classify(text)


def test_retrains_when_data_changes(tmp_path, counted_train):
    data, cache = tmp_path / "data", tmp_path / "cache"
    data.mkdir()
    _write_data(data)
    store.load_or_train_default(cache, data_dir=data)
    _write_data(data, extra="покажите остаток на счете")
    store.load_or_train_default(cache, data_dir=data)
    assert len(counted_train) == 2
    store.load_or_train_default(cache, data_dir=data)
    assert len(counted_train) == 2


def test_test_file_changes_do_not_retrain(tmp_path, counted_train):
    data, cache = tmp_path / "data", tmp_path / "cache"
    data.mkdir()
    _write_data(data)
    store.load_or_train_default(cache, data_dir=data)
    (data / "test_ru.yml").write_text('version: "3.1"\nnlu:\n- intent: balance\n  examples: |\n    - x\n',
                                      encoding="utf-8")
    store.load_or_train_default(cache, data_dir=data)
    assert len(counted_train) == 1


def test_retrains_when_settings_change_or_cache_is_corrupt(tmp_path, counted_train):
    data, cache = tmp_path / "data", tmp_path / "cache"
    data.mkdir()
    _write_data(data)
    store.load_or_train_default(cache, data_dir=data)
    store.load_or_train_default(cache, data_dir=data, settings=TrainSettings(svm_c=0.5))
    assert len(counted_train) == 2
    (cache / store.CACHE_FILE_NAME).write_bytes(b"not a pickle")
    model = store.load_or_train_default(cache, data_dir=data, settings=TrainSettings(svm_c=0.5))
    assert len(counted_train) == 3
    assert model.classify("оператор срочно").topic in model.topics + (model.oos_label,)


def test_save_and_load_round_trip(tmp_path):
    data = tmp_path / "data"
    data.mkdir()
    _write_data(data)
    model = store.load_or_train_default(tmp_path / "cache", data_dir=data)
    path = tmp_path / "model.pkl"
    store.save_model(model, path)
    loaded = store.load_model(path)
    for text in ("какой баланс", "соедините с оператором", "tell me a joke"):
        assert loaded.classify(text) == model.classify(text)
