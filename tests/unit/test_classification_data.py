import pytest

from handlers.classification.model_store import DEFAULT_DATA_DIR, training_files
from handlers.classification.nlu_data import DataFormatError, is_test_file, load_examples, load_many

TOPICS = {"balance", "documents", "tariff_change", "pause_service", "termination", "no_connection",
          "slow_connection", "equipment", "line_damage", "human", "complaint", "new_connection", "feedback"}


def test_rasa_yaml_with_entities_and_long_form(tmp_path):
    path = tmp_path / "nlu.yml"
    path.write_text(
        'version: "3.1"\nnlu:\n- intent: balance\n  examples: |\n    - сколько денег\n'
        '    - баланс по договору [123](contract)\n- synonym: деньги\n  examples: |\n    - бабки\n'
        "- intent: human\n  examples:\n  - text: оператор\n",
        encoding="utf-8",
    )
    examples = load_examples(path)
    assert [(e.text, e.label) for e in examples] == [
        ("сколько денег", "balance"), ("баланс по договору 123", "balance"), ("оператор", "human")]


def test_csv_loading(tmp_path):
    path = tmp_path / "data.csv"
    path.write_text('text,label\n"hello, world",greet\nbye,leave\n', encoding="utf-8")
    assert [(e.text, e.label) for e in load_examples(path)] == [("hello, world", "greet"), ("bye", "leave")]


@pytest.mark.parametrize(
    ("name", "content", "message"),
    [
        ("bad.yml", "nlu: [unclosed", "invalid YAML"),
        ("nolist.yml", "version: '3.1'\nfoo: bar\n", "nlu:"),
        ("noex.yml", "nlu:\n- intent: x\n", "no examples"),
        ("noheader.csv", "a,b\n1,2\n", "header"),
        ("extra.csv", "text,label\nhello,greet,extra\n", "2 columns"),
        ("nolabel.csv", "text,label\nhello,\n", "empty label"),
        ("empty.csv", "text,label\n", "no examples"),
        ("data.json", "{}", "unknown format"),
    ],
)
def test_malformed_files_raise_one_clear_error(tmp_path, name, content, message):
    path = tmp_path / name
    path.write_text(content, encoding="utf-8")
    with pytest.raises(DataFormatError) as info:
        load_examples(path)
    assert message in str(info.value)
    assert "\n" not in str(info.value)


def test_binary_and_missing_files(tmp_path):
    path = tmp_path / "bin.csv"
    path.write_bytes(b"\xff\xfe\x00\x81garbage")
    with pytest.raises(DataFormatError):
        load_examples(path)
    with pytest.raises(DataFormatError, match="not found"):
        load_examples(tmp_path / "missing.yml")


def test_test_files_are_never_training_files():
    assert is_test_file("data/nlu/test_ru.yml") and is_test_file("en_test.yml")
    assert not is_test_file("data/nlu/ru.yml") and not is_test_file("contest.yml")
    names = [p.name for p in training_files(DEFAULT_DATA_DIR)]
    assert "ru.yml" in names and "en.yml" in names
    assert not any(is_test_file(n) for n in names)


@pytest.mark.parametrize("language", ["ru", "en"])
def test_shipped_data_covers_every_topic(language):
    train = load_examples(DEFAULT_DATA_DIR / f"{language}.yml")
    test = load_examples(DEFAULT_DATA_DIR / f"test_{language}.yml")
    for topic in TOPICS | {"out_of_scope"}:
        assert sum(e.label == topic for e in train) >= 40, topic
        assert sum(e.label == topic for e in test) >= 15, topic
    assert {e.label for e in train} == TOPICS | {"out_of_scope"}
    overlap = {e.text.lower() for e in train} & {e.text.lower() for e in test}
    assert not overlap, f"held-out examples also in training: {sorted(overlap)[:5]}"


def test_load_many_concatenates(tmp_path):
    a, b = tmp_path / "a.csv", tmp_path / "b.csv"
    a.write_text("text,label\nx,1\n", encoding="utf-8")
    b.write_text("text,label\ny,2\n", encoding="utf-8")
    assert [e.text for e in load_many([a, b])] == ["x", "y"]
