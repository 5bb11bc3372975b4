"""TF-IDF as scikit-learn's TfidfVectorizer computes it, in plain Python and numpy.

Why not scikit-learn: importing it (with SciPy) costs ~100 MB of memory in every web process (issue 9), and
the web processes need TF-IDF at run time (the classifier's n-gram features, the knowledge index, which is
refitted when articles change). This module reproduces exactly the part of TfidfVectorizer we use:
`sublinear_tf=True`, `smooth_idf=True`, `norm="l2"`, no stop words, `max_df=1.0`, an integer `min_df`, and
three analyzers (whitespace tokens, regex tokens, `char_wb`), each with an n-gram range and optional
lowercasing. Vocabulary, idf and rows equal scikit-learn's (tests compare them on the shipped data).
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass

import numpy as np

WORDS = "words"  # tokens are str.split() pieces (TfidfVectorizer(tokenizer=str.split, token_pattern=None))
PATTERN = "pattern"  # tokens are the matches of a regular expression (TfidfVectorizer's token_pattern)
CHAR_WB = "char_wb"  # character n-grams inside space-padded words (TfidfVectorizer(analyzer="char_wb"))
_KINDS = (WORDS, PATTERN, CHAR_WB)
DEFAULT_TOKEN_PATTERN = r"(?u)\b\w\w+\b"  # scikit-learn's default


@dataclass(frozen=True)
class Analyzer:
    """How a text becomes the terms it is counted by: plain settings, so a fitted model pickles without code."""

    kind: str
    ngram_range: tuple[int, int]
    lowercase: bool = False
    token_pattern: str = DEFAULT_TOKEN_PATTERN  # used by PATTERN only

    def __post_init__(self) -> None:
        low, high = self.ngram_range
        if self.kind not in _KINDS:
            raise ValueError(f"analyzer kind must be one of {_KINDS}, not {self.kind!r}")
        if not 1 <= low <= high:
            raise ValueError(f"bad n-gram range {self.ngram_range}")

    def build(self) -> Callable[[str], list[str]]:
        """A function text -> terms (one entry per occurrence), in scikit-learn's order."""
        ngram_range, lowercase = tuple(self.ngram_range), self.lowercase
        if self.kind == CHAR_WB:
            # scikit-learn first replaces runs of whitespace by one space; split() below ignores them anyway
            # (re's \s and str.isspace agree on every code point).
            def analyze(text: str) -> list[str]:
                return char_wb_ngrams(text.lower() if lowercase else text, ngram_range)
            return analyze
        tokenize = str.split if self.kind == WORDS else re.compile(self.token_pattern).findall

        def analyze_words(text: str) -> list[str]:
            return word_ngrams(tokenize(text.lower() if lowercase else text), ngram_range)
        return analyze_words


def word_ngrams(tokens: list[str], ngram_range: tuple[int, int]) -> list[str]:
    """The tokens' n-grams: all unigrams first (when wanted), then all bigrams, ... (scikit-learn's order)."""
    low, high = ngram_range
    if high == 1:
        return tokens
    grams = list(tokens) if low == 1 else []
    count = len(tokens)
    for n in range(max(low, 2), min(high, count) + 1):
        grams.extend(" ".join(tokens[i:i + n]) for i in range(count - n + 1))
    return grams


def char_wb_ngrams(text: str, ngram_range: tuple[int, int]) -> list[str]:
    """Character n-grams of each word padded with one space on both sides; never across words.

    A padded word shorter than n yields itself once, and then no longer n-grams (as scikit-learn does)."""
    low, high = ngram_range
    grams: list[str] = []
    append = grams.append
    for word in text.split():
        padded = f" {word} "
        length = len(padded)
        for n in range(low, high + 1):
            if length <= n:
                append(padded)
                break
            for start in range(length - n + 1):
                append(padded[start:start + n])
    return grams


@dataclass
class CsrRows:
    """Rows of a sparse matrix in CSR layout (what scipy.sparse.csr_matrix takes), without SciPy."""

    indptr: np.ndarray  # (n_rows + 1,) start of each row in indices/values
    indices: np.ndarray  # column of each stored value, ascending within a row
    values: np.ndarray
    n_columns: int

    @property
    def n_rows(self) -> int:
        return len(self.indptr) - 1


