"""Feature extraction: word n-grams, character n-grams and projected sentence vectors.

Batch transforms (training) use scikit-learn; a single request takes a hand-written
fast path that yields the same numbers without scikit-learn's per-call overhead
(validation, sparse-matrix construction), which would otherwise dominate latency.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass

import numpy as np
from scipy.sparse import csr_matrix, hstack
from sklearn.feature_extraction.text import TfidfVectorizer

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
    """A fitted TF-IDF vectoriser plus a fast single-text transform."""

    def __init__(self, vectorizer: TfidfVectorizer) -> None:
        self.vectorizer = vectorizer
        self._reset_fast_path()

    def _reset_fast_path(self) -> None:
        self._analyzer = None
        self._idf = None
        # char_wb n-grams never cross a word (each word is padded with spaces and cut on
        # its own), so a word's vocabulary columns can be cached: a request then costs a
        # dict look-up per word instead of ~15 n-gram strings per word.
        v = self.vectorizer
        self._per_word = (v.analyzer == "char_wb" and not v.lowercase and v.preprocessor is None
                          and v.strip_accents is None and v.input == "content")
        self._word_columns: dict[str, list[int]] = {}

    @classmethod
    def fit(cls, docs: list[str], **kwargs) -> NgramBlock:
        vectorizer = TfidfVectorizer(sublinear_tf=True, lowercase=False, dtype=np.float32, **kwargs)
        vectorizer.fit(docs)
        return cls(vectorizer)

    @property
    def size(self) -> int:
        return len(self.vectorizer.vocabulary_)

    def transform(self, docs: list[str]) -> csr_matrix:
        return self.vectorizer.transform(docs)

    def _columns(self, doc: str) -> list[int]:
        """Vocabulary columns of the doc's n-grams, one entry per occurrence."""
        vocabulary = self.vectorizer.vocabulary_
        if not self._per_word:
            return [vocabulary[g] for g in self._analyzer(doc) if g in vocabulary]
        cache = self._word_columns
        columns: list[int] = []
        for word in doc.split():
            found = cache.get(word)
            if found is None:
                found = [vocabulary[g] for g in self._analyzer(word) if g in vocabulary]
                if len(cache) >= _WORD_CACHE_SIZE:
                    cache.clear()  # bounded; refills with the words in use
                cache[word] = found
            columns.extend(found)
        return columns

    def transform_one(self, doc: str) -> tuple[np.ndarray, np.ndarray]:
        """(column indices, tf-idf values) of one document, L2-normalised like sklearn's."""
        if self._idf is None:
            self._analyzer = self.vectorizer.build_analyzer()
            self._idf = self.vectorizer.idf_.astype(np.float32)
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
        return {"vectorizer": self.vectorizer}

    def __setstate__(self, state):
        self.vectorizer = state["vectorizer"]
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
    blocks = [word, char]
    if projected is not None:
        blocks.append(csr_matrix(projected.astype(np.float32)))
    return hstack(blocks, format="csr", dtype=np.float32)
