"""train_command / evaluate_command: output format and exit codes."""

import json
import random

import pytest

from handlers.classification.commands import evaluate_command, train_command
from handlers.classification.model_store import load_model

KEYS = {"accuracy", "in_scope_accuracy", "macro_f1", "oos_recall", "p50_ms", "p99_ms", "n_train", "n_test",
        "train_seconds"}

TEMPLATES = {
    "pay_bill": ["pay my {x} bill", "I want to pay the {x} invoice", "how do I pay for {x}", "payment for {x}"],
    "weather": ["what is the weather in {x}", "is it raining in {x}", "forecast for {x}", "how cold is {x}"],
    "music": ["play {x} songs", "put on some {x} music", "I want to hear {x}", "start the {x} playlist"],
}
FILLERS = ["paris", "london", "rock", "jazz", "phone", "water", "gas", "tokyo", "berlin", "electricity",
           "moscow", "pop", "internet", "rent", "blues"]
OOS = ["how tall is mount everest", "who wrote hamlet", "translate hello to french", "what is 2 plus 2",
       "tell me a joke", "how do I bake bread", "what is the capital of peru", "set a timer", "flip a coin",
       "who painted the mona lisa", "how many legs does a spider have", "what year is it"]


def _write_csv(path, rows):
    lines = ["text,label"] + [f'"{text}",{label}' for text, label in rows]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")


@pytest.fixture
def dataset(tmp_path):
    rng = random.Random(7)
    rows = [(t.format(x=rng.choice(FILLERS)), label) for label, ts in TEMPLATES.items() for t in ts for _ in range(6)]
    rng.shuffle(rows)
    train_rows = rows[:54] + [(t, "oos") for t in OOS[:8]]
    test_rows = rows[54:] + [(t, "oos") for t in OOS[8:]]
    train, test = tmp_path / "train.csv", tmp_path / "test.csv"
    _write_csv(train, train_rows)
    _write_csv(test, test_rows)
    return train, test, len(train_rows), len(test_rows)


def test_evaluate_prints_report_and_json_last_line(dataset, capsys):
    train, test, n_train, n_test = dataset
    assert evaluate_command(str(train), str(test), "oos") == 0
    out = capsys.readouterr().out.strip().splitlines()
    metrics = json.loads(out[-1])
    assert set(metrics) == KEYS
    assert metrics["n_train"] == n_train and metrics["n_test"] == n_test
    for key in ("accuracy", "in_scope_accuracy", "macro_f1", "oos_recall"):
        assert 0.0 <= metrics[key] <= 1.0
    assert metrics["in_scope_accuracy"] >= 0.8
    assert metrics["p50_ms"] <= metrics["p99_ms"]
    report = "\n".join(out[:-1])
    assert "precision" in report and "recall" in report and "pay_bill" in report


def test_evaluate_without_oos_label(dataset, capsys):
    train, test, _, _ = dataset
    assert evaluate_command(str(train), str(test), None) == 0
    metrics = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert set(metrics) == KEYS and metrics["oos_recall"] is None


def test_evaluate_accepts_rasa_yaml(tmp_path, capsys):
    path = tmp_path / "nlu.yml"
    body = ["version: \"3.1\"", "nlu:"]
    for label, templates in TEMPLATES.items():
        body += [f"- intent: {label}", "  examples: |"]
        body += [f"    - {t.format(x=f)}" for t in templates for f in FILLERS[:4]]
    path.write_text("\n".join(body) + "\n", encoding="utf-8")
    assert evaluate_command(str(path), str(path), None) == 0
    assert json.loads(capsys.readouterr().out.strip().splitlines()[-1])["accuracy"] >= 0.9


@pytest.mark.parametrize("content", ["nlu: [broken", "text;label\na;b\n", ""])
def test_bad_input_gives_exit_code_2_and_one_line(tmp_path, dataset, capsys, content):
    _, test, _, _ = dataset
    bad = tmp_path / ("bad.yml" if content.startswith("nlu") else "bad.csv")
    bad.write_text(content, encoding="utf-8")
    assert evaluate_command(str(bad), str(test), "oos") == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error:")
    assert evaluate_command(str(tmp_path / "missing.csv"), str(test), "oos") == 2


def test_single_label_training_data_is_rejected_cleanly(tmp_path, capsys):
    path = tmp_path / "one.csv"
    _write_csv(path, [("hello there", "greet"), ("hi", "greet")])
    assert train_command([str(path)], str(tmp_path / "m.pkl")) == 2
    assert capsys.readouterr().err.startswith("error:")


def test_train_command_writes_a_loadable_model(dataset, tmp_path, capsys):
    train, _, _, _ = dataset
    out = tmp_path / "models" / "model.pkl"
    assert train_command([str(train)], str(out), "oos") == 0
    model = load_model(out)
    assert model.classify("play some jazz music").topic == "music"
    assert "saved to" in capsys.readouterr().out
