"""load_or_train_default: trains once, reuses the cache, retrains when data or settings change; by default
the training runs in a child process, so the caller never loads scikit-learn or SciPy."""

import json
import pickle
import subprocess
import sys
from pathlib import Path

import pytest

import handlers.classification.model_store as store
import handlers.classification.trainer as trainer
from handlers.classification import TrainSettings

ROOT = Path(__file__).resolve().parents[2]

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
    """Trainings in this process (the tests below train in-process to count them)."""
    calls = []
    real_train = trainer.train

    def train(examples, **kwargs):
        examples = list(examples)
        calls.append(examples)
        return real_train(examples, **kwargs)

    monkeypatch.setattr(trainer, "train", train)
    return calls


def test_trains_once_then_reuses_cache(tmp_path, counted_train):
    data, cache = tmp_path / "data", tmp_path / "cache"
    data.mkdir()
    _write_data(data)
    first = store.load_or_train_default(cache, data_dir=data, in_process=True)
    assert len(counted_train) == 1
    assert (cache / store.CACHE_FILE_NAME).is_file()
    # held-out test files are never part of the training data
    assert all(e.text not in {"баланс", "оператор", "привет"} for e in counted_train[0])
    second = store.load_or_train_default(cache, data_dir=data, in_process=True)
    assert len(counted_train) == 1
    text = "сколько денег у меня на счете"
    assert second.classify(text) == first.classify(text)


def test_retrains_when_data_changes(tmp_path, counted_train):
    data, cache = tmp_path / "data", tmp_path / "cache"
    data.mkdir()
    _write_data(data)
    store.load_or_train_default(cache, data_dir=data, in_process=True)
    _write_data(data, extra="покажите остаток на счете")
    store.load_or_train_default(cache, data_dir=data, in_process=True)
    assert len(counted_train) == 2
    store.load_or_train_default(cache, data_dir=data, in_process=True)
    assert len(counted_train) == 2


def test_test_file_changes_do_not_retrain(tmp_path, counted_train):
    data, cache = tmp_path / "data", tmp_path / "cache"
    data.mkdir()
    _write_data(data)
    store.load_or_train_default(cache, data_dir=data, in_process=True)
    (data / "test_ru.yml").write_text('version: "3.1"\nnlu:\n- intent: balance\n  examples: |\n    - x\n',
                                      encoding="utf-8")
    store.load_or_train_default(cache, data_dir=data, in_process=True)
    assert len(counted_train) == 1


def test_retrains_when_settings_change_or_cache_is_corrupt(tmp_path, counted_train):
    data, cache = tmp_path / "data", tmp_path / "cache"
    data.mkdir()
    _write_data(data)
    store.load_or_train_default(cache, data_dir=data, in_process=True)
    store.load_or_train_default(cache, data_dir=data, settings=TrainSettings(svm_c=0.5), in_process=True)
    assert len(counted_train) == 2
    (cache / store.CACHE_FILE_NAME).write_bytes(b"not a pickle")
    model = store.load_or_train_default(cache, data_dir=data, settings=TrainSettings(svm_c=0.5), in_process=True)
    assert len(counted_train) == 3
    assert model.classify("оператор срочно").topic in model.topics + (model.oos_label,)


def test_cache_of_an_older_format_is_retrained(tmp_path, counted_train):
    """Format 2 pickled scikit-learn vectorisers, format 3 had unrounded encoder rows: such a cache must be
    replaced, not loaded."""
    data, cache = tmp_path / "data", tmp_path / "cache"
    data.mkdir()
    _write_data(data)
    store.load_or_train_default(cache, data_dir=data, in_process=True)
    payload = pickle.loads((cache / store.CACHE_FILE_NAME).read_bytes())
    payload["format"] = 3
    (cache / store.CACHE_FILE_NAME).write_bytes(pickle.dumps(payload))
    store.load_or_train_default(cache, data_dir=data, in_process=True)
    assert len(counted_train) == 2
    assert pickle.loads((cache / store.CACHE_FILE_NAME).read_bytes())["format"] == store.MODEL_FORMAT_VERSION == 4