class Tfidf:
    """A fitted TF-IDF weighting: analyzer settings, vocabulary (term -> column, terms sorted) and idf."""

    def __init__(self, analyzer: Analyzer, vocabulary: dict[str, int], idf: np.ndarray) -> None:
        self.analyzer = analyzer
        self.vocabulary = vocabulary
        self.idf = idf
        self.analyze = analyzer.build()

    @classmethod
    def fit(cls, docs: Iterable[str], analyzer: Analyzer, *, min_df: int = 1,
            dtype: type = np.float64) -> Tfidf:
        """Learn the vocabulary (terms in at least `min_df` documents) and the smoothed idf of each term."""
        if not isinstance(min_df, int) or min_df < 1:
            raise ValueError(f"min_df must be a positive integer, not {min_df!r}")
        analyze = analyzer.build()
        document_frequency: Counter[str] = Counter()
        n_docs = 0
        for doc in docs:
            document_frequency.update(set(analyze(doc)))
            n_docs += 1
        if not document_frequency:
            raise ValueError("empty vocabulary; perhaps the documents only contain stop words")
        terms = sorted(term for term, df in document_frequency.items() if df >= min_df)
        if not terms:
            raise ValueError("After pruning, no terms remain. Try a lower min_df or a higher max_df.")
        df = np.fromiter((document_frequency[t] for t in terms), dtype=dtype, count=len(terms))
        return cls(analyzer, {term: column for column, term in enumerate(terms)}, smooth_idf(df, n_docs))

    @property
    def size(self) -> int:
        return len(self.vocabulary)

    def columns(self, doc: str) -> list[int]:
        """Vocabulary columns of the document's terms, one entry per occurrence; unknown terms dropped."""
        vocabulary = self.vocabulary
        return [vocabulary[term] for term in self.analyze(doc) if term in vocabulary]

    def transform(self, docs: Iterable[str]) -> CsrRows:
        """One L2-normalised row of sublinear tf * idf per document, like TfidfVectorizer.transform."""
        columns: list[int] = []
        lengths: list[int] = []
        for doc in docs:
            found = self.columns(doc)
            columns.extend(found)
            lengths.append(len(found))
        # Count (row, column) pairs with one sort: keys come out by row, then by column, as in scipy's CSR.
        rows = np.repeat(np.arange(len(lengths), dtype=np.int64), lengths)
        keys, counts = np.unique(rows * self.size + np.asarray(columns, dtype=np.int64), return_counts=True)
        indices = (keys % self.size).astype(np.int32)
        indptr = np.zeros(len(lengths) + 1, dtype=np.int32)
        np.cumsum(np.bincount(keys // self.size, minlength=len(lengths)), out=indptr[1:])
        values = counts.astype(self.idf.dtype)
        np.log(values, out=values)
        values += 1.0
        values *= self.idf[indices]
        _normalize_rows_l2(values, indptr)
        return CsrRows(indptr, indices, values, self.size)

    def __getstate__(self) -> dict:
        return {"analyzer": self.analyzer, "vocabulary": self.vocabulary, "idf": self.idf}

    def __setstate__(self, state: dict) -> None:
        self.analyzer = state["analyzer"]
        self.vocabulary = state["vocabulary"]
        self.idf = state["idf"]
        self.analyze = self.analyzer.build()  # a closure: rebuilt, not pickled


def smooth_idf(document_frequency: np.ndarray, n_docs: int) -> np.ndarray:
    """ln((1 + n) / (1 + df)) + 1 in the dtype of `document_frequency`, step by step as scikit-learn does."""
    df = document_frequency + 1.0
    idf = np.full_like(df, fill_value=n_docs + 1)
    idf /= df
    np.log(idf, out=idf)
    idf += 1.0
    return idf


def _normalize_rows_l2(values: np.ndarray, indptr: np.ndarray) -> None:
    """Divide each row by its Euclidean norm, in place, bit for bit as scikit-learn does it.

    scikit-learn squares in the values' dtype, sums each row left to right in float64 and divides in
    float64. numpy's sum adds in a different order (pairwise), which can move the last bit of a float32
    value, so the rows are summed position by position across all rows (sequential within each row)."""
    lengths = np.diff(indptr)
    starts = indptr[:-1].astype(np.int64)
    squares = values * values
    sums = np.zeros(len(lengths), dtype=np.float64)
    for position in range(int(lengths.max(initial=0))):
        rows = np.flatnonzero(lengths > position)
        sums[rows] += squares[starts[rows] + position]
    norms = np.sqrt(sums)
    norms[norms == 0.0] = 1.0  # empty rows stay empty
    values[:] = values / np.repeat(norms, lengths)
