"""The shipped model: held-out accuracy, rejection, robustness, API shape."""

import time

import numpy as np
import pytest

from handlers.classification import Classification, TopicClassifier, TopicScore, load_or_train_default
from handlers.classification.evaluate import evaluate
from handlers.classification.model_store import DEFAULT_DATA_DIR
from handlers.classification.nlu_data import load_many


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    return load_or_train_default(tmp_path_factory.mktemp("model-cache"))


def test_held_out_accuracy_on_shipped_test_sets(model):
    test = load_many([DEFAULT_DATA_DIR / "test_ru.yml", DEFAULT_DATA_DIR / "test_en.yml"])
    report = evaluate(model, test, oos_label="out_of_scope")
    assert report.accuracy >= 0.92, report.confusions


@pytest.mark.parametrize("language", ["ru", "en"])
def test_held_out_accuracy_per_language(model, language):
    report = evaluate(model, load_many([DEFAULT_DATA_DIR / f"test_{language}.yml"]), oos_label="out_of_scope")
    assert report.accuracy >= 0.90, report.confusions


@pytest.mark.parametrize(
    ("text", "topic"),
    [
        ("у меня не работает интернет уже 3 дня", "no_connection"),
        ("internet ne rabotaet", "no_connection"),
        ("пришлите акт сверки за 2023 год", "documents"),
        ("Здравствуйте! Я давно ваш клиент, всё устраивало, но сейчас переезжаю в другой город, "
         "поэтому прошу расторгнуть договор. Спасибо.", "termination"),
        ("соедините с моим менеджером", "human"),
        ("my internet is super slow in the evenings", "slow_connection"),
    ],
)
def test_typical_requests(model, text, topic):
    result = model.classify(text)
    assert result.topic == topic, result
    assert not result.rejected


@pytest.mark.parametrize(
    "text",
    ["asdkjh qwpoeiru zxmcnv", "ыфвапролджэ", "какой рецепт у борща", "who won the world cup in 1998",
     "😀😀😀", "", "   ", "12345", "?!"],
)
def test_gibberish_and_out_of_scope_are_rejected(model, text):
    result = model.classify(text)
    assert result.rejected, result
    assert result.topic == model.oos_label


@pytest.mark.parametrize(
    "text",
    [
        "",
        "интернет " * 6000,  # ~54 KB
        "🙂" * 500,
        "<html><body><script>alert('x')</script><p>не работает интернет</p></body></html>",
        "'; DROP TABLE clients; -- SELECT * FROM users WHERE 1=1",
        "Мой router не работает, WiFi пропал 路由器坏了 ไม่มีอินเทอร์เน็ต",
        "\x00\x01\x02 \u200b\u200b",
        "a" * 50_000,
    ],
)
def test_robust_inputs_give_a_valid_result_quickly(model, text):
    started = time.perf_counter()
    result = model.classify(text)
    elapsed = time.perf_counter() - started
    assert isinstance(result, Classification)
    assert 0.0 <= result.confidence <= 1.0
    assert all(isinstance(s, TopicScore) for s in result.ranking)
    assert result.topic in model.topics or result.topic == model.oos_label
    assert elapsed < 0.5


def test_ranking_is_top_k_and_sorted(model):
    result = model.classify("как поменять тариф и сколько стоит", k=5)
    assert len(result.ranking) == 5
    confidences = [s.confidence for s in result.ranking]
    assert confidences == sorted(confidences, reverse=True)
    assert sum(confidences) <= 1.0 + 1e-6
    assert model.oos_label not in [s.topic for s in result.ranking]
    assert result.confidence == pytest.approx(result.ranking[0].confidence)


def test_urgency_is_reported(model):
    assert model.classify("СРОЧНО!!! интернет не работает уже неделю").urgent
    assert not model.classify("пришлите пожалуйста счет").urgent


def test_model_is_a_topic_classifier(model):
    assert isinstance(model, TopicClassifier)
    assert set(model.topics) == {
        "balance", "documents", "tariff_change", "pause_service", "termination", "no_connection",
        "slow_connection", "equipment", "line_damage", "human", "complaint", "new_connection", "feedback"}


def test_sentence_vector_terms_folded_into_one_product_score_the_same():
    from handlers.classification.trainer import TrainSettings, train

    # without the nearest-neighbour term the projection folds into the coefficients
    folded = train(load_many([DEFAULT_DATA_DIR / "en.yml"]), oos_label="out_of_scope",
                   settings=TrainSettings(knn_weights=(0.0,)))
    if folded.params.projection is None:
        pytest.skip("sentence encoder disabled")
    assert folded.params.knn_weight == 0.0 and folded._embedding_coef is not None
    unfolded = type(folded)(folded.params, encoder=folded._encoder)
    unfolded._intercept, unfolded._embedding_coef = folded.params.intercept, None  # project, then score
    for text in ("my internet is not working since yesterday", "send me the invoice", "hello"):
        got, known = folded.scores_one(text)
        expected, expected_known = unfolded.scores_one(text)
        assert known == expected_known
        assert np.allclose(got, expected, atol=1e-4), float(np.abs(got - expected).max())
