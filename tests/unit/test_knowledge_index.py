"""The knowledge index scores queries without scikit-learn's transform; the numbers must be the same."""

import numpy as np
import pytest

from handlers.knowledge.index import ArticleDoc, KnowledgeIndex
from handlers.knowledge.normalize import normalize

ARTICLES = [
    ArticleDoc(1, "ru", "equipment", "Перезагрузка роутера", ("роутер горит красным", "как перезагрузить роутер"),
               "Выключите роутер на 30 секунд."),
    ArticleDoc(2, "ru", "balance", "Способы оплаты", ("как оплатить картой", "оплата через банк"), "Картой."),
    ArticleDoc(3, "ru", None, "Часы работы", ("когда вы работаете",), "Круглосуточно."),
]


@pytest.mark.parametrize("query", [
    "у меня роутер горит красным уже третий день",
    "как оплатить картой мир",
    "когда работаете",
    "zzzz qqqq",  # no known term at all
])
def test_query_scores_equal_scikit_learn_transform(query):
    index = KnowledgeIndex(ARTICLES, normalize, background=("интернет не работает", "оплата счета"))
    text = index._normalize(query)
    for vectorizer, rows, scorer in ((index._char, index._char_rows, index._char_scores),
                                     (index._word, index._word_rows, index._word_scores)):
        expected = (rows @ vectorizer.transform([text]).T).toarray().ravel()
        np.testing.assert_allclose(scorer(text), expected, atol=1e-12)


def test_search_ranks_the_matching_article_first():
    index = KnowledgeIndex(ARTICLES, normalize)
    assert index.search("роутер горит красным")[0].article.id == 1
    assert index.search("оплатить картой")[0].article.id == 2
    assert index.search("   ") == []
