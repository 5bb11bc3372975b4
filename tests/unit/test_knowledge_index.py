"""The knowledge index computes TF-IDF without scikit-learn; its scores must be scikit-learn's.

The reference below is what the index did with scikit-learn: TfidfVectorizer(char_wb 2..5) and
TfidfVectorizer(word 1..2, token_pattern (?u)\\b\\w+\\b), both sublinear, fitted on rows + background,
score = rows @ transform([query]).T.
"""

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml

from handlers.classification.nlu_data import load_examples
from handlers.knowledge.index import ArticleDoc, KnowledgeIndex
from handlers.knowledge.normalize import normalize

ROOT = Path(__file__).resolve().parents[2]
ARTICLES = [
    ArticleDoc(1, "ru", "equipment", "Перезагрузка роутера", ("роутер горит красным", "как перезагрузить роутер"),
               "Выключите роутер на 30 секунд."),
    ArticleDoc(2, "ru", "balance", "Способы оплаты", ("как оплатить картой", "оплата через банк"), "Картой."),
    ArticleDoc(3, "ru", None, "Часы работы", ("когда вы работаете",), "Круглосуточно."),
]
QUERIES = [
    "у меня роутер горит красным уже третий день",
    "как оплатить картой мир",
    "когда работаете",
    "zzzz qqqq",  # no known term at all
    "роутер роутер роутер",  # repeated terms: sublinear tf
    "a",
    "how do I restart my router",
    "wifi not working after a power cut 2 times",
    "не  работает   интернет",
]


def _sklearn_row_scores(index: KnowledgeIndex, articles, background, query: str) -> np.ndarray:
    from sklearn.feature_extraction.text import TfidfVectorizer

    rows = [index._normalize(text) for article in articles for text in (article.title, *article.questions)]
    corpus = rows + [index._normalize(text) for text in background]
    text = index._normalize(query)
    scores = []
    for vectorizer in (TfidfVectorizer(analyzer="char_wb", ngram_range=(2, 5), sublinear_tf=True),
                       TfidfVectorizer(analyzer="word", ngram_range=(1, 2), sublinear_tf=True,
                                       token_pattern=r"(?u)\b\w+\b")):
        vectorizer.fit(corpus)
        scores.append((vectorizer.transform(rows) @ vectorizer.transform([text]).T).toarray().ravel())
    return scores


def _shipped_articles(language: str) -> list[ArticleDoc]:
    data = yaml.safe_load((ROOT / "data" / "knowledge" / "articles.yaml").read_text(encoding="utf-8"))
    return [ArticleDoc(i, language, item.get("topic"), item[language]["title"],
                       tuple(str(q) for q in item[language].get("questions", [])), item[language]["answer"])
            for i, item in enumerate(data) if language in item]


@pytest.mark.parametrize("query", QUERIES)
def test_query_scores_equal_scikit_learn(query):
    background = ("интернет не работает", "оплата счета")
    index = KnowledgeIndex(ARTICLES, normalize, background=background)
    expected_char, expected_word = _sklearn_row_scores(index, ARTICLES, background, query)
    text = index._normalize(query)
    np.testing.assert_allclose(index._char_scores(text), expected_char, atol=1e-12)
    np.testing.assert_allclose(index._word_scores(text), expected_word, atol=1e-12)


@pytest.mark.parametrize("language", ["ru", "en"])
def test_shipped_articles_score_as_with_scikit_learn(language):
    """The shipped knowledge base with the classifier's training data as background, as the service builds it."""
    articles = _shipped_articles(language)
    background = tuple(e.text for e in load_examples(ROOT / "data" / "nlu" / f"{language}.yml"))
    index = KnowledgeIndex(articles, normalize, background=background)
    queries = QUERIES + [q for article in articles[:5] for q in article.questions[:2]]
    for query in queries:
        expected_char, expected_word = _sklearn_row_scores(index, articles, background, query)
        text = index._normalize(query)
        np.testing.assert_allclose(index._char_scores(text), expected_char, atol=1e-6)
        np.testing.assert_allclose(index._word_scores(text), expected_word, atol=1e-6)


def test_search_ranks_the_matching_article_first():
    index = KnowledgeIndex(ARTICLES, normalize)
    assert index.search("роутер горит красным")[0].article.id == 1
    assert index.search("оплатить картой")[0].article.id == 2
    assert index.search("   ") == []
    assert KnowledgeIndex([], normalize).search("роутер") == []


def test_building_and_searching_never_load_sklearn_or_scipy():
    """A web process rebuilds the index when articles change: that must not pull scikit-learn in (issue 9)."""
    script = """
import json, sys
from handlers.knowledge.index import ArticleDoc, KnowledgeIndex
from handlers.knowledge.normalize import normalize
from handlers.knowledge.service import background_texts
index = KnowledgeIndex([ArticleDoc(1, "ru", None, "Перезагрузка роутера", ("роутер завис",), "Выключите.")],
                       normalize, background_texts("ru"))
hits = index.search("роутер завис что делать")
print(json.dumps({"hits": [h.article.id for h in hits],
                  "heavy": sorted(m for m in sys.modules if m.split(".")[0] in ("sklearn", "scipy"))}))
"""
    done = subprocess.run([sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, timeout=120,
                          check=False)
    assert done.returncode == 0, done.stderr[-3000:]
    assert json.loads(done.stdout.splitlines()[-1]) == {"hits": [1], "heavy": []}
