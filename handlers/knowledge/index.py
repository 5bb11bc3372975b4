"""Similarity search over knowledge-base articles.

Each question variant (and the title) of an article is a row; a query's score for an article is its best
cosine similarity over the article's rows, averaged over two views of the text: character n-grams (robust
to typos and word forms) and word lemmas (robust to word order). Pure and synchronous: the service builds
one index per language and swaps it whole when articles change.

The weights are scikit-learn's TfidfVectorizer's (sublinear tf, smoothed idf, L2 rows) computed by
handlers.classification.tfidf, so a web process never loads scikit-learn or SciPy (~100 MB, issue 9).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from handlers.classification.tfidf import CHAR_WB, PATTERN, Analyzer, CsrRows, Tfidf

# Same analyzers as TfidfVectorizer(analyzer="char_wb", ngram_range=(2, 5)) and
# TfidfVectorizer(ngram_range=(1, 2), token_pattern=r"(?u)\b\w+\b"), lowercase as by default.
CHAR_ANALYZER = Analyzer(CHAR_WB, (2, 5), lowercase=True)
WORD_ANALYZER = Analyzer(PATTERN, (1, 2), lowercase=True, token_pattern=r"(?u)\b\w+\b")


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


class _ColumnStore:
    """Fitted rows stored column by column (CSC without SciPy): for each term, the rows holding it."""

    def __init__(self, rows: CsrRows) -> None:
        row_of_entry = np.repeat(np.arange(rows.n_rows, dtype=np.int64), np.diff(rows.indptr))
        order = np.argsort(rows.indices, kind="stable")
        self._rows = row_of_entry[order]
        self._values = rows.values[order]
        self._starts = np.zeros(rows.n_columns + 1, dtype=np.int64)
        np.cumsum(np.bincount(rows.indices, minlength=rows.n_columns), out=self._starts[1:])
        self.n_rows = rows.n_rows

    def dot(self, columns: np.ndarray, weights: np.ndarray) -> np.ndarray:
        """rows[:, columns] @ weights: gathers the entries of the chosen columns in a few array operations."""
        starts = self._starts[columns]
        lengths = self._starts[columns + 1] - starts
        total = int(lengths.sum())
        if not total:
            return np.zeros(self.n_rows)
        ends = np.cumsum(lengths)
        # position p of the output lies in column j's run: entry starts[j] + (p - first output position of j)
        entries = np.arange(total) + np.repeat(starts - (ends - lengths), lengths)
        products = self._values[entries] * np.repeat(weights, lengths)
        return np.bincount(self._rows[entries], weights=products, minlength=self.n_rows)


class _QueryScorer:
    """Cosine similarity of one query against the fitted rows (TfidfVectorizer's `rows @ transform([q]).T`)."""

    def __init__(self, tfidf: Tfidf, rows: Sequence[str]) -> None:
        self._tfidf = tfidf
        self._columns = _ColumnStore(tfidf.transform(rows))

    def __call__(self, query: str) -> np.ndarray:
        counts = Counter(self._tfidf.columns(query))
        if not counts:
            return np.zeros(self._columns.n_rows)
        columns = np.fromiter(counts.keys(), np.int64, len(counts))
        weights = (1.0 + np.log(np.fromiter(counts.values(), np.float64, len(counts)))) * self._tfidf.idf[columns]
        weights /= np.linalg.norm(weights)
        return self._columns.dot(columns, weights)


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
        self._ready = False
        if rows:
            # Word frequencies from the wider domain text (e.g. the classifier's training data) make words
            # every client uses ("internet", "интернет") weigh little, as they should.
            corpus = rows + [normalize(t) for t in background]
            self._char_scores = _QueryScorer(Tfidf.fit(corpus, CHAR_ANALYZER), rows)
            self._word_scores = _QueryScorer(Tfidf.fit(corpus, WORD_ANALYZER), rows)
            self._ready = True

    def __len__(self) -> int:
        return len(self._articles)

    def search(self, text: str, *, topic: str | None = None, k: int = 3) -> list[Hit]:
        if not self._ready or not text.strip():
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