def test_save_and_load_round_trip(tmp_path):
    data = tmp_path / "data"
    data.mkdir()
    _write_data(data)
    model = store.load_or_train_default(tmp_path / "cache", data_dir=data, in_process=True)
    path = tmp_path / "model.pkl"
    store.save_model(model, path)
    loaded = store.load_model(path)
    for text in ("какой баланс", "соедините с оператором", "tell me a joke"):
        assert loaded.classify(text) == model.classify(text)


# -- training in a child process; serving without scikit-learn -------------------------------------------

_TEXTS = ["какой у меня баланс", "соедините с оператором", "tell me a joke", "", "zzz"]
_SERVE = """
import json, sys
from handlers.classification import load_or_train_default
model = load_or_train_default(sys.argv[1], data_dir=sys.argv[2])
results = [[r.topic, r.confidence, r.rejected] for r in map(model.classify, json.loads(sys.argv[3]))]
heavy = sorted(m for m in sys.modules if m.split(".")[0] in ("sklearn", "scipy"))
print(json.dumps({"results": results, "heavy": heavy}))
"""


def _serve_in_fresh_interpreter(cache, data) -> dict:
    """What a web process does: load (or have trained) the cached model, classify; which modules got loaded."""
    done = subprocess.run([sys.executable, "-c", _SERVE, str(cache), str(data), json.dumps(_TEXTS)], cwd=ROOT,
                          capture_output=True, text=True, timeout=300, check=False)
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.splitlines()[-1])


def test_first_start_and_restart_never_load_sklearn_or_scipy(tmp_path):
    data, cache = tmp_path / "data", tmp_path / "cache"
    data.mkdir()
    _write_data(data)
    first = _serve_in_fresh_interpreter(cache, data)  # no cache: a child process trains and writes it
    assert first["heavy"] == []
    cache_file = cache / store.CACHE_FILE_NAME
    written = cache_file.stat()
    second = _serve_in_fresh_interpreter(cache, data)  # the cached model, as after a restart
    assert second["heavy"] == []
    assert cache_file.stat().st_ino == written.st_ino and cache_file.stat().st_mtime_ns == written.st_mtime_ns
    assert second["results"] == first["results"]
    assert first["results"][0][0] == "balance" and not first["results"][0][2]
    # the child-trained model is the one this process loads (the shared sentence encoder's per-token cache,
    # warm in this process, may move the last digits)
    in_process = [[r.topic, r.confidence, r.rejected] for r in map(store.load_model(cache_file).classify, _TEXTS)]
    assert [[t, pytest.approx(c, abs=1e-6), r] for t, c, r in in_process] == first["results"]



def test_training_in_child_process_writes_the_cache(tmp_path, counted_train):
    data, cache = tmp_path / "data", tmp_path / "cache"
    data.mkdir()
    _write_data(data)
    model = store.load_or_train_default(cache, data_dir=data)
    assert counted_train == []  # not trained in this process
    assert (cache / store.CACHE_FILE_NAME).is_file()
    assert model.classify("какой у меня баланс").topic == "balance"
    assert store.load_or_train_default(cache, data_dir=data, in_process=True).classify("x") == model.classify("x")
    assert counted_train == []  # the child's cache is reused


def test_bad_training_data_in_child_process_raises_in_parent(tmp_path):
    data = tmp_path / "data"
    data.mkdir()
    (data / "ru.yml").write_text('version: "3.1"\nnlu:\n- intent: balance\n  examples: |\n    - баланс\n',
                                 encoding="utf-8")
    with pytest.raises(store.TrainingFailed, match="at least two in-scope labels") as failure:
        store.load_or_train_default(tmp_path / "cache", data_dir=data)
    assert failure.value.error_type == "ValueError"
    (data / "ru.yml").write_text("nlu: [not, a, mapping", encoding="utf-8")
    with pytest.raises(store.TrainingFailed, match="ru.yml"):
        store.load_or_train_default(tmp_path / "cache", data_dir=data)
    assert not (tmp_path / "cache" / store.CACHE_FILE_NAME).exists()


def test_child_process_killed_raises_in_parent(tmp_path, monkeypatch):
    data = tmp_path / "data"
    data.mkdir()
    _write_data(data)
    monkeypatch.setattr(store.sys, "executable", "/bin/false")  # a "child" that dies without an answer
    with pytest.raises(store.TrainingFailed, match="exited with 1"):
        store.load_or_train_default(tmp_path / "cache", data_dir=data)
