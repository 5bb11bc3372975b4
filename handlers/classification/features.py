"""Feature extraction: word n-grams, character n-grams and projected sentence vectors.

The n-gram blocks are plain data (analyzer settings, vocabulary, idf; see tfidf.py) so that a pickled model
loads and predicts without scikit-learn or SciPy, which would cost a web process ~100 MB (issue 9). Batch
transforms (training, evaluation) build SciPy matrices and import SciPy when called; a single request takes
a hand-written path that yields the same numbers without building any matrix.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from .tfidf import CHAR_WB, WORDS, Analyzer, Tfidf

if TYPE_CHECKING:
    from scipy.sparse import csr_matrix

_WORD_CACHE_SIZE = 50_000  # words whose char n-gram columns are kept (see NgramBlock)


@dataclass(frozen=True)
class FeatureSettings:
    word_ngrams: tuple[int, int] = (1, 2)
    char_ngrams: tuple[int, int] = (2, 5)
    char_min_df: int = 2
    # Sentence vectors are reduced to this many principal components: keeps the
    # linear solver fast (dense columns are expensive for it) and loses little.
    embedding_dims: int = 128
    # Relative weight of the sentence-vector block against the two unit-norm n-gram blocks.
    embedding_weight: float = 2.0


class NgramBlock:
    """A fitted float32 TF-IDF block (sublinear tf, smoothed idf, L2 rows) plus a fast single-text transform."""

    def __init__(self, tfidf: Tfidf) -> None:
        self.tfidf = tfidf
        self._reset_fast_path()

    def _reset_fast_path(self) -> None:
        self._idf = self.tfidf.idf.astype(np.float32)
        # char_wb n-grams never cross a word (each word is padded with spaces and cut on
        # its own), so a word's vocabulary columns can be cached: a request then costs a
        # dict look-up per word instead of ~15 n-gram strings per word.
        analyzer = self.tfidf.analyzer
        self._per_word = analyzer.kind == CHAR_WB and not analyzer.lowercase
        self._word_columns: dict[str, list[int]] = {}

    @classmethod
    def fit_words(cls, docs: list[str], ngram_range: tuple[int, int]) -> NgramBlock:
        """Word n-grams over whitespace-separated tokens, case kept (the text is normalised before)."""
        return cls(Tfidf.fit(docs, Analyzer(WORDS, tuple(ngram_range)), dtype=np.float32))

    @classmethod
    def fit_chars(cls, docs: list[str], ngram_range: tuple[int, int], min_df: int = 1) -> NgramBlock:
        """Character n-grams inside words (char_wb), kept when in at least `min_df` documents."""
        return cls(Tfidf.fit(docs, Analyzer(CHAR_WB, tuple(ngram_range)), min_df=min_df, dtype=np.float32))

    @property
    def size(self) -> int:
        return self.tfidf.size

    def transform(self, docs: list[str]) -> csr_matrix:
        """Rows of many documents as a SciPy matrix (training and evaluation only: imports SciPy)."""
        from scipy.sparse import csr_matrix

        rows = self.tfidf.transform(docs)
        return csr_matrix((rows.values, rows.indices, rows.indptr), shape=(rows.n_rows, rows.n_columns))

    def _columns(self, doc: str) -> list[int]:
        """Vocabulary columns of the doc's n-grams, one entry per occurrence."""
        if not self._per_word:
            return self.tfidf.columns(doc)
        cache = self._word_columns
        columns: list[int] = []
        for word in doc.split():
            found = cache.get(word)
            if found is None:
                found = self.tfidf.columns(word)
                if len(cache) >= _WORD_CACHE_SIZE:
                    cache.clear()  # bounded; refills with the words in use
                cache[word] = found
            columns.extend(found)
        return columns

    def transform_one(self, doc: str) -> tuple[np.ndarray, np.ndarray]:
        """(column indices, tf-idf values) of one document, L2-normalised like the batch transform."""
        counts = Counter(self._columns(doc))
        if not counts:
            return np.empty(0, dtype=np.int64), np.empty(0, dtype=np.float32)
        idx = np.fromiter(counts.keys(), dtype=np.int64, count=len(counts))
        tf = np.fromiter(counts.values(), dtype=np.float32, count=len(counts))
        values = np.log(tf)
        values += 1.0
        values *= self._idf[idx]
        values /= np.sqrt(values @ values)
        return idx, values

    def __getstate__(self):
        return {"tfidf": self.tfidf}  # the per-word cache is rebuilt on use

    def __setstate__(self, state):
        if "tfidf" not in state:  # pickled by format 2, which held a scikit-learn vectoriser
            raise ValueError("the model was saved by an older version; train it again")
        self.tfidf = state["tfidf"]
        self._reset_fast_path()


class EmbeddingProjection:
    """Centre and project sentence vectors onto their top principal components."""

    def __init__(self, mean: np.ndarray, components: np.ndarray, weight: float) -> None:
        self.mean = mean.astype(np.float32)
        self.components = components.astype(np.float32)  # (dim, k)
        self.weight = float(weight)

    @classmethod
    def fit(cls, vectors: np.ndarray, dims: int, weight: float) -> EmbeddingProjection:
        mean = vectors.mean(axis=0)
        k = max(1, min(dims, vectors.shape[0] - 1, vectors.shape[1]))
        _, _, vt = np.linalg.svd(vectors - mean, full_matrices=False)
        return cls(mean, vt[:k].T, weight)

    @property
    def size(self) -> int:
        return self.components.shape[1]

    def transform(self, vectors: np.ndarray) -> np.ndarray:
        return ((vectors - self.mean) @ self.components) * self.weight


def build_matrix(word: csr_matrix, char: csr_matrix, projected: np.ndarray | None) -> csr_matrix:
    """The training matrix: both n-gram blocks and the projected sentence vectors side by side."""
    from scipy.sparse import csr_matrix, hstack

    blocks = [word, char]
    if projected is not None:
        blocks.append(csr_matrix(projected.astype(np.float32)))
    return hstack(blocks, format="csr", dtype=np.float32)
