"""Similarity search over knowledge-base articles.

Each question variant (and the title) of an article is a row; a query's score for an article is its best
cosine similarity over the article's rows, averaged over two views of the text: character n-grams (robust
to typos and word forms) and word lemmas (robust to word order). Pure and synchronous: the service builds
one index per language and swaps it whole when articles change.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
from sklearn.feature_extraction.text import TfidfVectorizer


@dataclass(frozen=True)
class ArticleDoc:
    id: int
    language: str
    topic: str | None
    title: str
    questions: tuple[str, ...]
    answer: str


@dataclass(frozen=True)
class Hit:
    article: ArticleDoc
    score: float


# Function words carry no meaning for retrieval but dominate short queries; language knowledge, not tuning.
STOP_WORDS = frozenset("""
a an the and or but if of for to in on at by with from as is are was were be been am i me my we our you your
it its this that these those do does did can could would should will shall how what when where which who why
please hi hello thanks thank there here have has had not no so just about any some
и в во не что он на я с со как а то все она так его но да ты к у же вы за бы по только ее мне было вот от
меня еще нет о из ему теперь когда даже ну вдруг ли если уже или ни быть был него до вас нибудь опять уж вам
ведь там потом себя ничего ей может они тут где есть надо ней для мы тебя их чем была сам чтоб без будто чего
раз тоже себе под будет ж тогда кто этот того потому этого какой совсем ним здесь этом один почти мой тем
чтобы нее сейчас были куда зачем всех никогда можно при наконец два об другой хоть после над больше тот
через эти нас про всего них какая много разве три эту моя впрочем хорошо свою этой перед иногда лучше чуть
том нельзя такой им более всегда конечно всю между это весь мочь сколько здравствуйте привет пожалуйста
спасибо добрый день вечер утро
""".split())


class _QueryScorer:
    """Cosine similarity of one query against the fitted rows: the same numbers as
    `rows @ vectorizer.transform([query]).T`, computed directly from the vocabulary and idf weights.
    scikit-learn's transform validates its input and builds a matrix for every call, which costs several
    times the arithmetic for one short query, and the knowledge base is searched on every client message."""

    def __init__(self, vectorizer: TfidfVectorizer, rows: object) -> None:
        assert vectorizer.sublinear_tf and vectorizer.norm == "l2" and vectorizer.use_idf
        self._analyze = vectorizer.build_analyzer()
        self._vocabulary: dict[str, int] = vectorizer.vocabulary_
        self._idf = vectorizer.idf_
        self._columns = rows.tocsc()  # type: ignore[attr-defined]  # term columns sliced per query
        self._rows = self._columns.shape[0]

    def __call__(self, query: str) -> np.ndarray:
        vocabulary = self._vocabulary
        counts = Counter(vocabulary[term] for term in self._analyze(query) if term in vocabulary)
        if not counts:
            return np.zeros(self._rows)
        columns = np.fromiter(counts.keys(), np.int64, len(counts))
        weights = (1.0 + np.log(np.fromiter(counts.values(), np.float64, len(counts)))) * self._idf[columns]
        weights /= np.linalg.norm(weights)
        return np.asarray(self._columns[:, columns] @ weights).ravel()


class KnowledgeIndex:
    def __init__(self, articles: Sequence[ArticleDoc], normalize: Callable[[str], str],
                 background: Sequence[str] = ()) -> None:
        base_normalize = normalize

        def content_words(text: str) -> str:
            return " ".join(w for w in base_normalize(text).split() if w not in STOP_WORDS)

        self._normalize = normalize = content_words
        self._articles = list(articles)
        rows: list[str] = []
        owners: list[int] = []
        for position, article in enumerate(self._articles):
            for text in (article.title, *article.questions):
                rows.append(normalize(text))
                owners.append(position)
        self._owners = np.array(owners, dtype=np.int64)
        self._char = self._word = None
        if rows:
            # Word frequencies from the wider domain text (e.g. the classifier's training data) make words
            # every client uses ("internet", "интернет") weigh little, as they should.
            corpus = rows + [normalize(t) for t in background]
            self._char = TfidfVectorizer(analyzer="char_wb", ngram_range=(2, 5), sublinear_tf=True).fit(corpus)
            self._word = TfidfVectorizer(analyzer="word", ngram_range=(1, 2), sublinear_tf=True,
                                         token_pattern=r"(?u)\b\w+\b").fit(corpus)
            self._char_rows = self._char.transform(rows)
            self._word_rows = self._word.transform(rows)
            self._char_scores = _QueryScorer(self._char, self._char_rows)
            self._word_scores = _QueryScorer(self._word, self._word_rows)

    def __len__(self) -> int:
        return len(self._articles)

    def search(self, text: str, *, topic: str | None = None, k: int = 3) -> list[Hit]:
        if self._char is None or not text.strip():
            return []
        query = self._normalize(text)
        if not query.strip():
            return []
        row_scores = 0.5 * self._char_scores(query) + 0.5 * self._word_scores(query)
        best = np.zeros(len(self._articles))
        np.maximum.at(best, self._owners, row_scores)
        if topic is not None:
            # The classifier's topic is a hint, not a filter: an article of another topic needs a clearly
            # better match to win (general articles without a topic are neutral).
            for i, article in enumerate(self._articles):
                if article.topic == topic:
                    best[i] *= 1.1
                elif article.topic is not None:
                    best[i] *= 0.75
        order = np.argsort(-best)[:k]
        return [Hit(self._articles[i], float(min(best[i], 1.0))) for i in order if best[i] > 0]
